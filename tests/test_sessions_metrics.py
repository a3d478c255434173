"""Per-server Prometheus metrics: recorded values show in the text exposition, and servers do not mix."""

from prometheus_client.parser import text_string_to_metric_families

from pipelines.sessions.metrics import SessionMetrics
from pipelines.sessions.model import SessionState


def samples(metrics: SessionMetrics) -> dict[tuple, float]:
    """(sample name, sorted labels) -> value, parsed back from the exposition text."""
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_recorded_values_are_exposed():
    m = SessionMetrics()
    m.set_session_counts({SessionState.ACTIVE: 3, SessionState.DISCONNECTED: 1})
    m.turn_completed("tutor")
    m.turn_completed("tutor")
    m.reply_latency("tutor", 0.42)
    m.reply_latency("tutor", 2.5)
    m.interruption_latency("tutor", 0.03)
    m.error("tts")
    got = samples(m)
    assert got[("framegraph_sessions", (("state", "ACTIVE"),))] == 3
    assert got[("framegraph_sessions", (("state", "STARTING"),))] == 0
    assert got[("framegraph_turns_total", (("agent", "tutor"),))] == 2
    reply = "framegraph_speech_end_to_first_audio_seconds"
    assert got[(reply + "_count", (("agent", "tutor"),))] == 2
    assert got[(reply + "_sum", (("agent", "tutor"),))] == 2.92
    assert got[(reply + "_bucket", (("agent", "tutor"), ("le", "0.5")))] == 1
    assert got[(reply + "_bucket", (("agent", "tutor"), ("le", "3.0")))] == 2
    assert got[("framegraph_interruption_latency_seconds_count", (("agent", "tutor"),))] == 1
    assert got[("framegraph_errors_total", (("kind", "tts"),))] == 1
    assert SessionMetrics.CONTENT_TYPE.startswith("text/plain")


def test_two_servers_keep_separate_registries():
    a, b = SessionMetrics(), SessionMetrics()
    a.turn_completed("x")
    assert samples(a)[("framegraph_turns_total", (("agent", "x"),))] == 1
    assert ("framegraph_turns_total", (("agent", "x"),)) not in samples(b)
    a.set_session_counts({SessionState.ACTIVE: 2})
    a.set_session_counts({})
    assert samples(a)[("framegraph_sessions", (("state", "ACTIVE"),))] == 0

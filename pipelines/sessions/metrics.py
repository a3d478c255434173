"""Prometheus metrics of one server, in a registry of its own (never the process-global one).

A registry per server keeps two servers in one process (tests) from mixing
their figures, and lets ``GET /metrics`` expose exactly this server's
series. A server of ``serve --workers N`` is N processes: each worker is
started with ``MULTIPROCESS_DIR`` set (``pipelines.server.workers``), so
prometheus_client's multiprocess mode keeps every worker's values in files
there, and whichever worker answers ``GET /metrics`` answers with the
server's figures: counters and histograms summed over the workers (a dead
worker's included), the sessions gauge as last set (every worker sets it
from the one store).
"""

import os
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

from pipelines.sessions.model import SessionState

#: The environment variable prometheus_client reads at import for its multiprocess folder.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

# Voice replies: from well under 100 ms (text only) to several seconds (an overloaded loop).
_REPLY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
# Interruptions: the bot's audio should stop within tens of milliseconds.
_INTERRUPTION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)


class SessionMetrics:
    """The server's metrics and the calls that record them.

    Series (names as Prometheus shows them):
        framegraph_sessions{state}: sessions in each state (gauge).
        framegraph_turns_total{agent}: completed turns (counter).
        framegraph_speech_end_to_first_audio_seconds{agent}: from the real end
            of the user's speech (VAD's stop minus its stop_secs) to the
            output transport's first chunk of the answer (histogram).
        framegraph_page_speech_end_to_heard_seconds{agent}: the same step as
            the client heard it (its RTVI report, ``pipelines.server.latency``):
            to the first bot audio it played (histogram).
        framegraph_interruption_latency_seconds{agent}: from the user's
            barge-in to the bot's audio stopping (histogram).
        framegraph_errors_total{kind}: errors by kind (counter).
        framegraph_store_backlog: session writes waiting for an unavailable
            store (gauge; summed over live workers).
        framegraph_store_writes_dropped_total: queued writes dropped because a
            session's queue was full (counter).
        framegraph_load_level: the measured load level, 0 NORMAL ... 4
            SESSION_REJECT (gauge; the highest of the live workers).
        framegraph_load_level_changes_total{level}: level changes, by the level
            entered (counter; docs/backpressure.md).
        framegraph_load_signal{signal}: the latest measurement of each load
            signal (loop_lag_ms, cpu_share, reply_p95_secs, late_chunk_share;
            gauge; the highest of the live workers).
        framegraph_late_audio_chunks_total: the bot's audio chunks that reached
            the listener after the audio before them had played (counter).
        framegraph_usage_total{agent, kind, provider, metric}: what sessions
            used (tokens, characters, audio seconds, cost), from pipecat's usage
            metrics (counter; never by user: label values stay bounded).
    """

    CONTENT_TYPE = CONTENT_TYPE_LATEST
    """The ``Content-Type`` of ``exposition()``."""

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        self._sessions = Gauge("framegraph_sessions", "Sessions by state", ["state"], registry=self.registry,
                               multiprocess_mode="mostrecent")
        for state in SessionState:
            self._sessions.labels(state.value).set(0)
        self._turns = Counter("framegraph_turns", "Completed turns", ["agent"], registry=self.registry)
        self._reply = Histogram(
            "framegraph_speech_end_to_first_audio_seconds",
            "Time from the end of the user's speech to the bot's first audio",
            ["agent"],
            buckets=_REPLY_BUCKETS,
            registry=self.registry,
        )
        self._heard = Histogram(
            "framegraph_page_speech_end_to_heard_seconds",
            "Time from the end of the user's speech to the bot's first audio, as the client heard it",
            ["agent"],
            buckets=_REPLY_BUCKETS,
            registry=self.registry,
        )
        self._interruption = Histogram(
            "framegraph_interruption_latency_seconds",
            "Time from the user's barge-in to the bot's audio stopping",
            ["agent"],
            buckets=_INTERRUPTION_BUCKETS,
            registry=self.registry,
        )
        self._errors = Counter("framegraph_errors", "Errors by kind", ["kind"], registry=self.registry)
        self._backlog = Gauge("framegraph_store_backlog", "Session writes waiting for an unavailable store",
                              registry=self.registry, multiprocess_mode="livesum")
        self._dropped = Counter("framegraph_store_writes_dropped", "Queued session writes dropped (queue full)",
                                registry=self.registry)
        self._usage = Counter("framegraph_usage", "What sessions used, by agent, kind, provider and metric",
                              ["agent", "kind", "provider", "metric"], registry=self.registry)
        self._load_level = Gauge("framegraph_load_level", "Measured load level (0 NORMAL ... 4 SESSION_REJECT)",
                                 registry=self.registry, multiprocess_mode="livemax")
        self._level_changes = Counter("framegraph_load_level_changes", "Load level changes by the level entered",
                                      ["level"], registry=self.registry)
        self._load_signal = Gauge("framegraph_load_signal", "Latest measurement of each load signal", ["signal"],
                                  registry=self.registry, multiprocess_mode="livemax")
        self._late_chunks = Counter("framegraph_late_audio_chunks",
                                    "Bot audio chunks that reached the listener after the audio before them had played",
                                    registry=self.registry)

    def set_load_level(self, value: int, name: str, changed: bool = False) -> None:
        """Sets the load level gauge (``value``, named ``name``); ``changed``: counts a change into it."""
        self._load_level.set(value)
        if changed:
            self._level_changes.labels(name).inc()

    def set_load_signals(self, measured: Mapping[str, float]) -> None:
        """Sets the load signal gauge from a load level's latest measurement."""
        for signal, value in measured.items():
            self._load_signal.labels(signal).set(value)

    def count_late_chunks(self, n: int) -> None:
        """Counts ``n`` late audio chunks."""
        if n:
            self._late_chunks.inc(n)

    def set_session_counts(self, counts: Mapping[SessionState, int]) -> None:
        """Sets the sessions gauge from a store's ``count_by_state()``; a state left out counts 0."""
        for state in SessionState:
            self._sessions.labels(state.value).set(counts.get(state, 0))

    def turn_completed(self, agent: str) -> None:
        """Counts one completed turn of ``agent``."""
        self._turns.labels(agent).inc()

    def reply_latency(self, agent: str, seconds: float) -> None:
        """Records one time from user speech end to first bot audio."""
        self._reply.labels(agent).observe(seconds)

    def heard_latency(self, agent: str, seconds: float) -> None:
        """Records one time from user speech end to first bot audio, as a client reported hearing it."""
        self._heard.labels(agent).observe(seconds)

    def interruption_latency(self, agent: str, seconds: float) -> None:
        """Records one time from barge-in to the bot's audio stopping."""
        self._interruption.labels(agent).observe(seconds)

    def error(self, kind: str) -> None:
        """Counts one error of ``kind`` (a short fixed word: "llm", "tts", "transport"...; never free text)."""
        self._errors.labels(kind).inc()

    def set_store_backlog(self, writes: int) -> None:
        """Sets how many session writes wait for the store (``WriteBehind``)."""
        self._backlog.set(writes)

    def store_write_dropped(self) -> None:
        """Counts one queued write dropped because its session's queue was full."""
        self._dropped.inc()

    def usage(self, agent: str, kind: str, provider: str, metric: str, value: float) -> None:
        """Adds ``value`` of ``metric`` (prompt_tokens, characters, cost...) used by ``agent``'s ``provider``."""
        self._usage.labels(agent, kind, provider, metric).inc(value)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format, for ``GET /metrics`` (with ``CONTENT_TYPE``); every worker's with workers."""
        folder = os.environ.get(MULTIPROCESS_DIR)
        if not folder:
            return generate_latest(self.registry)
        workers = CollectorRegistry()
        MultiProcessCollector(workers, path=folder)
        return generate_latest(workers)

"""The websocket transport on loopback, with the ``talk`` client as a real peer."""

import asyncio
import socket
import time
import wave

from transport_kit import wait_until

from pipelines.audio import write_wav
from pipelines.client_protocol import messages as cm
from pipelines.server.app import running
from pipelines.sessions.model import SessionState
from pipelines.validate import load_agent_text
from processors.tone import tone
from transports.clients.talk import Talker, audio_message, talk

AGENT = """
version: 1
name: tone
transport: {type: websocket, port: 0, max_message_bytes: 4000, ping_interval_secs: 1, ping_timeout_secs: 1}
processors:
  bot: {type: tone_reply, reply_secs: 3, stop_ms: 300}
pipeline: [input, bot, output]
"""

SPEECH = tone(0.3, 16000, 300, 10000)
SILENCE = bytes(int(16000 * 0.4) * 2)


def ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://") + "/ws"


async def test_client_talks_barges_in_and_closes():
    async with running(load_agent_text(AGENT)) as (url, server):
        async with Talker(ws_url(url)) as talker:
            ready = await talker.wait_for_message(cm.BOT_READY, timeout=10)
            # pipecat's RTVI bot-ready, the answer to the client's client-ready
            assert ready["data"]["about"]["library"] == "pipecat-ai" and ready["data"]["capabilities"]["audio_in"]
            assert not talker._ws.protocol.extensions  # no permessage-deflate: audio does not compress
            said = time.monotonic()
            await talker.stream(SPEECH + SILENCE)
            await talker.wait_for_message(cm.BOT_STARTED_SPEAKING, timeout=5, after=said)
            assert (await talker.wait_for_message(cm.BOT_TTS_TEXT, 2))["data"]["text"] == "beep"
            assert (await talker.wait_for_message(cm.USER_TRANSCRIPTION, 2))["data"]["final"] is True
            (session,) = server.sessions.values()

            await asyncio.sleep(0.5)
            barged = time.monotonic()
            await talker.stream(SPEECH[: len(SPEECH) // 2])
            await talker.wait_for_message(cm.BOT_INTERRUPTED, timeout=3, after=barged)
            await talker.stream(SILENCE)
            interrupted_at = session.built.transport.output().interrupted_at
            assert interrupted_at > barged
            # The server sends ahead of real time; the client drops its backlog
            # when told, so next to nothing of the cut-off answer is heard.
            assert talker.stale_audio(interrupted_at) <= 0.06

            # Bad messages are refused with a reason and the agent goes on.
            await talker.send_raw(b"\xff\x00 not protobuf")
            await talker.send_raw("a text frame")
            await talker.send_raw(audio_message(bytes(6000), 16000))
            await talker.send_raw(audio_message(bytes(640), 8000))
            await wait_until(lambda: sum(e["event"] == "refused" for e in session.events) >= 4, 3, "4 refusals")
            said = time.monotonic()
            await talker.stream(SPEECH + SILENCE)
            await talker.wait_for_message(cm.BOT_STARTED_SPEAKING, timeout=5, after=said)
        await wait_until(lambda: session.state == SessionState.DISCONNECTED, 10, "worker end after a clean close")
        events = [e["event"] for e in session.events]
        assert "dropped" not in events and events[-2:] == ["closed", "ended"]


async def test_dead_peer_is_noticed_by_keepalive_and_its_worker_ends():
    async with running(load_agent_text(AGENT)) as (url, server):
        host, port = url.removeprefix("http://").split(":")
        # A raw socket that upgrades to WebSocket and then never answers pings.
        sock = socket.create_connection((host, int(port)))
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        try:
            await wait_until(lambda: len(server.sessions) == 1, 5, "session start")
            (session,) = server.sessions.values()
            # ping every 1 s, pong due within 1 s: noticed within a few seconds.
            await wait_until(lambda: session.state == SessionState.DISCONNECTED, 10, "worker end after the peer went silent")
        finally:
            sock.close()
        dropped = [e for e in session.events if e["event"] == "dropped"]
        assert dropped, session.events


async def test_talk_command_streams_a_wav_and_records_the_reply(tmp_path):
    said, reply = tmp_path / "in.wav", tmp_path / "reply.wav"
    write_wav(said, SPEECH, 16000)
    async with running(load_agent_text(AGENT.replace("reply_secs: 3", "reply_secs: 1"))) as (url, _):
        assert await talk(ws_url(url), said, reply, quiet_secs=0.5, timeout=10) == 0
    with wave.open(str(reply)) as w:
        assert w.getframerate() == 24000 and 0.9 <= w.getnframes() / 24000 <= 1.1


async def test_participants_over_the_limit_are_refused():
    async with running(load_agent_text(AGENT.replace("port: 0,", "port: 0, max_participants: 1,"))) as (url, _):
        async with Talker(ws_url(url)) as first:
            await first.wait_for_message(cm.BOT_READY, timeout=10)
            async with Talker(ws_url(url)) as second:
                await wait_until(lambda: second.close_code is not None, 5, "the second client's refusal")
                assert second.close_code == 1013


def gaps_in(played, after: float) -> float:
    """Seconds of silence between consecutive chunks the client played after ``after`` (a real speaker's gaps)."""
    seq = [p for p in played if p.start >= after]
    return sum(max(0.0, b.start - a.end) for a, b in zip(seq, seq[1:], strict=False))


async def reply_with_a_stalled_loop(lead_secs: float) -> tuple[Talker, float]:
    """The tone agent's 3 s reply while the server's event loop stalls 60 ms four times; the client and when it began."""
    agent = AGENT.replace("ping_timeout_secs: 1}", f"ping_timeout_secs: 1, audio_lead_secs: {lead_secs}}}")
    async with running(load_agent_text(agent)) as (url, _):
        async with Talker(ws_url(url)) as talker:
            await talker.wait_for_message(cm.BOT_READY, timeout=10)
            said = time.monotonic()
            await talker.stream(SPEECH + SILENCE)
            await talker.wait_for_message(cm.BOT_STARTED_SPEAKING, timeout=5, after=said)
            began = time.monotonic()
            for _ in range(4):
                await asyncio.sleep(0.4)
                time.sleep(0.06)  # a busy event loop: nothing is sent meanwhile
            await talker.wait_until_quiet(0.5, 6)
    return talker, began


async def test_bot_audio_runs_ahead_by_the_lead_so_a_late_loop_is_not_heard():
    talker, began = await reply_with_a_stalled_loop(0.1)
    played = [p for p in talker.playback.played if p.start >= began + 0.2]
    ahead = sorted(p.start - p.arrived for p in played)
    assert 0.05 <= ahead[len(ahead) // 2] <= 0.15  # the client holds about the lead
    # paced at real time, not sent in a burst: the arrivals span the reply, less the lead
    assert played[-1].arrived - played[0].arrived >= 0.8 * (played[-1].end - played[0].start - 0.1)
    assert gaps_in(talker.playback.played, began) < 0.03

    exact, began = await reply_with_a_stalled_loop(0.0)  # pipecat's pacing: every stall is a gap
    assert gaps_in(exact.playback.played, began) >= 0.15

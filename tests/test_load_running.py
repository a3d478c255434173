"""What the load level does to sessions already running: late audio chunks raise it; DEGRADED retunes, SHEDDING defers.

Real servers (``running``), real WebSocket and WebRTC clients; the level is
either measured (a loop held while the bot speaks makes its audio late) or
fed to the level machine by the test (``test_load_level.fed_by_the_test``).
"""

import asyncio
import time

import httpx
import numpy as np
from conftest import ROOT
from pipecat.frames.frames import TranscriptionFrame
from pipecat.observers.base_observer import BaseObserver, FramePushed
from test_avatar_transports import with_avatar_output
from test_load_level import block_the_loop, fed_by_the_test
from test_server_resume import AGENT, say_over_ws, send_transcript, ws_of
from transport_kit import on_transport, speech

from pipelines.client_protocol import messages as cm
from pipelines.pressure import PRESSURE
from pipelines.server.app import running
from pipelines.server.load_level import Level
from pipelines.sessions.model import SessionState
from pipelines.validate import load_agent_text
from processors.avatar import wire
from transports.clients.talk import Talker
from transports.clients.webrtc import WebRTCPeer


def _metric(metrics: str, prefix: str) -> float:
    return next((float(line[len(prefix):]) for line in metrics.splitlines() if line.startswith(prefix)), 0.0)


async def test_audio_sent_late_by_a_held_loop_raises_the_level_on_the_late_chunk_signal(tmp_path):
    # Only the late-chunk signal has thresholds: the loop's own lag, the CPU and the replies are not asked.
    yaml = AGENT + ("backpressure: {loop_lag_ms: [null, null, null, null], cpu_share: [null, null, null, null],\n"
                    "  reply_p95_secs: [null, null, null, null], late_chunk_share: [0.005, 0.01, 0.02, 0.03],\n"
                    "  min_chunks: 10, window_secs: 3, rise_secs: 0.3}\n")
    agent = load_agent_text(yaml, tmp_path / "memory.yaml")
    async with running(agent) as (url, manager), httpx.AsyncClient(base_url=url, timeout=30) as http:
        created = (await http.post("/sessions")).json()
        async with Talker(ws_of(url, created)) as talker:
            await talker.wait_for_message(cm.BOT_READY, timeout=60)
            assert (await say_over_ws(talker, "my name is ada")).startswith("Nice")
            late_before = PRESSURE.late_chunks
            asked = time.monotonic()
            await send_transcript(talker, "tell me a story")
            await talker.wait_for_message(cm.BOT_STARTED_SPEAKING, timeout=30, after=asked)
            stop = asyncio.Event()
            blocker = asyncio.create_task(block_the_loop(stop))  # 0.4 s held: past the client's 0.1 s of lead
            try:
                deadline = time.monotonic() + 30
                while manager.load.level == Level.NORMAL:
                    assert time.monotonic() < deadline, f"the level never rose: {manager.load.describe()}"
                    await asyncio.sleep(0.05)
            finally:
                stop.set()
                await blocker
            assert PRESSURE.late_chunks > late_before
            assert "late_chunk_share rose" in manager.load.cause, manager.load.cause
            health = (await http.get("/health")).json()["load"]
            assert health["measured"]["late_chunk_share"] > 0.005 and "late_chunk_share" in health["cause"]
            metrics = (await http.get("/metrics")).text
            assert _metric(metrics, "framegraph_late_audio_chunks_total ") >= 1
            assert 'framegraph_load_signal{signal="late_chunk_share"}' in metrics
            # The admitted conversation goes on.
            assert (await say_over_ws(talker, "tell me my name")) == "Your name is ada."


def _face_changes(peer: WebRTCPeer, start: float, end: float) -> int:
    """How many times the face's mouth changed in the video the peer saw between ``start`` and ``end``."""
    mouth = [s.image[150:220, 80:176].astype(np.int16) for s in peer.seen if start <= s.time <= end]
    return sum(np.abs(b - a).mean() > 2 for a, b in zip(mouth, mouth[1:], strict=False))


async def _reply(peer: WebRTCPeer, question: bytes) -> tuple[float, float]:
    """Says ``question``; returns when the bot started and stopped speaking its answer."""
    asked = time.monotonic()
    peer.say(question)
    await peer.wait_for_message(cm.BOT_STOPPED_SPEAKING, timeout=30, after=asked)
    return (cm.first_after(peer.messages, cm.BOT_STARTED_SPEAKING, asked),
            cm.first_after(peer.messages, cm.BOT_STOPPED_SPEAKING, asked))


def _poses(peer: WebRTCPeer, start: float, end: float) -> int:
    return sum(1 for t, m in peer.messages if start <= t <= end and cm.kind_of(m) == cm.SERVER_MESSAGE
               and m["data"].get("type") == wire.MESSAGE_TYPE)


async def test_degraded_turns_a_running_avatar_to_poses_only_and_recovery_turns_its_face_back_on():
    question = await speech("what time is it")
    agent = with_avatar_output(on_transport(ROOT / "configs" / "avatar_assistant.yaml", "webrtc"), "poses_and_video")
    assert agent.spec.backpressure.degraded["avatar"] == {"output": "poses"}  # what the config says DEGRADED does
    async with running(agent) as (url, manager):
        await fed_by_the_test(manager.load)
        peer = WebRTCPeer(video=True)
        await peer.connect(url)
        try:
            await peer.wait_for_message(cm.BOT_READY, timeout=30)
            start, end = await _reply(peer, question)
            assert _face_changes(peer, start, end) > 5  # NORMAL: the face moves
            manager.load.feed({"loop_lag_ms": 60}, now=1e6)
            assert manager.load.feed({"loop_lag_ms": 60}, now=1e6 + 1).after == Level.DEGRADED
            start, end = await _reply(peer, question)
            assert _face_changes(peer, start, end) == 0 and _poses(peer, start, end) > 30  # poses only
            manager.load.feed({"loop_lag_ms": 0}, now=1e6 + 2)
            assert manager.load.feed({"loop_lag_ms": 0}, now=1e6 + 10).after == Level.ELEVATED
            start, end = await _reply(peer, question)
            assert _face_changes(peer, start, end) > 5  # recovered: the face moves again
            assert [s.state for s in manager.live.values()] == [SessionState.ACTIVE]  # never dropped
        finally:
            await peer.close()


async def test_at_shedding_an_idle_users_check_in_waits_until_the_level_falls():
    yaml = AGENT + 'conversation:\n  idle: {after_secs: 1, text: "Are you still there?", end_after: 3}\n'
    async with running(load_agent_text(yaml)) as (url, manager), httpx.AsyncClient(base_url=url, timeout=30) as http:
        await fed_by_the_test(manager.load)
        created = (await http.post("/sessions")).json()
        async with Talker(ws_of(url, created)) as talker:
            await talker.wait_for_message(cm.BOT_READY, timeout=60)
            manager.load.feed({"cpu_share": 1.0}, now=1e6)
            assert manager.load.feed({"cpu_share": 1.0}, now=1e6 + 2).after == Level.SHEDDING
            assert (await say_over_ws(talker, "my name is ada")).startswith("Nice")
            spoke = time.monotonic()
            await asyncio.sleep(4)  # four idle periods of 1 s: every check-in deferred
            said = [m["data"]["text"] for t, m in talker.messages if t > spoke and cm.kind_of(m) == cm.BOT_TTS_TEXT]
            assert said == [] and manager.live[created["id"]].state == SessionState.ACTIVE
            manager.load.feed({"cpu_share": 0.0}, now=1e6 + 3)
            assert manager.load.feed({"cpu_share": 0.0}, now=1e6 + 11).after == Level.DEGRADED
            fell = time.monotonic()
            check_in = await talker.wait_for_message(cm.BOT_TTS_TEXT, timeout=10, after=fell)
            assert check_in["data"]["text"] == "Are you still there?"


async def test_an_avatar_built_without_a_face_sends_poses_when_its_params_ask_for_video_again():
    """A session started at DEGRADED has no video track: recovery must not draw faces nobody can be sent."""
    from processors.avatar.processor import AvatarProcessor
    from processors.avatar.types import AvatarParams

    started_degraded = AvatarProcessor(output="poses")
    started_degraded.retune(AvatarParams(output="poses_and_video"))
    assert started_degraded._renderer is None and started_degraded._messages
    drawing = AvatarProcessor(output="poses_and_video")
    drawing.retune(AvatarParams(output="poses"))
    assert drawing._renderer is None and drawing._messages
    drawing.retune(AvatarParams(output="poses_and_video"))
    assert drawing._renderer is not None


class _Finals(BaseObserver):
    """The final transcripts one processor pushes, with the settings its decoder says it used."""

    def __init__(self, source):
        super().__init__()
        self.source, self.seen = source, []

    async def on_push_frame(self, data: FramePushed):
        if data.source is self.source and isinstance(data.frame, TranscriptionFrame):
            self.seen.append((data.frame.text, data.frame.result["settings"]))


async def test_degraded_narrows_a_running_sessions_speech_search_and_recovery_widens_it_again():
    question = await speech("what time is it")
    agent = on_transport(ROOT / "configs" / "assistant.yaml", "webrtc")
    assert agent.spec.backpressure.degraded["stt"] == {"max_hmm_per_frame": 1500, "interim_secs": 0.6}
    async with running(agent) as (url, manager):
        await fed_by_the_test(manager.load)
        peer = WebRTCPeer()
        await peer.connect(url)
        try:
            await peer.wait_for_message(cm.BOT_READY, timeout=30)
            (live,) = manager.live.values()
            finals = _Finals(live.built.processors["stt"])
            live.worker.add_observer(finals)
            await _reply(peer, question)
            manager.load.feed({"loop_lag_ms": 60}, now=1e6)
            assert manager.load.feed({"loop_lag_ms": 60}, now=1e6 + 1).after == Level.DEGRADED
            await _reply(peer, question)
            manager.load.feed({"loop_lag_ms": 0}, now=1e6 + 2)
            assert manager.load.feed({"loop_lag_ms": 0}, now=1e6 + 10).after == Level.ELEVATED
            await _reply(peer, question)
            assert [(text, s["search"]["max_hmm_per_frame"], s["interim_secs"]) for text, s in finals.seen] == [
                ("what time is it", 3000, 0.3), ("what time is it", 1500, 0.6), ("what time is it", 3000, 0.3)]
            assert live.state == SessionState.ACTIVE  # never dropped
        finally:
            await peer.close()

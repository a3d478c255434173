"""configs/avatar_assistant.yaml over WebSocket and WebRTC: pose messages reach real clients, stamped on the reply."""

import asyncio
import time
from contextlib import asynccontextmanager
from dataclasses import replace

import numpy as np
from conftest import ROOT
from transport_kit import on_transport, speech, told_of_the_interruption

from pipelines.client_protocol import messages as cm
from pipelines.server.app import running
from pipelines.validate import Agent, Component
from processors.avatar import arkit, wire
from processors.avatar.renderer import FaceRenderer
from transports.clients.talk import Talker
from transports.clients.webrtc import WebRTCPeer

SILENCE = bytes(int(16000 * 1.0) * 2)
AVATAR = ROOT / "configs" / "avatar_assistant.yaml"


def with_avatar_output(agent: Agent, output: str) -> Agent:
    """``agent`` with its avatar's ``output`` param set to ``output``."""
    avatar = agent.processors["avatar"]
    changed = Component(avatar.id, avatar.type, avatar.params.model_copy(update={"output": output}))
    return replace(agent, processors={**agent.processors, "avatar": changed})


async def hear_the_reply(client, asked: float) -> None:
    """Waits for the bot (a ``Talker`` or a ``WebRTCPeer``) to start and stop speaking after ``asked``."""
    await client.wait_for_message(cm.BOT_STARTED_SPEAKING, timeout=15, after=asked)
    await client.wait_for_message(cm.BOT_STOPPED_SPEAKING, timeout=15, after=asked)


@asynccontextmanager
async def webrtc_peer(agent: Agent, *, video: bool = False):
    """A WebRTC peer connected to ``agent`` served, once the bot is ready: (peer, server); closed on the way out."""
    async with running(agent) as (url, server):
        peer = WebRTCPeer(video=video)
        await peer.connect(url)
        try:
            await peer.wait_for_message(cm.BOT_READY, timeout=15)
            yield peer, server
        finally:
            await peer.close()


def assert_reply_poses(messages: list[tuple[float, dict]], after: float) -> None:
    """The first reply's poses: 30 a second from its first sample, in order, the mouth moving."""
    poses = [m["data"] for t, m in messages
             if t > after and cm.kind_of(m) == "server-message" and m["data"].get("type") == wire.MESSAGE_TYPE]
    reply = [p for p in poses if p["u"] == 1]
    times = [p["t"] for p in reply]
    assert len(times) > 30 and times[0] == 0 and times == sorted(times)
    assert all(abs((b - a) - 1000 / 30) <= 1 for a, b in zip(times, times[1:], strict=False))
    jaw = [wire.decode(p)[2][arkit.INDEX["jawOpen"]] for p in reply]
    assert max(jaw) > 0.3 and np.isclose(min(jaw), 0, atol=0.02)


async def test_pose_messages_reach_a_websocket_client():
    question = await speech("what time is it")
    agent = on_transport(AVATAR, "websocket")
    async with running(agent) as (url, _):
        async with Talker(url.replace("http://", "ws://") + "/ws") as talker:
            await talker.wait_for_message(cm.BOT_READY, timeout=15)
            asked = time.monotonic()
            await talker.stream(question + SILENCE)
            await hear_the_reply(talker, asked)
            assert_reply_poses(talker.messages, asked)


async def test_pose_messages_go_only_to_a_client_that_asks_for_them():
    """pipecat's prebuilt client never asks: 30 pose messages a second would flood its event log."""
    question = await speech("what time is it")
    agent = on_transport(AVATAR, "websocket")
    async with running(agent) as (url, _):
        async with Talker(url.replace("http://", "ws://") + "/ws") as talker:
            await talker.send_message(cm.message(cm.CLIENT_MESSAGE, {"t": cm.POSES_REQUEST, "d": {"send": False}}))
            await talker.wait_for_message(cm.BOT_READY, timeout=15)
            asked = time.monotonic()
            await talker.stream(question + SILENCE)
            await hear_the_reply(talker, asked)
            kinds = [m["data"].get("type") for _, m in talker.messages if cm.kind_of(m) == cm.SERVER_MESSAGE]
            assert wire.MESSAGE_TYPE == cm.AVATAR_POSE and cm.AVATAR_POSE not in kinds, kinds


async def test_pose_messages_reach_a_webrtc_peer_on_the_data_channel():
    question = await speech("what time is it")
    async with webrtc_peer(on_transport(AVATAR, "webrtc")) as (peer, _):
        asked = time.monotonic()
        peer.say(question)
        await hear_the_reply(peer, asked)
        assert_reply_poses(peer.messages, asked)


async def test_a_webrtc_peer_sees_the_face_move_while_the_bot_speaks():
    question = await speech("what time is it")
    agent = with_avatar_output(on_transport(AVATAR, "webrtc"), "poses_and_video")
    async with webrtc_peer(agent, video=True) as (peer, _):
        asked = time.monotonic()
        peer.say(question)
        await hear_the_reply(peer, asked)
    speaking = cm.first_after(peer.messages, cm.BOT_STARTED_SPEAKING, asked)
    stopped = cm.first_after(peer.messages, cm.BOT_STOPPED_SPEAKING, asked)
    frames = [s.image for s in peer.seen if speaking <= s.time <= stopped]
    assert frames and frames[0].shape == (256, 256, 3)
    # The face's mouth (lower middle of the frame) changes from frame to frame while the bot speaks.
    mouth = [f[150:220, 80:176].astype(np.int16) for f in frames]
    changes = [np.abs(b - a).mean() for a, b in zip(mouth, mouth[1:], strict=False)]
    assert len(frames) > 15 and sum(c > 2 for c in changes) > len(changes) / 4


async def test_after_a_barge_in_no_pose_or_frame_of_the_story_and_the_face_rests_within_100_ms():
    story, hello = await speech("tell me a story"), await speech("hello")
    agent = with_avatar_output(on_transport(AVATAR, "webrtc"), "poses_and_video")
    async with webrtc_peer(agent, video=True) as (peer, server):
        asked = time.monotonic()
        peer.say(story)
        await peer.wait_for_message(cm.BOT_STARTED_SPEAKING, timeout=15, after=asked)
        await asyncio.sleep(1.5)  # well into the story
        barged = time.monotonic()
        peer.say(hello)
        session, interrupted_at = await told_of_the_interruption(peer, server, barged)
        await peer.wait_for_message(cm.BOT_STARTED_SPEAKING, timeout=15, after=interrupted_at)
    answered = cm.first_after(peer.messages, cm.BOT_STARTED_SPEAKING, interrupted_at)
    poses = [(t, m["data"]) for t, m in peer.messages
             if cm.kind_of(m) == "server-message" and m["data"].get("type") == wire.MESSAGE_TYPE]
    story_poses = [t for t, p in poses if p["u"] == 1]
    assert story_poses and max(story_poses) < interrupted_at + 0.005  # none after (data-channel transit aside)
    # The ease back to neutral: poses tied to no audio, the mouth at rest by 100 ms.
    ease = [(t, wire.decode(p)[2]) for t, p in poses if interrupted_at < t < answered and p["u"] == 0]
    rested = next(t for t, w in ease if arkit.neutral_mouth(w, tolerance=1 / 255))
    assert rested - interrupted_at <= 3 * 0.1  # the 100 ms goal, with room for loopback transit under load
    # The video track shows a closed mouth once the ease is over, until the answer.
    neutral = FaceRenderer(256).render(np.zeros(arkit.COUNT, dtype=np.float32))
    neutral_mouth = np.frombuffer(neutral, dtype=np.uint8).reshape(256, 256, 3)[150:220, 80:176].astype(np.int16)
    after = [s.image[150:220, 80:176].astype(np.int16) for s in peer.seen if interrupted_at + 0.25 < s.time < answered]
    during = [s.image[150:220, 80:176].astype(np.int16) for s in peer.seen if barged - 1.0 < s.time < barged]
    assert after and during
    rest = max(np.abs(f - neutral_mouth).mean() for f in after)
    speaking = max(np.abs(f - neutral_mouth).mean() for f in during)
    assert speaking > 10 and rest < speaking / 4  # VP8 leaves a little noise on a closed mouth

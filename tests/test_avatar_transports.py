"""configs/avatar_assistant.yaml over WebSocket and WebRTC: pose messages reach real clients, stamped on the reply."""

import time

import numpy as np
from conftest import ROOT
from transport_kit import on_transport, speech

from pipelines.server.app import running
from transports.clients.talk import Talker
from processors.avatar import arkit, wire
from transports import client_messages as cm
from transports.clients.webrtc import WebRTCPeer

SILENCE = bytes(int(16000 * 1.0) * 2)


def assert_reply_poses(messages: list[tuple[float, dict]], after: float) -> None:
    """The first reply's poses: 30 a second from its first sample, in order, the mouth moving."""
    poses = [m["data"] for t, m in messages
             if t > after and cm.kind_of(m) == "server-message" and m["data"].get("type") == wire.MESSAGE_TYPE]
    reply = [p for p in poses if p["u"] == 1]
    times = [p["t"] for p in reply]
    assert len(times) > 30 and times[0] == 0 and times == sorted(times)
    assert all(abs((b - a) - 1000 / 30) <= 1 for a, b in zip(times, times[1:]))
    jaw = [wire.decode(p)[2][arkit.INDEX["jawOpen"]] for p in reply]
    assert max(jaw) > 0.3 and np.isclose(min(jaw), 0, atol=0.02)


async def test_pose_messages_reach_a_websocket_client():
    question = await speech("what time is it")
    agent = on_transport(ROOT / "configs" / "avatar_assistant.yaml", "websocket")
    async with running(agent) as (url, _):
        async with Talker(url.replace("http://", "ws://") + "/ws") as talker:
            await talker.wait_for_message(cm.BOT_READY, timeout=15)
            asked = time.monotonic()
            await talker.stream(question + SILENCE)
            await talker.wait_for_message(cm.BOT_STARTED_SPEAKING, timeout=15, after=asked)
            await talker.wait_for_message(cm.BOT_STOPPED_SPEAKING, timeout=15, after=asked)
            assert_reply_poses(talker.messages, asked)


async def test_pose_messages_reach_a_webrtc_peer_on_the_data_channel():
    question = await speech("what time is it")
    agent = on_transport(ROOT / "configs" / "avatar_assistant.yaml", "webrtc")
    async with running(agent) as (url, _):
        peer = WebRTCPeer()
        await peer.connect(url)
        try:
            await peer.wait_for_message(cm.BOT_READY, timeout=15)
            asked = time.monotonic()
            peer.say(question)
            await peer.wait_for_message(cm.BOT_STARTED_SPEAKING, timeout=15, after=asked)
            await peer.wait_for_message(cm.BOT_STOPPED_SPEAKING, timeout=15, after=asked)
            assert_reply_poses(peer.messages, asked)
        finally:
            await peer.close()

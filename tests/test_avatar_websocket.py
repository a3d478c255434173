"""configs/avatar_assistant.yaml over the websocket transport: pose messages reach a real client, in order with the voice."""

import time

import numpy as np
from conftest import ROOT
from transport_kit import on_transport, speech

from pipelines.server import running
from pipelines.talk import Talker
from processors.avatar import arkit, wire
from transports import client_messages as cm

SILENCE = bytes(int(16000 * 1.0) * 2)


async def test_pose_messages_reach_a_websocket_client_stamped_on_the_reply():
    question = await speech("what time is it")
    agent = on_transport(ROOT / "configs" / "avatar_assistant.yaml", "websocket")
    async with running(agent) as (url, _):
        async with Talker(url.replace("http://", "ws://") + "/ws") as talker:
            await talker.wait_for_message(cm.BOT_READY, timeout=15)
            asked = time.monotonic()
            await talker.stream(question + SILENCE)
            await talker.wait_for_message(cm.BOT_STARTED_SPEAKING, timeout=15, after=asked)
            await talker.wait_for_message(cm.BOT_STOPPED_SPEAKING, timeout=15, after=asked)
            poses = [m["data"] for t, m in talker.messages
                     if t > asked and cm.kind_of(m) == "server-message" and m["data"].get("type") == wire.MESSAGE_TYPE]
            speaking = [p for p in poses if p["u"] == 1]
            times = [p["t"] for p in speaking]
            # The reply's poses, 30 a second from its first sample, in order; the mouth moved.
            assert len(times) > 30 and times[0] == 0 and times == sorted(times)
            assert all(abs((b - a) - 1000 / 30) <= 1 for a, b in zip(times, times[1:]))
            jaw = [wire.decode(p)[2][arkit.INDEX["jawOpen"]] for p in speaking]
            assert max(jaw) > 0.3 and np.isclose(min(jaw), 0, atol=0.02)

"""The server's per-turn latencies: from the speech's real end, and the client's report of what it heard."""

import asyncio
import time

from pipecat.frames.frames import BotStartedSpeakingFrame, VADUserStoppedSpeakingFrame
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.processors.frameworks.rtvi.frames import RTVIClientMessageFrame

from pipelines.server.latency import HEARD_MESSAGE, TurnLatency


def pushed(frame) -> FramePushed:
    source = FrameProcessor(name="source")
    return FramePushed(source=source, destination=source, frame=frame, direction=FrameDirection.DOWNSTREAM, timestamp=0)


async def test_reply_counts_from_the_speech_end_before_vads_silence_wait():
    replies = []
    latency = TurnLatency(replies.append, lambda s: None)
    # VAD decided 30 ms ago, after 200 ms of silence: the speech ended 230 ms ago.
    await latency.on_push_frame(pushed(VADUserStoppedSpeakingFrame(stop_secs=0.2, timestamp=time.time() - 0.03)))
    await asyncio.sleep(0.05)
    await latency.on_push_frame(pushed(BotStartedSpeakingFrame()))
    (reply,) = replies
    assert 0.28 <= reply < 0.5, reply


async def test_a_clients_heard_report_is_recorded_and_junk_is_not():
    heard = []
    latency = TurnLatency(lambda s: None, lambda s: None, heard.append)
    for data in ({"speech_end_to_heard_ms": 412}, {"speech_end_to_heard_ms": "412"}, {"speech_end_to_heard_ms": -5},
                 {"speech_end_to_heard_ms": 1e9}, {"speech_end_to_heard_ms": True}, "412", None):
        await latency.on_push_frame(pushed(RTVIClientMessageFrame(msg_id="m", type=HEARD_MESSAGE, data=data)))
    await latency.on_push_frame(pushed(RTVIClientMessageFrame(msg_id="m", type="other", data={"speech_end_to_heard_ms": 1})))
    assert heard == [0.412]

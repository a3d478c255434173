"""RTVI transcripts say when a closed-domain agent did not understand the user.

The STT marks a rejected utterance ``result["out_of_domain"]`` and transcribes
it as the open pass's guess; the page must show "not understood", not those
words, so the observer's ``user-transcription`` and ``user-input`` carry
``"understood": false``.
"""

from pipecat.frames.frames import TranscriptionFrame
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from pipelines.client_protocol.rtvi import client_protocol


async def transcripts_sent(result: dict) -> list[dict]:
    rtvi, observer = client_protocol()
    sent = []

    async def push_frame(frame, direction=FrameDirection.DOWNSTREAM):
        sent.append(frame.message)

    rtvi.push_frame = push_frame  # the observer's messages go out through its RTVI processor
    stt = FrameProcessor(name="stt")
    frame = TranscriptionFrame("pilates unwed", "user", "now", result=result, finalized=True)
    await observer.on_push_frame(FramePushed(source=stt, destination=stt, frame=frame,
                                             direction=FrameDirection.DOWNSTREAM, timestamp=0))
    return [m for m in sent if m["type"] in ("user-transcription", "user-input")]


async def test_an_out_of_domain_transcript_is_sent_as_not_understood():
    sent = await transcripts_sent({"out_of_domain": True, "words": []})
    assert {m["type"] for m in sent} == {"user-transcription", "user-input"}
    assert all(m["data"]["understood"] is False for m in sent), sent


async def test_an_understood_transcript_carries_no_flag():
    sent = await transcripts_sent({"words": []})
    assert sent and all("understood" not in m["data"] for m in sent), sent

"""The test kit: injection anywhere, probes both ways, bounded waits, audio at the input."""

import pytest
from pipecat.frames.frames import InputAudioRawFrame, OutputAudioRawFrame, TextFrame, TTSSpeakFrame

from pipelines.testing import AgentHarness

LINEAR = """version: 1
name: kit
transport: {type: synthetic, audio_out_sample_rate: 16000}
processors:
  first: {type: passthrough}
  middle: {type: passthrough}
  last: {type: passthrough}
pipeline: [input, first, middle, last, output]
"""


async def test_inject_at_a_processor_skips_the_ones_before_it():
    async with AgentHarness.from_text(LINEAR) as h:
        first, last = h.probe("first"), h.probe("last")
        await h.inject(TextFrame("mid"), at="middle")
        await last.wait_for(TextFrame)
    assert first.of_type(TextFrame) == []


async def test_upstream_injection_and_probe():
    async with AgentHarness.from_text(LINEAR) as h:
        up = h.probe("first", upstream=True)
        await h.inject(TTSSpeakFrame("going up"), at="last", upstream=True)
        frame = await up.wait_for(TTSSpeakFrame)
    assert frame.text == "going up"


async def test_wait_for_times_out_naming_what_was_seen():
    async with AgentHarness.from_text(LINEAR) as h:
        probe = h.probe("last")
        await h.inject(TextFrame("only this"))
        await probe.wait_for(TextFrame)
        with pytest.raises(TimeoutError, match=r"last downstream: no 1 x .*TTSSpeakFrame.*TextFrame"):
            await probe.wait_for(TTSSpeakFrame, timeout=0.2)


async def test_audio_at_the_input_arrives_in_20ms_chunks_and_output_audio_is_played():
    pcm = bytes(16000 * 2 // 10)  # 100 ms of silence at 16 kHz
    async with AgentHarness.from_text(LINEAR) as h:
        probe = h.probe("first")
        await h.inject_audio(pcm, sample_rate=16000)
        await probe.wait_for(InputAudioRawFrame, count=5)
        speech = bytes(16000 * 2 // 5)  # 200 ms
        await h.inject(OutputAudioRawFrame(audio=speech, sample_rate=16000, num_channels=1), at="last")
        for _ in range(100):
            if len(h.output.audio_written()) >= len(speech):
                break
            await __import__("asyncio").sleep(0.02)
    chunks = probe.of_type(InputAudioRawFrame)
    assert [len(c.audio) for c in chunks] == [640] * 5
    written = [w for w in h.output.written if isinstance(w.frame, OutputAudioRawFrame)]
    assert sum(len(w.frame.audio) for w in written) == len(speech)
    # Played like a sound card: the chunks span about the audio's duration.
    assert written[-1].time - written[0].time >= 0.1

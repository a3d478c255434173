"""The ``espeak`` TTS: params, streaming, phoneme events, interruption, concurrency."""

import asyncio
import time
import wave

import numpy as np
import pytest
from pipecat.frames.frames import (
    InterruptionWorkerFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStoppedFrame,
)

from pipelines.errors import ConfigErrors
from pipelines.testing import AgentHarness
from pipelines.validate import load_agent_text
from processors.tts.espeak import PhonemeFrame, espeak_engine, synthesize_pcm

AGENT = """
version: 1
name: speaker
transport: {{type: synthetic, audio_out_sample_rate: 24000}}
processors:
  tts: {{type: espeak, {params}}}
pipeline: [input, tts, output]
"""

LONG_TEXT = " ".join(["the quick brown fox jumps over the lazy dog and runs far away"] * 40)


def agent(params: str = "voice: en-us") -> str:
    return AGENT.format(params=params)


@pytest.mark.parametrize(
    "params, key, message",
    [
        ("voice: en-uss", "processors.tts.voice", "unknown espeak voice 'en-uss' (did you mean 'en-us'?)"),
        ("voice: en-us+f33", "processors.tts.voice", "unknown espeak voice variant 'f33'"),
        ("rate: 20", "processors.tts.rate", "greater than or equal to 80"),
    ],
)
def test_bad_params_are_one_line_errors_naming_the_key(params, key, message):
    with pytest.raises(ConfigErrors) as caught:
        load_agent_text(agent(params), "agent.yaml")
    text = str(caught.value)
    assert "\n" not in text and key in text and message in text


def test_voices_with_variants_validate():
    load_agent_text(agent("voice: en+f3, rate: 200, pitch: 70"), "agent.yaml")


async def test_speaks_at_the_output_rate_with_phonemes_before_their_audio():
    async with AgentHarness.from_text(agent()) as h:
        tts = h.probe("tts")
        await h.inject(TTSSpeakFrame("Hello there, how are you?"), at="tts")
        await tts.wait_for(TTSStoppedFrame, timeout=10)
        audio = tts.of_type(TTSAudioRawFrame)
        phonemes = tts.of_type(PhonemeFrame)
        assert {f.sample_rate for f in audio} == {24000}
        seconds = sum(len(f.audio) for f in audio) / 2 / 24000
        assert 1.0 < seconds < 3.0
        # Streamed as synthesized: many chunks, not one buffer.
        assert len(audio) > 5
        offsets = [p.offset_ms for p in phonemes]
        # Whole ms on espeak's 22050 Hz clock vs resampled audio: 2 ms of rounding at the very end.
        assert offsets == sorted(offsets) and offsets[-1] <= seconds * 1000 + 2
        assert "h" in [p.phoneme for p in phonemes]
        # The first phoneme is pushed before the first audio chunk.
        assert tts.frames.index(phonemes[0]) < tts.frames.index(audio[0])


async def test_rate_and_pitch_change_the_speech():
    slow = await synthesize_pcm("one two three four five", rate=100)
    fast = await synthesize_pcm("one two three four five", rate=300)
    high = await synthesize_pcm("one two three four five", pitch=90)
    assert len(slow) > 2 * len(fast)
    assert high != await synthesize_pcm("one two three four five", pitch=10)


async def test_interruption_stops_synthesis_and_audio_at_once():
    async with AgentHarness.from_text(agent()) as h:
        tts = h.probe("tts")
        await h.inject(TTSSpeakFrame(LONG_TEXT), at="tts")
        await h.probe("output").wait_for(TTSAudioRawFrame, timeout=10)
        await h.inject(InterruptionWorkerFrame(), at="tts", upstream=True)
        await asyncio.sleep(0.5)
        pushed = len(tts.of_type(TTSAudioRawFrame))
        written = len(h.output.written)
        await asyncio.sleep(0.5)
        assert len(tts.of_type(TTSAudioRawFrame)) == pushed
        assert len(h.output.written) == written
    # Uninterrupted, this text is ~2 minutes of speech; far less was made.
    assert pushed * 0.06 < 60


async def test_aborting_a_stream_stops_the_espeak_thread_within_a_chunk():
    engine = espeak_engine()
    stream = engine.stream(LONG_TEXT * 3, voice="en-us", rate=175, pitch=50, sample_rate=16000)
    await stream.__anext__()
    started = time.perf_counter()
    await stream.aclose()
    # The thread is free again as soon as its next callback returns 1.
    pcm = await synthesize_pcm("ok")
    assert pcm and time.perf_counter() - started < 1.0


async def spoken(text: str, voice: str, rate: int) -> tuple[list[str], float]:
    """The phonemes espeak-ng says for ``text`` and the seconds of audio."""
    phonemes, samples = [], 0
    async for audio, events, _ in espeak_engine().stream(text, voice=voice, rate=rate, pitch=50, sample_rate=16000):
        phonemes += [name for name, _ in events]
        samples += len(audio) // 2
    return phonemes, samples / 16000


async def test_concurrent_agents_get_the_speech_they_would_get_alone():
    # espeak-ng adds a little randomness to its waveform, so compare what was
    # said (phonemes, which depend on voice and text) and how long it took.
    texts = [("Good morning to you.", "en-us", 150), ("Bonjour tout le monde.", "fr", 220),
             ("Hello again.", "en-gb-x-rp", 300)]
    alone = [await spoken(*t) for t in texts]
    together = await asyncio.gather(*[spoken(*t) for t in texts * 3])
    for (phonemes, secs), (alone_phonemes, alone_secs) in zip(together, alone * 3, strict=False):
        assert phonemes == alone_phonemes
        assert abs(secs - alone_secs) < 0.1 * alone_secs


def test_say_command_writes_speech_for_the_file_transport(tmp_path, capsys):
    from pipelines.cli import build_parser

    out = tmp_path / "question.wav"
    args = build_parser().parse_args(["say", "what time is it", "-o", str(out), "--pad", "0.25"])
    assert args.func(args) == 0
    with wave.open(str(out), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        audio = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    assert not audio[:4000].any() and np.abs(audio).max() > 5000
    args = build_parser().parse_args(["say", "hi", "-o", str(out), "--voice", "xx-nope"])
    assert args.func(args) == 1
    assert capsys.readouterr().err.strip() == "--voice: unknown espeak voice 'xx-nope'"


async def test_phoneme_offsets_run_on_across_the_sentences_of_a_reply():
    async with AgentHarness.from_text(agent()) as h:
        tts = h.probe("tts")
        for frame in (LLMFullResponseStartFrame(), LLMTextFrame("One small step. "), LLMTextFrame("Two more."),
                      LLMFullResponseEndFrame()):
            await h.inject(frame, at="tts")
        await tts.wait_for(TTSStoppedFrame, timeout=10)
    phonemes = tts.of_type(PhonemeFrame)
    audio_ms = sum(len(f.audio) for f in tts.of_type(TTSAudioRawFrame)) / 2 / 24
    assert len({p.context_id for p in phonemes}) == 1
    offsets = [p.offset_ms for p in phonemes]
    # The last event may mark the very end of the audio: offsets are whole ms on
    # espeak's 22050 Hz clock, the audio is resampled, so allow 2 ms of rounding.
    assert offsets == sorted(offsets) and audio_ms / 2 < offsets[-1] <= audio_ms + 2

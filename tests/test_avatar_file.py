"""The avatar on the file transport: poses as JSONL beside the WAV, each at its sample in the WAV."""

import asyncio
import json
import wave

import numpy as np
from pipecat.frames.frames import (
    BotStoppedSpeakingFrame,
    OutputAudioRawFrame,
    TTSSpeakFrame,
    VADUserStoppedSpeakingFrame,
)

from pipelines.testing import AgentHarness
from pipelines.validate import load_agent
from processors.avatar import arkit, wire

AGENT = """
version: 1
name: face_files
transport:
  type: file
  input: in.wav
  output: out/bot.wav
  poses: out/poses.jsonl
  tail_secs: 0.2
processors:
  tts: {type: espeak}
  avatar: {type: avatar, seed: 3, output: frames}
pipeline: [input, tts, avatar, output]
"""
JAW = arkit.INDEX["jawOpen"]
#: Samples compared at each pose: less than the gap between a pose's sample
#: and the next 40 ms chunk boundary of the output (at least 160 at 24 kHz),
#: so a window never spans a place where the output may have waited.
WINDOW = 160


def write_silence(path, secs: float, rate: int = 16000) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(bytes(2 * int(secs * rate)))


async def test_poses_land_beside_the_wav_at_their_samples(write_config, tmp_path):
    write_silence(tmp_path / "in.wav", 4.0)
    async with AgentHarness(load_agent(write_config(AGENT)), transport=None) as h:
        timeline = h.built.transport.timeline
        spoken = h.probe("avatar")
        while timeline.now() < 0.5:
            await asyncio.sleep(0.005)
        await h.inject(VADUserStoppedSpeakingFrame(), at="input", upstream=True)
        await h.inject(TTSSpeakFrame("Hello there. Peter picked a peck of peppers."), at="tts")
        await h.probe("input", upstream=True).wait_for(BotStoppedSpeakingFrame, timeout=15)
        bot_start = timeline.bot_audio.start
        await h.stop()
    with wave.open(str(tmp_path / "out" / "bot.wav"), "rb") as f:
        rate = f.getframerate()
        wav = np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16)
    chunks = spoken.of_type(OutputAudioRawFrame)
    assert {c.sample_rate for c in chunks} == {rate}
    reply = np.frombuffer(b"".join(c.audio for c in chunks), dtype=np.int16)  # utterance samples, in order
    lines = [json.loads(line) for line in (tmp_path / "out" / "poses.jsonl").read_text().splitlines()]
    speech = [r for r in lines if r["u"] == 1]
    assert len(speech) > 40
    # Every pose of the reply, 30 a second, the first at the reply's first sample in the WAV.
    assert [r["t"] for r in speech] == [round(k * 1000 / 30) for k in range(len(speech))]
    assert abs(speech[0]["sample"] - bot_start * rate) <= 1
    # Each pose at its own sample: the WAV there holds the reply's audio from that
    # utterance sample on. On a loaded machine the fast timeline may run past the
    # audio written (the output then writes silence, as a sound card underruns),
    # so the offset may grow within a reply, never shrink.
    offsets = [r["sample"] - r["utterance_sample"] for r in speech]
    assert offsets == sorted(offsets)
    misplaced = [(r["sample"], r["utterance_sample"]) for r in speech
                 if not np.array_equal(wav[r["sample"]:][:WINDOW], reply[r["utterance_sample"]:][:WINDOW])]
    assert not misplaced, "poses (sample, utterance_sample) not at their audio in the WAV"
    assert sum(np.abs(reply[r["utterance_sample"]:][:WINDOW]).max() > 300 for r in speech) > len(speech) // 2
    # The mouth is open where the WAV is loud and closed where it is silent.
    audio = wav.astype(np.float32)
    jaw = np.array([wire.decode(r)[2][JAW] for r in speech])
    loudness = np.array([np.sqrt(np.mean(audio[r["sample"]:r["sample"] + rate // 30] ** 2)) for r in speech])
    assert np.corrcoef(jaw, loudness)[0, 1] > 0.3
    assert jaw.max() > 0.3

"""The ``file`` transport: WAV errors, resampling, the shared timeline, transcript, ending."""

import asyncio
import json
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    InputAudioRawFrame,
    InterruptionWorkerFrame,
    LLMContextAssistantTurnFrame,
    LLMContextUserTurnFrame,
    TTSSpeakFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)

from pipelines.builder import build_agent
from pipelines.errors import ConfigErrors
from pipelines.runner import RunOptions, run_worker
from pipelines.testing import AgentHarness
from pipelines.validate import load_agent

ROOT = Path(__file__).resolve().parent.parent

AGENT = """
version: 1
name: files
transport:
  type: file
  input: in.wav
  output: out/bot.wav
  transcript: out/turns.jsonl
  realtime: {realtime}
  tail_secs: 0.2
processors:
  tts: {{type: espeak}}
pipeline: [input, tts, output]
"""


def write_wav(path, samples: np.ndarray, rate: int, *, width: int = 2, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())


def tone(secs: float, rate: int) -> np.ndarray:
    t = np.arange(int(secs * rate)) / rate
    return (3000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


def read_wav(path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16), wav.getframerate()


@pytest.fixture
def files_agent(write_config):
    def make(*, realtime: bool = False):
        return load_agent(write_config(AGENT.format(realtime=str(realtime).lower())))
    return make


@pytest.mark.parametrize(
    "make_input, message",
    [
        (lambda p: None, "in.wav: no such file"),
        (lambda p: p.write_bytes(b"RIFF0000WAVEnonsense"), "in.wav: not a readable WAV file"),
        (lambda p: write_wav(p, np.zeros(800, dtype=np.uint8), 8000, width=1), "in.wav: sample width is 8 bits"),
    ],
)
def test_unusable_wav_is_a_one_line_error_naming_the_file(files_agent, tmp_path, make_input, message):
    make_input(tmp_path / "in.wav")
    with pytest.raises(ConfigErrors) as caught:
        build_agent(files_agent())
    text = str(caught.value)
    assert "\n" not in text and "transport.input: " in text and message in text  # a missing file: at validation, with its line


async def run_to_end(agent, timeout: float = 30.0) -> float:
    """Runs ``agent`` until its file transport ends the session; returns the wall time."""
    worker = build_agent(agent).worker()
    started = time.monotonic()
    await asyncio.wait_for(run_worker(worker), timeout)
    return time.monotonic() - started


async def test_any_rate_and_channels_are_resampled_and_the_session_ends_by_itself(files_agent, tmp_path):
    stereo = np.repeat(tone(1.0, 8000)[:, None], 2, axis=1)
    write_wav(tmp_path / "in.wav", stereo, 8000, channels=2)
    async with AgentHarness(files_agent(), transport=None) as h:
        pushed = h.probe("input")
        await pushed.wait_for(InputAudioRawFrame, count=50, timeout=10)
    frames = pushed.of_type(InputAudioRawFrame)
    assert {(f.sample_rate, f.num_channels, len(f.audio)) for f in frames} == {(16000, 1, 640)}
    heard = np.frombuffer(b"".join(f.audio for f in frames[:50]), dtype=np.int16)
    assert abs(np.abs(heard).max() - 3000) < 300  # the tone, not silence or clipping

    # Without a bot to wait for, it ends after the input and tail_secs of silence.
    wall = await run_to_end(files_agent())
    bot, rate = read_wav(tmp_path / "out" / "bot.wav")
    assert rate == 24000 and len(bot) >= 24000 and not bot.any()
    assert wall < 10


@pytest.mark.parametrize("realtime", [False, True])
async def test_bot_audio_lands_on_the_input_timeline(files_agent, tmp_path, realtime):
    write_wav(tmp_path / "in.wav", np.zeros(16000 * 3, dtype=np.int16), 16000)
    async with AgentHarness(files_agent(realtime=realtime), transport=None) as h:
        timeline = h.built.transport.timeline
        while timeline.now() < 1.0:
            await asyncio.sleep(0.005)
        # As after a user's turn: fast mode runs at real pace until the bot answers.
        await h.inject(VADUserStoppedSpeakingFrame(), at="input", upstream=True)
        await h.inject(TTSSpeakFrame("Hello."), at="tts")
        await h.probe("input", upstream=True).wait_for(BotStoppedSpeakingFrame, timeout=10)
        await h.stop()
    bot, rate = read_wav(tmp_path / "out" / "bot.wav")
    first = np.nonzero(np.abs(bot) > 100)[0][0] / rate
    assert 1.0 <= first < 1.3
    assert len(bot) / rate >= 3.0  # padded to the input's length


async def test_fast_mode_fast_forwards_while_the_agent_only_listens(files_agent, tmp_path):
    write_wav(tmp_path / "in.wav", np.zeros(16000 * 4, dtype=np.int16), 16000)
    assert await run_to_end(files_agent()) < 0.7 * 4.2


async def test_transcript_has_user_and_bot_turns_with_their_times(files_agent, tmp_path):
    write_wav(tmp_path / "in.wav", np.zeros(16000 * 10, dtype=np.int16), 16000)
    async with AgentHarness(files_agent(realtime=True), transport=None) as h:
        timeline = h.built.transport.timeline

        async def at(secs: float, *frames) -> None:
            while timeline.now() < secs:
                await asyncio.sleep(0.005)
            for frame in frames:
                await h.inject(frame, at="input", upstream=True)

        await at(0.3, VADUserStartedSpeakingFrame(start_secs=0.1))
        await at(0.6, VADUserStoppedSpeakingFrame(stop_secs=0.2), LLMContextUserTurnFrame(text="hi there", timestamp=""))
        await at(0.8)
        await h.inject(TTSSpeakFrame("Hello!"), at="tts")
        await h.probe("input", upstream=True).wait_for(BotStoppedSpeakingFrame, timeout=10)
        await h.inject(LLMContextAssistantTurnFrame(text="Hello!", timestamp=""), at="input", upstream=True)
        await h.stop()
    lines = [json.loads(line) for line in (tmp_path / "out" / "turns.jsonl").read_text().splitlines()]
    assert [(r["role"], r["text"]) for r in lines] == [("user", "hi there"), ("assistant", "Hello!")]
    user, bot = lines
    # VAD's own delays are taken off the user's times; the bot's are where its audio went.
    assert 0.15 < user["start"] < 0.25 and 0.35 < user["end"] < 0.5
    assert 0.8 <= bot["start"] < 1.0 and 0.3 < bot["end"] - bot["start"] < 1.5
    audio, rate = read_wav(tmp_path / "out" / "bot.wav")
    assert not audio[: int(bot["start"] * rate)].any() and audio[int(bot["start"] * rate):].any()
    assert bot["interrupted"] is False


def test_framegraph_run_reports_a_bad_wav_in_one_line(files_agent, tmp_path):
    write_wav(tmp_path / "in.wav", np.zeros(800, dtype=np.uint8), 8000, width=1)
    config = tmp_path / "agent.yaml"
    files_agent()  # writes the config
    run = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", str(config)], capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        f"transport.input: {tmp_path / 'in.wav'}: sample width is 8 bits; 16-bit PCM is required")


async def test_run_option_realtime_plays_the_input_at_its_pace(files_agent, tmp_path):
    write_wav(tmp_path / "in.wav", np.zeros(16000, dtype=np.int16), 16000)
    agent = files_agent()
    started = time.monotonic()
    await asyncio.wait_for(agent.transport.type.serve(agent, RunOptions(realtime=True)), 30)
    assert time.monotonic() - started >= 1.0  # fast mode takes a fraction of that (see above)


async def test_bot_cut_off_mid_sentence_is_an_interrupted_turn_without_words(files_agent, tmp_path):
    write_wav(tmp_path / "in.wav", np.zeros(16000 * 4, dtype=np.int16), 16000)
    async with AgentHarness(files_agent(realtime=True), transport=None) as h:
        up = h.probe("input", upstream=True)
        await h.inject(TTSSpeakFrame("This sentence is much too long to be finished before it gets cut off."),
                       at="tts")
        await up.wait_for(BotStartedSpeakingFrame, timeout=10)
        await asyncio.sleep(0.3)
        await h.inject(InterruptionWorkerFrame(), at="tts", upstream=True)
        await up.wait_for(BotStoppedSpeakingFrame, timeout=10)
        await h.inject(LLMContextUserTurnFrame(text="stop", timestamp=""), at="input", upstream=True)
        await h.stop()
    lines = [json.loads(line) for line in (tmp_path / "out" / "turns.jsonl").read_text().splitlines()]
    assert [(r["role"], r["text"]) for r in lines] == [("assistant", ""), ("user", "stop")]
    assert lines[0]["interrupted"] is True and 0.2 < lines[0]["end"] - lines[0]["start"] < 1.0


async def test_serve_reports_a_bad_wav_as_config_errors_not_an_exit(files_agent, tmp_path):
    write_wav(tmp_path / "in.wav", np.zeros(800, dtype=np.uint8), 8000, width=1)
    agent = files_agent()
    with pytest.raises(ConfigErrors) as caught:
        await agent.transport.type.serve(agent, RunOptions())
    assert [e.key for e in caught.value.errors] == ["transport.input"]

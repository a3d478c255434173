"""Barge-in: how fast the user's speech stops the bot, and what must not stop it.

The whole default agent (``configs/assistant.yaml`` unless ``--config``) runs
on the synthetic transport, whose output plays audio in real time. The bot is
made to speak a long answer; one second into it, a human clip from
../shared/audio/human is played over it. Per clip: the time from the speech
onset (from the audio's energy) to the InterruptionFrame, and to the end of
the last bot audio that leaves the output (the playback end of the last chunk
written). Then the same with a 150 ms noise burst and a synthetic 250 ms cough
over the answer: those must interrupt nothing.

    .venv/bin/python bench/barge_in.py [--config FILE] [--trials 1]
"""

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from listening_kit import (
    DEFAULT_CONFIG,
    RATE,
    BotAudio,
    Feeder,
    Timeline,
    bench_clips,
    load_bench_agent,
    percentile,
    start_agent,
)
from loguru import logger
from pipecat.frames.frames import InterruptionFrame, TTSSpeakFrame

from pipelines.testing import AgentHarness

LONG_ANSWER = (
    "Here is a long answer that keeps going for quite a while, so that there is plenty of time to "
    "interrupt it. It has several sentences, each of them long enough to be heard. And after that "
    "sentence there is another one, and then one more, until somebody finally says something."
)
BOT_SPEAKS_FIRST_SECS = 1.0
SETTLE_SECS = 4.0


def noise_burst(secs: float = 0.15, level_db: float = -20.0, seed: int = 0) -> bytes:
    """White noise at ``level_db`` dBFS RMS, with 5 ms fades."""
    rng = np.random.default_rng(seed)
    n = int(secs * RATE)
    samples = rng.standard_normal(n) * (10 ** (level_db / 20))
    fade = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.005 * RATE))
    return (np.clip(samples * fade, -1, 1) * 32767).astype(np.int16).tobytes()


def cough(secs: float = 0.25, seed: int = 1) -> bytes:
    """A synthetic cough: a sharp attack of band-limited noise decaying over ``secs``."""
    rng = np.random.default_rng(seed)
    n = int(secs * RATE)
    noise = rng.standard_normal(n + 64)
    band = np.convolve(noise, np.hanning(9), mode="same")[:n] - np.convolve(noise, np.hanning(64), mode="same")[:n]
    t = np.arange(n) / RATE
    envelope = np.minimum(1.0, t / 0.01) * np.exp(-t / (secs / 4))
    samples = band / np.abs(band).max() * 0.5 * envelope
    return (samples * 32767).astype(np.int16).tobytes()


def playback_end(writes: list[tuple[float, float]]) -> float | None:
    """When the last of ``writes`` (write time, duration) finishes playing on a real-time output."""
    played_until = None
    for when, duration in writes:
        played_until = max(when, played_until or when) + duration
    return played_until


async def _bot_speaking(harness: AgentHarness, bot_audio: BotAudio) -> None:
    """Makes the bot speak the long answer; returns once it has spoken for a while."""
    asked = time.monotonic()
    await harness.inject(TTSSpeakFrame(LONG_ANSWER), at="tts")
    while time.monotonic() < asked + 10:
        writes = [t for t, _ in bot_audio.update() if t >= asked]
        if writes and time.monotonic() - writes[0] >= BOT_SPEAKS_FIRST_SECS:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError("the bot did not start speaking")


async def trial(harness: AgentHarness, bot_audio: BotAudio, feeder: Feeder, timeline: Timeline, pcm: bytes,
                onset: float, speech_secs: float) -> tuple[float | None, float | None]:
    """Plays ``pcm`` over the bot's answer: (onset -> interruption, onset -> last bot audio end)."""
    await _bot_speaking(harness, bot_audio)
    onset_at = (await feeder.play(pcm)) + onset
    await asyncio.sleep(speech_secs + 0.3)
    interrupted = timeline.first(InterruptionFrame.__name__, onset_at)
    during = [(t, d) for t, d in bot_audio.update() if onset_at - 1.0 <= t <= onset_at + speech_secs]
    end = playback_end(during)
    await asyncio.sleep(SETTLE_SECS)
    return (None if interrupted is None else interrupted - onset_at), (None if end is None else end - onset_at)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--trials", type=int, default=1, help="rounds over all clips")
    parser.add_argument("--keep-grammar", action="store_true", help="keep the STT's closed grammar, if any")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="ERROR")
    clips = await bench_clips()
    timeline = Timeline()
    agent = load_bench_agent(args.config, args.keep_grammar)
    h = await start_agent(agent, timeline, (InterruptionFrame,))
    bot_audio = BotAudio(h)
    try:
        feeder = Feeder(h)
        feeder.start()
        to_interruption, to_silence = [], []
        for _ in range(args.trials):
            for clip in clips:
                interrupted, silent = await trial(h, bot_audio, feeder, timeline, clip.pcm, clip.onset, clip.end - clip.onset)
                print(f"{clip.name:10} onset -> interruption "
                      f"{'none' if interrupted is None else f'{interrupted * 1000:.0f} ms'}, "
                      f"-> end of bot audio {'n/a' if silent is None else f'{silent * 1000:.0f} ms'}", flush=True)
                if interrupted is not None and silent is not None:
                    to_interruption.append(interrupted * 1000)
                    to_silence.append(silent * 1000)
        false_triggers = []
        for name, pcm in (("noise burst 150 ms", noise_burst()), ("cough 250 ms", cough())):
            interrupted, silent = await trial(h, bot_audio, feeder, timeline, pcm, 0.0, len(pcm) / (2 * RATE))
            false_triggers.append(interrupted is not None)
            print(f"{name:18} {'INTERRUPTED the bot' if interrupted is not None else 'did not interrupt'}")
        await feeder.stop()
    finally:
        await h.stop()
    if to_silence:
        print(f"\nbarge-in over {len(to_silence)} clips: onset -> interruption median "
              f"{statistics.median(to_interruption):.0f} ms; onset -> end of bot audio median "
              f"{statistics.median(to_silence):.0f} ms, p90 {percentile(to_silence, 90):.0f} ms; "
              f"false interruptions {sum(false_triggers)}/{len(false_triggers)}")


if __name__ == "__main__":
    asyncio.run(main())

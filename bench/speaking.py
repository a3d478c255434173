"""The speaking half, measured: espeak-ng and Piper latency and cost, sharing, and the default agent's answers.

Prints one table of figures (docs/speaking.md keeps the last run's):

- espeak-ng: time to the first audio chunk and real-time factor of one
  sentence at the default 24 kHz output (resampled with soxr);
- the voices side by side (``type: espeak``, ``type: piper_tts`` with the
  joe voice, and the same with one onnxruntime thread, through the real
  services, taking turns run by run): first audio after the LLM's first
  sentence reaches the TTS (a scripted reply streamed token by token; the
  time from the service's ``run_tts`` call to its first audio frame), Piper's
  real-time factor for a whole sentence, and CPU per talking session (process
  CPU over wall time while one agent speaks a 10 s story at the audio's pace
  on the synthetic output, less the same agent idle);
- sharing the one espeak thread: N agents asking for a sentence at the same
  instant, each one's time to first audio;
- abort: from cancelling a synthesis to the espeak thread being free again;
- the default agent (configs/assistant.yaml) on the file transport, fast mode:
  for espeak-spoken questions, the gap on the timeline from the end of the
  question's speech (by energy) to the first audible bot audio, and the wall
  time per session;
- memory: RSS before and after 50 short agents in a row.

    .venv/bin/python bench/speaking.py [--runs 5] [--realtime] [--voices-only]
"""

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from loguru import logger

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipecat.frames.frames import (  # noqa: E402
    BotStoppedSpeakingFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
)
from pipecat.utils.time import time_now_iso8601  # noqa: E402

from pipelines.audio import read_wav, write_wav  # noqa: E402
from pipelines.builder import build_agent  # noqa: E402
from pipelines.runner import run_worker  # noqa: E402
from pipelines.testing import AgentHarness  # noqa: E402
from pipelines.validate import Component, load_agent  # noqa: E402
from processors.tts.espeak import espeak_engine, synthesize_pcm  # noqa: E402

SENTENCE = "It is sunny and warm today, a perfect day for a walk in the park."
REPLIES = ["It is sunny and warm today. A perfect day for a walk.",
           "Why did the robot go on holiday? It needed to recharge its batteries.",
           "I have no clock here, but it is always a good time to talk.",
           "Sorry, I did not catch that. Could you say it again?"]
STORY = ("Once upon a time, a small robot learned to speak. It said hello to everyone it met. "
         "One day, someone finally answered. They talked until the sun went down, and the robot was never lonely again.")
VOICES = {"espeak": "{type: espeak}", "piper": "{type: piper_tts}", "piper, threads: 1": "{type: piper_tts, threads: 1}"}
SPEAKER = """
version: 1
name: speaker
transport: {{type: synthetic, audio_out_sample_rate: 24000}}
processors:
  tts: {tts}
pipeline: [input, tts, output]
"""
QUESTIONS = ["What is the weather like today?", "Tell me a joke.", "What time is it?", "Hello.", "Thank you."]
ASSISTANT = ROOT / "configs" / "assistant.yaml"


async def first_audio(text: str, sample_rate: int = 24000) -> tuple[float, float, float]:
    """(seconds to the first chunk, seconds to the last, seconds of audio) for one synthesis."""
    started = time.perf_counter()
    first = None
    samples = 0
    async for audio, _, _ in espeak_engine().stream(text, voice="en-us", rate=175, pitch=50, sample_rate=sample_rate):
        if first is None and audio:
            first = time.perf_counter() - started
        samples += len(audio) // 2
    return first, time.perf_counter() - started, samples / sample_rate


async def bench_espeak(runs: int) -> list[tuple[str, str]]:
    await first_audio("warm up")
    results = [await first_audio(SENTENCE) for _ in range(runs)]
    ttfa = statistics.median(r[0] for r in results) * 1000
    rtf = statistics.median(r[1] / r[2] for r in results)
    rows = [("espeak first audio, one sentence (median)", f"{ttfa:.2f} ms"),
            ("espeak real-time factor (synthesis / audio)", f"{rtf:.4f} ({1 / rtf:.0f}x real time)")]
    for n in (1, 4, 16, 64):
        together = await asyncio.gather(*[first_audio(SENTENCE) for _ in range(n)])
        firsts = sorted(r[0] * 1000 for r in together)
        rows.append((f"{n} agents at once: first audio median / max", f"{statistics.median(firsts):.1f} / {firsts[-1]:.1f} ms"))
    aborts = []
    for _ in range(runs):
        stream = espeak_engine().stream(SENTENCE * 20, voice="en-us", rate=175, pitch=50, sample_rate=24000)
        await stream.__anext__()
        started = time.perf_counter()
        await stream.aclose()
        await first_audio("ok")  # queued behind the aborted job
        aborts.append((time.perf_counter() - started) * 1000)
    rows.append(("abort to thread free (incl. next first audio, median)", f"{statistics.median(aborts):.2f} ms"))
    return rows


async def reply_first_audio(h: AgentHarness, reply: str) -> float:
    """Streams ``reply`` as an LLM would; seconds from the TTS's first ``run_tts`` call to its first audio."""
    service, probe = h.built.processors["tts"], h.probe("tts")
    original, calls = service.run_tts, []

    async def timed(text, context_id):
        calls.append(time.monotonic())
        async for frame in original(text, context_id):
            yield frame

    service.run_tts = timed
    probe.frames.clear()
    probe.times.clear()
    await h.inject(LLMFullResponseStartFrame(), at="tts")
    for i, word in enumerate(reply.split()):
        await h.inject(LLMTextFrame(word if i == 0 else " " + word), at="tts")
    await h.inject(LLMFullResponseEndFrame(), at="tts")
    await probe.wait_for(TTSStoppedFrame, timeout=30)
    service.run_tts = original
    await h.built.interrupt()  # the reply need not play out: the next run starts with the output idle
    await asyncio.sleep(0.2)
    first = next(t for f, t in zip(probe.frames, probe.times, strict=True) if isinstance(f, TTSAudioRawFrame))
    return first - calls[0]


async def speaking_cpu(h: AgentHarness) -> float:
    """Share of a core the process spends while the agent speaks STORY in real time, less its idle share."""
    await asyncio.sleep(0.5)
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(2.0)
    idle = (time.process_time() - cpu0) / (time.monotonic() - wall0)
    out = h.probe("output")
    cpu0, wall0 = time.process_time(), time.monotonic()
    await h.inject(LLMFullResponseStartFrame(), at="tts")
    await h.inject(LLMTextFrame(STORY), at="tts")
    await h.inject(LLMFullResponseEndFrame(), at="tts")
    await out.wait_for(BotStoppedSpeakingFrame, timeout=60)
    return (time.process_time() - cpu0) / (time.monotonic() - wall0) - idle


async def piper_rtf(runs: int) -> float:
    from processors.tts.piper import piper_engine
    from processors.tts.piper_timing import speech_pieces
    from processors.tts.types import DEFAULT_PIPER_VOICE, piper_voice_files

    engine = piper_engine(*piper_voice_files(DEFAULT_PIPER_VOICE))
    ratios = []
    for _ in range(runs):
        started, samples = time.perf_counter(), 0
        async for audio, _, _ in engine.stream(speech_pieces(SENTENCE), sample_rate=24000):
            samples += len(audio) // 2
        ratios.append((time.perf_counter() - started) / (samples / 24000))
    return statistics.median(ratios)


async def bench_voices(runs: int) -> list[tuple[str, str]]:
    """espeak-ng and Piper through their services: first audio after the first sentence, RTF, CPU while talking.

    The voices take turns, run by run, so a change in the machine's load falls on all of them.
    """
    load = [os.getloadavg()[0]]
    async with contextlib.AsyncExitStack() as stack:
        harnesses = {name: await stack.enter_async_context(AgentHarness.from_text(SPEAKER.format(tts=tts)))
                     for name, tts in VOICES.items()}
        for h in harnesses.values():
            await reply_first_audio(h, "Warm up.")
        firsts = {name: [] for name in VOICES}
        for i in range(runs):
            for name, h in harnesses.items():
                firsts[name].append(1000 * await reply_first_audio(h, REPLIES[i % len(REPLIES)]))
        cpu = {name: [] for name in VOICES}
        for _ in range(max(1, runs // 4)):
            for name, h in harnesses.items():
                cpu[name].append(await speaking_cpu(h))
    load.append(os.getloadavg()[0])
    rows = []
    for name in VOICES:
        ms = sorted(firsts[name])
        rows.append((f"{name}: first audio after the LLM's first sentence, median / max",
                     f"{statistics.median(ms):.1f} / {ms[-1]:.1f} ms"))
        rows.append((f"{name}: CPU per talking session (share of one core, less idle)",
                     f"{statistics.median(cpu[name]) * 100:.1f}%"))
    rtf = await piper_rtf(runs)
    rows.append(("piper real-time factor, one whole sentence (synthesis / audio)", f"{rtf:.3f} ({1 / rtf:.0f}x real time)"))
    load.append(os.getloadavg()[0])
    rows.append(("machine load average (1 min) before / after the voices / after the RTF", " / ".join(f"{x:.1f}" for x in load)))
    return rows


async def one_session(folder: Path, question: str, realtime: bool) -> tuple[float, float, dict]:
    """Runs the default agent on ``question``; (answer gap on the timeline, wall secs, transcript)."""
    speech = await synthesize_pcm(question, sample_rate=16000)
    lead = 8000  # 0.5 s of silence first
    write_wav(folder / "in.wav", bytes(2 * lead) + speech + bytes(2 * 8000), 16000)
    loud_in = np.nonzero(np.abs(np.frombuffer(speech, dtype=np.int16)) > 200)[0]
    speech_end = (lead + loud_in[-1]) / 16000  # from the audio's energy
    os.environ["FRAMEGRAPH_INPUT"] = str(folder / "in.wav")
    os.environ["FRAMEGRAPH_OUT"] = str(folder)
    agent = load_agent(ASSISTANT)
    transport = agent.transport
    transport = Component(transport.id, transport.type, transport.params.model_copy(update={"realtime": realtime}))
    worker = build_agent(agent, transport=transport).worker()
    started = time.monotonic()
    await run_worker(worker)
    wall = time.monotonic() - started
    bot = np.frombuffer(read_wav(folder / "assistant.wav", 24000), dtype=np.int16)
    loud = np.nonzero(np.abs(bot) > 200)[0]
    gap = loud[0] / 24000 - speech_end if len(loud) else float("nan")
    turns = [json.loads(line) for line in (folder / "assistant.jsonl").read_text().splitlines()]
    return gap, wall, turns


async def bench_agent(runs: int, realtime: bool) -> list[tuple[str, str]]:
    gaps, walls, heard = [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            question = QUESTIONS[i % len(QUESTIONS)]
            gap, wall, turns = await one_session(Path(tmp), question, realtime)
            gaps.append(gap * 1000)
            walls.append(wall)
            said = [t["text"] for t in turns if t["role"] == "user"]
            heard += said == [question.lower().rstrip(".?")]
    mode = "real time" if realtime else "fast mode"
    return [
        (f"default agent, {mode}: question end to first bot audio (median / max)",
         f"{statistics.median(gaps):.0f} / {max(gaps):.0f} ms"),
        (f"default agent, {mode}: transcripts exact", f"{heard}/{runs}"),
        (f"default agent, {mode}: wall time per session (median)", f"{statistics.median(walls):.2f} s"),
    ]


def rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


async def bench_memory(agents: int = 50) -> list[tuple[str, str]]:
    for name in ("FRAMEGRAPH_INPUT", "FRAMEGRAPH_OUT"):  # bench_agent's files are gone; the loader checks the input
        os.environ.pop(name, None)
    agent = load_agent(ASSISTANT)

    async def one() -> None:
        async with AgentHarness(agent, transport="synthetic", transport_params={"realtime": False}) as h:
            tts = h.probe("tts")
            await h.inject(TranscriptionFrame("thank you", "user", time_now_iso8601(), finalized=True),
                           at="user_context")
            await tts.wait_for(TTSStoppedFrame, timeout=10)

    for _ in range(5):
        await one()
    before = rss_mib()
    started = time.monotonic()
    for _ in range(agents):
        await one()
    per_agent = (time.monotonic() - started) / agents
    after = rss_mib()
    return [(f"RSS before / after {agents} short agents in a row", f"{before:.0f} / {after:.0f} MiB ({(after / before - 1) * 100:+.1f}%)"),
            ("short agent (build, one answer, teardown)", f"{per_agent * 1000:.0f} ms")]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--realtime", action="store_true", help="also run the default agent in real time")
    parser.add_argument("--voices-only", action="store_true", help="only the espeak / piper comparison")
    args = parser.parse_args()
    logger.remove()
    rows = await bench_voices(args.runs)
    if args.voices_only:
        return print_rows(rows)
    rows += await bench_espeak(args.runs) + await bench_agent(args.runs, realtime=False)
    if args.realtime:
        rows += await bench_agent(args.runs, realtime=True)
    rows += await bench_memory()
    print_rows(rows)


def print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    asyncio.run(main())

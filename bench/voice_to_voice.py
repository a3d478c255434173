"""Voice to voice: from the end of the user's speech to the bot's first audio, 1 to N agents.

Every agent is the whole default agent (``configs/assistant.yaml`` unless
``--config``) on the synthetic transport, all in this one process as in one
server; each hears human clips from ../shared/audio/human at real speed,
one after another, with silence between, and answers each. For every turn:
the time from the speech's end (from the audio's energy, not the file's end)
to the first bot audio the output writes, and its breakdown: VAD's stop, the
STT's final transcript, the turn decision (the context frame that runs the
LLM), the LLM's first token and the TTS's first audio. Per agent count: turns
answered, median / p90 / max, premature answers (the bot's audio before the
speech's end; issue 19's comma sentence, with a 350 ms pause at its comma,
is every agent's first or a later clip), CPU cores used, and memory (PSS of this process
and its decoder processes, so shared pages count once) with the cost of each
additional agent.

``--tts espeak_tts,piper_tts`` runs every agent count with each TTS in turn
(the config's ``tts`` replaced, as ``--set processors.tts={type: ...}``
would), in one process and minute, and prints the difference of the medians
against the first.

    .venv/bin/python bench/voice_to_voice.py [--agents 1,3,5,8,10] [--turns 6] [--config FILE] [--tts A,B]
"""

import argparse
import asyncio
import gc
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from listening_kit import (
    DEFAULT_CONFIG,
    BotAudio,
    Clip,
    Feeder,
    Timeline,
    bench_clips,
    comma_clip,
    load_bench_agent,
    percentile,
    process_tree_cpu_secs,
    process_tree_pss_mib,
    start_agent,
)
from loguru import logger
from pipecat.frames.frames import (
    LLMContextFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    VADUserStoppedSpeakingFrame,
)

from pipelines.testing import AgentHarness
from pipelines.validate import Agent

STAGES = {
    "vad_stop": VADUserStoppedSpeakingFrame,
    "stt_final": TranscriptionFrame,
    "turn": LLMContextFrame,
    "llm_token": LLMTextFrame,
    "tts_audio": TTSAudioRawFrame,
}
ANSWER_TIMEOUT_SECS = 8.0
QUIET_AFTER_ANSWER_SECS = 0.6


@dataclass
class Turn:
    agent: int
    clip: str
    latency: float | None  # speech end -> first bot audio; None: unanswered
    stages: dict[str, float]  # stage -> seconds after speech end
    premature: bool  # the bot started speaking before the user's speech ended
    heard: str  # the final transcripts of the turn


def _stage_times(timeline: Timeline, answer_at: float, speech_end: float) -> dict[str, float]:
    """Each stage's time relative to the speech end, for the answer that started at ``answer_at``."""
    names = {cls.__name__: stage for stage, cls in STAGES.items()}
    last_before = {}
    for when, _, frame_type in timeline.events:
        stage = names.get(frame_type)
        if stage in ("vad_stop", "stt_final", "turn") and when <= answer_at:
            last_before[stage] = when
    decision = last_before.get("turn")
    if decision is not None:
        for stage in ("llm_token", "tts_audio"):
            after = [w for w, _, f in timeline.events if f == STAGES[stage].__name__ and w >= decision]
            if after:
                last_before[stage] = min(after)
    return {stage: when - speech_end for stage, when in last_before.items()}


async def _converse(index: int, harness: AgentHarness, timeline: Timeline, clips: list[Clip], turns: int,
                    delay: float) -> list[Turn]:
    feeder = Feeder(harness)
    feeder.start()
    bot_audio = BotAudio(harness)
    results = []
    try:
        await asyncio.sleep(delay)
        for n in range(turns):
            clip = clips[(index + n) % len(clips)]
            fed_at = await feeder.play(clip.pcm)
            onset, speech_end = fed_at + clip.onset, fed_at + clip.end
            deadline = speech_end + ANSWER_TIMEOUT_SECS
            answer, premature = None, False
            while time.monotonic() < deadline:
                await asyncio.sleep(0.02)
                writes = [t for t, _ in bot_audio.update() if t >= onset]
                if writes and time.monotonic() > max(speech_end, writes[-1]) + QUIET_AFTER_ANSWER_SECS:
                    # A reply begun before the speech's end is premature, even when the user's words then cut it
                    # and a later one answers them: the latency is the later one's.
                    premature = writes[0] < speech_end
                    answer = next((t for t in writes if t >= speech_end), writes[0])
                    break
            stages = _stage_times(timeline, answer, speech_end) if answer else {}
            heard = " | ".join(text for t, text in timeline.transcripts if t >= onset)
            results.append(Turn(index, clip.name, None if answer is None else answer - speech_end, stages, premature,
                                heard))
            await asyncio.sleep(random.uniform(0.3, 0.8))
    finally:
        await feeder.stop()
    return results


async def run_agents(agent_spec: Agent, clips: list[Clip], agents: int, turns: int) -> dict:
    """Runs ``agents`` agents at once for ``turns`` turns each; returns figures."""
    timelines = [Timeline() for _ in range(agents)]
    harnesses = [await start_agent(agent_spec, t, tuple(STAGES.values())) for t in timelines]
    try:
        pids = [os.getpid()]
        cpu_start, wall_start = process_tree_cpu_secs(pids), time.monotonic()
        delays = [random.uniform(0, 1.5) for _ in range(agents)]
        per_agent = await asyncio.gather(
            *[_converse(i, h, t, clips, turns, d) for i, (h, t, d) in enumerate(zip(harnesses, timelines, delays, strict=False))]
        )
        cores = (process_tree_cpu_secs(pids) - cpu_start) / (time.monotonic() - wall_start)
        pss = process_tree_pss_mib(pids)
    finally:
        for h in harnesses:
            await h.__aexit__(None, None, None)
    return {"turns": [t for turns_ in per_agent for t in turns_], "cores": cores, "pss": pss,
            "load": os.getloadavg()[0]}


def median_ms(figures: dict) -> float:
    """Median speech end -> first bot audio of the answered turns, ms (nan: none answered)."""
    latencies = [t.latency * 1000 for t in figures["turns"] if t.latency is not None]
    return statistics.median(latencies) if latencies else float("nan")


def report(agents: int, figures: dict, tts: str | None = None) -> str:
    turns = figures["turns"]
    answered = [t for t in turns if t.latency is not None]
    latencies = [t.latency * 1000 for t in answered]
    line = f"N={agents:2}{f' {tts}' if tts else ''}: {len(answered)}/{len(turns)} turns answered"
    if latencies:
        line += (f", speech end -> bot audio median {statistics.median(latencies):.0f} ms, "
                 f"p90 {percentile(latencies, 90):.0f} ms, max {max(latencies):.0f} ms")
        stage_medians = []
        for stage in STAGES:
            values = [t.stages[stage] * 1000 for t in answered if stage in t.stages]
            if values:
                stage_medians.append(f"{stage} {statistics.median(values):.0f}")
        line += "\n      median stage times after speech end (ms): " + ", ".join(stage_medians)
    premature = sum(t.premature for t in turns)
    line += (f"\n      premature answers: {premature}; CPU {figures['cores']:.2f} cores; PSS {figures['pss']:.0f} MiB; "
             f"machine load average {figures['load']:.1f} (other processes compete for the cores)")
    return line


def print_turns(figures: dict) -> None:
    for t in figures["turns"]:
        stages = " ".join(f"{k}={v * 1000:.0f}" for k, v in t.stages.items())
        latency = "unanswered" if t.latency is None else f"{t.latency * 1000:.0f} ms"
        print(f"      agent {t.agent} {t.clip:10} {latency:>10} {'PREMATURE ' if t.premature else ''}{stages}"
              f"  heard: {t.heard}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--agents", default="1,3,5,8,10", help="comma-separated agent counts")
    parser.add_argument("--turns", type=int, default=6, help="turns per agent")
    parser.add_argument("--per-turn", action="store_true", help="print every turn")
    parser.add_argument("--keep-grammar", action="store_true", help="keep the STT's closed grammar, if any")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tts", help="comma-separated TTS types to compare (espeak_tts,piper_tts); default: the config's")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="ERROR")
    random.seed(args.seed)
    clips = [await comma_clip(), *await bench_clips()]  # the comma sentence first: agent 0 hears it first
    voices = args.tts.split(",") if args.tts else [None]
    specs = {tts: load_bench_agent(args.config, args.keep_grammar, [f"processors.tts={{type: {tts}}}"] if tts else [])
             for tts in voices}
    print("clips (speech onset-end from energy): " + ", ".join(f"{c.name} {c.onset:.2f}-{c.end:.2f}s" for c in clips))
    pss_by_count = {}
    for agents in (int(n) for n in args.agents.split(",")):
        medians = {}
        for tts, agent_spec in specs.items():
            gc.collect()
            figures = await run_agents(agent_spec, clips, agents, args.turns)
            pss_by_count.setdefault(agents, figures["pss"])
            medians[tts] = median_ms(figures)
            print(report(agents, figures, tts), flush=True)
            if args.per_turn:
                print_turns(figures)
        if len(medians) > 1:
            base, *others = medians.items()
            print(f"      median against {base[0]}: " + ", ".join(f"{tts} {m - base[1]:+.0f} ms" for tts, m in others))
    counts = sorted(pss_by_count)
    if len(counts) > 1:
        low, high = counts[0], counts[-1]
        slope = (pss_by_count[high] - pss_by_count[low]) / (high - low)
        print(f"memory per additional agent: {slope:.1f} MiB (PSS, N={low} -> N={high})")


if __name__ == "__main__":
    asyncio.run(main())

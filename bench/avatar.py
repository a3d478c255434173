"""The avatar, measured: pose rate and jitter, A/V offset, CPU per session.

Runs ``[input, tts (espeak-ng), avatar, output]`` on the synthetic transport,
whose output plays audio in real time like a sound card, and prints:

- poses per second while the bot speaks (stamped, and as delivered by the
  output) and their jitter: each pose's delivery time at the output minus when
  its audio sample played, spread around its median;
- A/V offset per phoneme: the pose that peaks for the phoneme's viseme (the
  first to come within 0.05 of the best likeness to the viseme's shape between
  the previous phoneme's start and the next one's end, at most 100 ms either
  side; likeness is the cosine similarity of the mouth weights
  times their size relative to the viseme's, at most 1) minus the time the
  phoneme's audio starts, on the
  stamped timeline and as delivered at the output (goal |offset| p95 <= 40 ms);
  phonemes whose neighbours share their viseme, pauses and tongue consonants
  (DD, kk, nn: they borrow the vowels' shape) are skipped;
- CPU per session (process CPU time over wall time, this process only) while
  speaking and while idle, for ``output: frames`` (poses only), ``poses``
  (poses and their RTVI messages) and ``poses_and_video`` (a 256x256 face at
  30 fps), minus the same graph without the avatar (goals < 2% and < 15% of a
  core); and the cost of one pose and one rendered frame alone.

    .venv/bin/python bench/avatar.py [--runs 3]
"""

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from loguru import logger

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipecat.frames.frames import BotStartedSpeakingFrame, BotStoppedSpeakingFrame, OutputAudioRawFrame, TTSSpeakFrame  # noqa: E402
from pipelines.pipecat_compat import io_params
from pipelines.testing import AgentHarness  # noqa: E402
from processors.avatar.arkit import MOUTH  # noqa: E402
from processors.avatar.coarticulation import PhonemeTrack  # noqa: E402
from processors.avatar.face import FaceLife  # noqa: E402
from processors.avatar.frames import PoseFrame  # noqa: E402
from processors.avatar.renderer import FaceRenderer  # noqa: E402
from processors.avatar.visemes import BLENDSHAPES, VISEMES, visemes_for  # noqa: E402
from processors.tts.espeak import PhonemeFrame  # noqa: E402

RATE = 24000
TEXT = ("Once upon a time, a small robot learned to speak. It said hello to everyone it met. "
        "One day, someone finally answered. They talked until the sun went down, and the robot was never lonely again.")
AGENT = """
version: 1
name: bench_avatar
transport: {{type: synthetic, audio_out_sample_rate: 24000, video_out: {video}}}
processors:
  tts: {{type: espeak}}
  {avatar}
pipeline: [input, tts, {steps}output]
"""
IDLE_SECS = 3.0
#: Visemes with a shape of their own. Tongue consonants (DD, kk, nn) take the shape of the vowels
#: around them by design (low dominance), so no pose "peaks" for them; pauses have no shape.
VISIBLE = {VISEMES.index(v) for v in ("PP", "FF", "TH", "CH", "SS", "RR", "aa", "E", "ih", "oh", "ou")}


def agent(output: str | None) -> str:
    if output is None:
        return AGENT.format(video="false", avatar="", steps="")
    return AGENT.format(video=str("video" in output).lower(), avatar=f"avatar: {{type: avatar, output: {output}, seed: 1}}",
                        steps="avatar, ")


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if len(values) else float("nan")


async def session(output: str | None) -> dict:
    """One spoken reply and a stretch of silence; probes and CPU figures."""
    h = AgentHarness.from_text(agent(output))
    if output and "video" in output:
        # The synthetic output's video size is pipecat's default (1024x768): match the face so
        # pipecat does not rescale every frame (a real transport sets video_out_width/height).
        params = io_params(h.output)
        params.video_out_width = params.video_out_height = 256
    async with h:
        tts, out = h.probe("tts"), h.probe("output")
        avatar = h.probe("avatar") if output else None
        await asyncio.sleep(0.5)
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(IDLE_SECS)
        idle_cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0)
        cpu0, wall0 = time.process_time(), time.monotonic()
        await h.inject(TTSSpeakFrame(TEXT), at="tts")
        await out.wait_for(BotStoppedSpeakingFrame, timeout=60)
        speak_cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0)
        return {"idle_cpu": idle_cpu, "speak_cpu": speak_cpu, "tts": tts, "out": out, "avatar": avatar,
                "written": list(h.output.written)}


def play_time(written) -> callable:
    """Sample index (bot audio) -> when the synthetic output started playing it."""
    starts, times, n = [], [], 0
    for w in written:
        if isinstance(w.frame, OutputAudioRawFrame):
            starts.append(n)
            times.append(w.time)
            n += len(w.frame.audio) // 2
    starts_a, times_a = np.array(starts), np.array(times)

    def at(sample: int) -> float:
        i = max(0, int(np.searchsorted(starts_a, sample, side="right")) - 1)
        return float(times_a[i] + (sample - starts_a[i]) / RATE)

    return at


def av_offsets(phonemes: list[PhonemeFrame], poses: list[PoseFrame], delivered: dict[int, float], play) -> tuple[list, list]:
    """(stamped offsets, delivered offsets) in ms, one per phoneme with a clear viseme peak."""
    targets = BLENDSHAPES[:, MOUTH]
    norms = np.linalg.norm(targets, axis=1)
    mouths = np.array([p.weights[MOUTH] for p in poses])
    mouth_norms = np.linalg.norm(mouths, axis=1) + 1e-9
    times = np.array([p.time_s for p in poses])
    firsts = [visemes_for(p.phoneme)[0] for p in phonemes]
    stamped, at_output = [], []
    for k, (ph, v) in enumerate(zip(phonemes, firsts)):
        neighbours = firsts[max(0, k - 1):k] + firsts[k + 1:k + 2]
        if v not in VISIBLE or v in neighbours:
            continue
        start = ph.offset_ms / 1000
        # From the previous phoneme's start to the next one's end, at most 100 ms either side.
        lo = max(start - 0.1, phonemes[k - 1].offset_ms / 1000 if k else start)
        hi = min(start + 0.1, phonemes[k + 2].offset_ms / 1000 if k + 2 < len(phonemes) else start + 0.1)
        window = np.flatnonzero((times >= lo) & (times <= hi))
        if not len(window):
            continue
        # Likeness in shape and size: a faint pose of the right shape is no peak.
        score = (mouths[window] @ targets[v] / (mouth_norms[window] * norms[v])
                 * np.minimum(1.0, mouth_norms[window] / norms[v]))
        best = window[int(np.flatnonzero(score >= score.max() - 0.05)[0])]  # where a plateau begins
        stamped.append((times[best] - start) * 1000)
        pose = poses[best]
        if id(pose) in delivered:
            at_output.append((delivered[id(pose)] - play(round(start * RATE))) * 1000)
    return stamped, at_output


def microbench() -> tuple[float, float]:
    """(us per pose computed, ms per 256x256 frame rendered), outside any pipeline."""
    track = PhonemeTrack()
    for i in range(400):
        track.add(["p", "ˈɑː", "s", "oʊ", "m", ""][i % 6], i * 0.07)
    track.end(28.0)
    life = FaceLife(seed=1)
    started = time.process_time()
    for i in range(840):
        t = i / 30
        (track.weights_at(t) @ BLENDSHAPES) + life.at(t)
    per_pose = (time.process_time() - started) / 840 * 1e6
    renderer = FaceRenderer(256)
    started = time.process_time()
    for i in range(300):
        renderer.render(BLENDSHAPES[i % len(VISEMES)])
    return per_pose, (time.process_time() - started) / 300 * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="sessions per configuration")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    load_before = os.getloadavg()

    rates, delivered_rates, jitters, stamped_all, output_all = [], [], [], [], []
    cpu: dict[str | None, list[tuple[float, float]]] = {}
    for run in range(args.runs):
        for output in (None, "frames", "poses", "poses_and_video"):
            s = await session(output)
            cpu.setdefault(output, []).append((s["idle_cpu"], s["speak_cpu"]))
            if output != "poses":
                continue
            speech = [p for p in s["avatar"].of_type(PoseFrame) if p.utterance]
            audio_s = sum(len(w.frame.audio) for w in s["written"] if isinstance(w.frame, OutputAudioRawFrame)) / 2 / RATE
            rates.append(len(speech) / audio_s)
            out = s["out"]
            delivered = {id(f): t for f, t in zip(out.frames, out.times) if isinstance(f, PoseFrame) and f.utterance}
            started = next(t for f, t in zip(out.frames, out.times) if isinstance(f, BotStartedSpeakingFrame))
            stopped = next(t for f, t in zip(out.frames, out.times) if isinstance(f, BotStoppedSpeakingFrame))
            delivered_rates.append(len(delivered) / (stopped - started))
            play = play_time(s["written"])
            lag = [(delivered[id(p)] - play(p.sample)) * 1000 for p in speech if id(p) in delivered]
            median = statistics.median(lag)
            jitters.extend(abs(x - median) for x in lag)
            stamped, at_output = av_offsets(s["tts"].of_type(PhonemeFrame), speech, delivered, play)
            stamped_all.extend(stamped)
            output_all.extend(at_output)
            print(f"run {run + 1}: {len(speech)} poses over {audio_s:.2f} s of speech; "
                  f"delivery minus audio play time: median {median:.1f} ms")

    per_pose_us, per_frame_ms = microbench()
    base_idle = statistics.median(c[0] for c in cpu[None])
    base_speak = statistics.median(c[1] for c in cpu[None])
    print()
    print(f"poses per second while speaking: stamped {statistics.mean(rates):.2f}, "
          f"delivered by the output {statistics.mean(delivered_rates):.2f} (goal 30)")
    print(f"delivery jitter around the audio: p50 {percentile(jitters, 50):.1f} ms, p95 {percentile(jitters, 95):.1f} ms, "
          f"max {max(jitters):.1f} ms")
    for name, values in (("stamped timeline", stamped_all), ("delivered at the output", output_all)):
        v = np.array(values)
        print(f"A/V offset, {name}: n={len(v)} median {np.median(v):+.1f} ms, mean {v.mean():+.1f} ms, "
              f"|offset| p95 {percentile(np.abs(v), 95):.1f} ms (goal <= 40)")
    print(f"CPU, graph without the avatar: idle {base_idle * 100:.2f}%, speaking {base_speak * 100:.2f}% of a core")
    for output, goal in (("frames", 2), ("poses", 2), ("poses_and_video", 15)):
        idle = statistics.median(c[0] for c in cpu[output]) - base_idle
        speak = statistics.median(c[1] for c in cpu[output]) - base_speak
        print(f"CPU added by the avatar, output: {output}: idle {idle * 100:.2f}%, speaking {speak * 100:.2f}% of a core "
              f"(goal < {goal}%)")
    print(f"one pose computed: {per_pose_us:.0f} us ({per_pose_us * 30 / 1e4:.2f}% of a core at 30 fps); "
          f"one 256x256 frame rendered: {per_frame_ms:.2f} ms ({per_frame_ms * 30 / 10:.1f}% of a core at 30 fps)")
    print(f"load average before / after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    asyncio.run(main())

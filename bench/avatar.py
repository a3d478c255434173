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
  stamped timeline, as delivered at the synthetic output, at an aiortc client
  over WebRTC loopback (the pose message's arrival minus the arrival of the
  phoneme's audio, found by lining up the audio the client decoded with the
  audio the avatar sent), and in the file transport's JSONL (the pose's WAV
  sample minus the phoneme's) (goal |offset| p95 <= 40 ms);
  phonemes whose neighbours share their viseme, pauses and tongue consonants
  (DD, kk, nn: they borrow the vowels' shape) are skipped;
- CPU per session (process CPU time over wall time, this process only) while
  speaking and while idle, for ``output: frames`` (poses only), ``poses``
  (poses and their RTVI messages) and ``poses_and_video`` (a 256x256 face at
  30 fps), minus the same graph without the avatar (goals < 2% and < 15% of a
  core); and the cost of one pose and one rendered frame alone.

    .venv/bin/python bench/avatar.py [--runs 3] [--tts piper_tts]
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
from loguru import logger

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipecat.frames.frames import (  # noqa: E402
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    OutputAudioRawFrame,
    TTSSpeakFrame,
    VADUserStoppedSpeakingFrame,
)

from pipelines.client_protocol import messages as cm  # noqa: E402
from pipelines.server.app import running  # noqa: E402
from pipelines.testing import AgentHarness  # noqa: E402
from pipelines.validate import load_agent, load_agent_text  # noqa: E402
from processors.avatar import wire  # noqa: E402
from processors.avatar.arkit import MOUTH  # noqa: E402
from processors.avatar.coarticulation import PhonemeTrack  # noqa: E402
from processors.avatar.face import FaceLife  # noqa: E402
from processors.avatar.frames import PoseFrame  # noqa: E402
from processors.avatar.renderer import FaceRenderer  # noqa: E402
from processors.avatar.visemes import BLENDSHAPES, VISEMES, visemes_for  # noqa: E402
from processors.tts.espeak import PhonemeFrame  # noqa: E402
from transports.clients.webrtc import WebRTCPeer  # noqa: E402

RATE = 24000
TEXT = ("Once upon a time, a small robot learned to speak. It said hello to everyone it met. "
        "One day, someone finally answered. They talked until the sun went down, and the robot was never lonely again.")
AGENT = """
version: 1
name: bench_avatar
transport: {{type: synthetic, audio_out_sample_rate: 24000, video_out: {video}}}
processors:
  tts: {{type: espeak_tts}}
  {avatar}
pipeline: [input, tts, {steps}output]
"""
WEBRTC_AGENT = """
version: 1
name: bench_avatar_webrtc
transport: {type: webrtc, audio_out_sample_rate: 24000}
processors:
  tts: {type: espeak_tts}
  avatar: {type: avatar, output: poses, seed: 1}
pipeline: [input, tts, avatar, output]
"""
FILE_AGENT = """
version: 1
name: bench_avatar_file
transport: {type: file, input: in.wav, output: bot.wav, poses: poses.jsonl, tail_secs: 0.2, realtime: true}
processors:
  tts: {type: espeak_tts}
  avatar: {type: avatar, output: frames, seed: 1}
pipeline: [input, tts, avatar, output]
"""
IDLE_SECS = 3.0
#: aiortc's audio receiver holds 4 packets of 20 ms before it plays (JitterBuffer(prefetch=4) in
#: aiortc/rtcrtpreceiver.py); data-channel messages are not held. A client shows poses after its
#: playout delay, as the page does with its jitterBufferDelay stats.
AIORTC_PLAYOUT_MS = 80
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
    async with AgentHarness.from_text(agent(output)) as h:  # video out at the face's size (256x256)
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


def av_offsets(phonemes: list[PhonemeFrame], poses: list[PoseFrame], pose_clock, phoneme_clock) -> list[float]:
    """A/V offsets in ms, one per phoneme with a clear viseme peak (and its pose delivered).

    ``pose_clock(pose)``: when the pose was shown or sent (None: never);
    ``phoneme_clock(secs)``: when the utterance's audio at ``secs`` played, on the same clock.
    """
    targets = BLENDSHAPES[:, MOUTH]
    norms = np.linalg.norm(targets, axis=1)
    mouths = np.array([p.weights[MOUTH] for p in poses])
    mouth_norms = np.linalg.norm(mouths, axis=1) + 1e-9
    times = np.array([p.time_s for p in poses])
    firsts = [visemes_for(p.phoneme)[0] for p in phonemes]
    offsets = []
    for k, (ph, v) in enumerate(zip(phonemes, firsts, strict=False)):
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
        shown = pose_clock(poses[best])
        if shown is not None:
            offsets.append((shown - phoneme_clock(start)) * 1000)
    return offsets


def client_audio_clock(peer: WebRTCPeer, sent: bytes):
    """Utterance seconds -> when the client received that audio, by lining up its audio with ``sent`` (24 kHz).

    Both are reduced to 1 ms loudness envelopes and cross-correlated.
    """
    block = RATE // 1000
    ours = np.frombuffer(sent, dtype=np.int16).astype(np.float64)
    ratio = peer.audio_rate // RATE
    theirs = np.concatenate([pcm for _, pcm in peer.audio]).astype(np.float64)[::ratio]

    def envelope(x):
        n = len(x) // block
        return np.sqrt((x[: n * block].reshape(n, block) ** 2).mean(axis=1))

    a, b = envelope(ours), envelope(theirs)
    size = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    corr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
    lag = int(np.argmax(corr[: len(b)])) * block * ratio  # client sample where the utterance starts
    starts = np.cumsum([0] + [len(pcm) for _, pcm in peer.audio])
    arrivals = [t for t, _ in peer.audio]

    def at(secs: float) -> float:
        index = lag + round(secs * peer.audio_rate)
        i = max(0, int(np.searchsorted(starts, index, side="right")) - 1)
        return arrivals[min(i, len(arrivals) - 1)] + (index - starts[i]) / peer.audio_rate

    return at


async def webrtc_offsets() -> list[float]:
    """A/V offsets at an aiortc client over WebRTC loopback, for one reply."""
    async with running(load_agent_text(WEBRTC_AGENT)) as (url, server):
        peer = WebRTCPeer(keep_audio=True)
        await peer.connect(url)
        try:
            await peer.wait_for_message(cm.BOT_READY, timeout=15)
            (session,) = server.sessions.values()
            tts, avatar = session.built.processors["tts"], session.built.processors["avatar"]
            phonemes, poses, sent = [], [], bytearray()

            @tts.event_handler("on_before_push_frame")
            async def _phoneme(processor, frame):
                if isinstance(frame, PhonemeFrame):
                    phonemes.append(frame)

            @avatar.event_handler("on_before_push_frame")
            async def _pushed(processor, frame):
                if isinstance(frame, PoseFrame) and frame.utterance:
                    poses.append(frame)
                elif isinstance(frame, OutputAudioRawFrame):
                    sent.extend(frame.audio)

            asked = time.monotonic()
            await tts.queue_frame(TTSSpeakFrame(TEXT))
            await peer.wait_for_message(cm.BOT_STOPPED_SPEAKING, timeout=60, after=asked)
            await asyncio.sleep(0.3)
        finally:
            await peer.close()
    arrived = {m["data"]["t"]: t for t, m in peer.messages
               if cm.kind_of(m) == "server-message" and m["data"].get("type") == wire.MESSAGE_TYPE and m["data"]["u"]}
    return av_offsets(phonemes, poses, lambda p: arrived.get(round(p.time_s * 1000)), client_audio_clock(peer, bytes(sent)))


async def file_offsets() -> list[float]:
    """A/V offsets in the file transport's output: each pose's WAV sample (JSONL) against the phonemes' in the WAV."""
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        with wave.open(str(folder / "in.wav"), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(16000)
            wav.writeframes(bytes(2 * 16000 * 16))
        (folder / "agent.yaml").write_text(FILE_AGENT)
        async with AgentHarness(load_agent(folder / "agent.yaml"), transport=None) as h:
            tts, avatar = h.probe("tts"), h.probe("avatar")
            while h.built.transport.timeline.now() < 0.5:
                await asyncio.sleep(0.01)
            await h.inject(VADUserStoppedSpeakingFrame(), at="input", upstream=True)
            await h.inject(TTSSpeakFrame(TEXT), at="tts")
            await h.probe("input", upstream=True).wait_for(BotStoppedSpeakingFrame, timeout=60)
            start = h.built.transport.timeline.bot_audio.start
            await h.stop()
        lines = [json.loads(line) for line in (folder / "poses.jsonl").read_text().splitlines()]
    in_wav = {r["t"]: r["sample"] / RATE for r in lines if r["u"] == 1}
    poses = [p for p in avatar.of_type(PoseFrame) if p.utterance]
    return av_offsets(tts.of_type(PhonemeFrame), poses, lambda p: in_wav.get(round(p.time_s * 1000)), lambda s: start + s)


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
    parser.add_argument("--tts", default="espeak", help="the TTS type that speaks: espeak (default) or piper_tts")
    args = parser.parse_args()
    global AGENT, WEBRTC_AGENT, FILE_AGENT
    AGENT, WEBRTC_AGENT, FILE_AGENT = (t.replace("type: espeak", f"type: {args.tts}")
                                       for t in (AGENT, WEBRTC_AGENT, FILE_AGENT))
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    load_before = os.getloadavg()

    rates, delivered_rates, jitters, stamped_all, output_all, client_all, file_all = [], [], [], [], [], [], []
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
            delivered = {id(f): t for f, t in zip(out.frames, out.times, strict=False) if isinstance(f, PoseFrame) and f.utterance}
            started = next(t for f, t in zip(out.frames, out.times, strict=False) if isinstance(f, BotStartedSpeakingFrame))
            stopped = next(t for f, t in zip(out.frames, out.times, strict=False) if isinstance(f, BotStoppedSpeakingFrame))
            delivered_rates.append(len(delivered) / (stopped - started))
            play = play_time(s["written"])
            lag = [(delivered[id(p)] - play(p.sample)) * 1000 for p in speech if id(p) in delivered]
            median = statistics.median(lag)
            jitters.extend(abs(x - median) for x in lag)
            phonemes = s["tts"].of_type(PhonemeFrame)
            stamped_all.extend(av_offsets(phonemes, speech, lambda p: p.time_s, lambda secs: secs))
            output_all.extend(av_offsets(phonemes, speech, lambda p: delivered.get(id(p)), lambda secs: play(round(secs * RATE))))
            client_all.extend(await webrtc_offsets())
            file_all.extend(await file_offsets())
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
    for name, values in (("stamped timeline", stamped_all), ("delivered at the synthetic output", output_all),
                         ("at an aiortc client over WebRTC loopback, as received", client_all),
                         (f"same, shown after the client's playout delay ({AIORTC_PLAYOUT_MS} ms)",
                          [x + AIORTC_PLAYOUT_MS for x in client_all]),
                         ("in the file transport's WAV and JSONL", file_all)):
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

"""At the person's ear: the default agent heard through headless Chromium, framegraph against plain pipecat.

Debian's ``/usr/bin/chromium`` (never a downloaded browser), driven over the
DevTools protocol (``transports.clients.chromium``), with a WAV as its fake
microphone: espeak-ng questions, the human clips of ``FRAMEGRAPH_HUMAN_AUDIO``
(``../shared/audio/human``) when that folder has any, a sentence with a comma
pause, a barge-in over a long answer and a 150 ms noise burst. Level meters
(an AudioWorklet, ``bench/browser_probe.js``) listen to the microphone track
as the page sends it and to the bot's track as the page plays it (a bot the
page muted is silence). Two targets, one after the other in the same run:

- framegraph: ``framegraph serve`` with its own page (``transports/web``);
- plain pipecat: pipecat's dev runner with its SmallWebRTC transport and the
  same processors (``bench/plain_webrtc_bot.py``), called by a bare page with
  the same microphone constraints.

Printed per target, with the machine's load average: connect -> ready (click
to RTVI ``bot-ready``); speech end -> bot heard (median, p90); barge-in onset
-> bot silent at the ear; barge-ins that never interrupted (Chrome's echo
canceller can erase them); false interruptions by the noise burst; premature
turn ends (a reply heard before the user finished); first-utterance acceptance
over ``--first`` fresh sessions; and framegraph's figures as ratios of plain
pipecat's. For framegraph also the server's own speech end -> first audio
(``/metrics``) and the page's (its RTVI report), beside the bench's.

    .venv/bin/python bench/browser.py [--first 3] [--barge-ins 2] [--only framegraph]
"""

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from listening_kit import HUMAN_AUDIO, comma_sentence, percentile, speech_span  # noqa: E402

from pipelines.audio import read_wav, write_wav  # noqa: E402
from processors.tts.espeak import synthesize_pcm  # noqa: E402
from transports.clients.chromium import chromium  # noqa: E402

RATE = 16000
#: The page's level meter, then the probe that uses it (on framegraph's page and on the bare one alike).
PROBE = (ROOT / "transports" / "web" / "meter.js").read_text() + (Path(__file__).parent / "browser_probe.js").read_text()
FIRST_QUESTION = ("what is the weather like today", "sunny")
QUESTIONS = [FIRST_QUESTION, ("what time is it", "clock"), ("tell me a joke", "robot"), ("thank you", "welcome")]
REPLY_GAP_SECS = 6.5  # silence after a question: the longest short answer plays in it
MIC_SPEECH_DBFS = -45  # the microphone track, after Chrome's processing
BOT_LOUD_DBFS = -45  # the bot's track as heard
METER_SECS = 0.01

#: The plain pipecat page: the same constraints as framegraph's page, pipecat's /api/offer.
PLAIN_CONNECT = """
(async () => {
  window.benchClick = performance.timeOrigin + performance.now();
  const mic = await navigator.mediaDevices.getUserMedia(
    {audio: {echoCancellation: true, noiseSuppression: true, autoGainControl: true}});
  const pc = new RTCPeerConnection();
  pc.addTransceiver(mic.getAudioTracks()[0], {direction: "sendrecv"});
  const audio = document.createElement("audio");
  audio.autoplay = true;
  document.body.appendChild(audio);
  pc.ontrack = (e) => { audio.srcObject = e.streams[0] || new MediaStream([e.track]); };
  const channel = pc.createDataChannel("chat", {ordered: true});
  channel.onopen = () => channel.send(JSON.stringify({label: "rtvi-ai", type: "client-ready", id: "bench",
    data: {version: "1.0.0", about: {library: "bench"}}}));
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => { if (pc.iceGatheringState === "complete") resolve();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && resolve();
    setTimeout(resolve, 2000); });
  const r = await fetch("/api/offer", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({sdp: pc.localDescription.sdp, type: pc.localDescription.type})});
  await pc.setRemoteDescription(await r.json());
  window.benchPeer = pc;
})()
"""
FRAMEGRAPH_CONNECT = ("window.benchClick = performance.timeOrigin + performance.now();"
                      " document.getElementById('connect').click()")


# -- the microphone --------------------------------------------------------------------


@dataclass
class Utterance:
    """One thing the microphone says, at ``onset``..``end`` seconds into the WAV."""

    kind: str  # "question", "clip", "comma", "barge-in", "story", "noise"
    label: str
    onset: float
    end: float
    expect: str | None = None  # a word of the right answer


@dataclass
class Script:
    pcm: bytearray = field(default_factory=bytearray)
    utterances: list[Utterance] = field(default_factory=list)

    @property
    def secs(self) -> float:
        return len(self.pcm) / (2 * RATE)

    def pause(self, secs: float) -> None:
        self.pcm += room(int(secs * RATE))

    def say(self, kind: str, label: str, pcm: bytes, expect: str | None = None) -> Utterance:
        """Appends ``pcm`` over the room's noise; its speech span comes from its energy over that noise."""
        pcm = (np.frombuffer(pcm, np.int16).astype(np.int32) + np.frombuffer(room(len(pcm) // 2), np.int16))
        pcm = pcm.clip(-32768, 32767).astype(np.int16).tobytes()
        pad = room(int(0.2 * RATE))
        onset, end = speech_span(pad + pcm + pad) if kind != "noise" else (0.2, 0.2 + len(pcm) / (2 * RATE))
        onset, end = onset - 0.2, end - 0.2
        u = Utterance(kind, label, self.secs + onset, self.secs + end, expect)
        self.pcm += pcm
        self.utterances.append(u)
        return u


_NOISE = np.random.default_rng(7)


def room(samples: int) -> bytes:
    """A quiet room's noise (-60 dBFS): speech ends where it sinks into it, as in the clips."""
    return _NOISE.normal(0, 32768 * 10 ** (-60 / 20), samples).astype(np.int16).tobytes()


async def espeak(text: str) -> bytes:
    return await synthesize_pcm(text, voice="en-us", rate=175, sample_rate=RATE)


def human_clips() -> list[tuple[str, bytes]]:
    """The recorded clips beside the repository, trimmed to their speech (plus 0.2 s); none on a fresh clone."""
    clips = []
    for path in sorted(HUMAN_AUDIO.glob("*.wav")) if HUMAN_AUDIO.is_dir() else []:
        pcm = read_wav(path, RATE)
        onset, end = speech_span(pcm)
        clips.append((path.stem, pcm[max(0, int((onset - 0.2) * RATE)) * 2:int((end + 0.2) * RATE) * 2]))
    return clips


async def conversation(barge_ins: int, clips: list[tuple[str, bytes]]) -> Script:
    """The long session: questions, clips, the comma sentence, barge-ins with a noise burst before each."""
    s = Script()
    s.pause(3.0)  # the fake microphone starts when the page asks for it, before the call is up
    for text, word in QUESTIONS:
        s.say("question", text, await espeak(text), word)
        s.pause(REPLY_GAP_SECS)
    for name, pcm in clips:
        s.say("clip", name, pcm)
        s.pause(REPLY_GAP_SECS)
    s.say("comma", "comma sentence", await comma_sentence())
    s.pause(REPLY_GAP_SECS)
    noise = (np.random.default_rng(19).normal(0, 6000, int(0.15 * RATE))).clip(-32768, 32767).astype(np.int16).tobytes()
    for _ in range(barge_ins):
        s.say("story", "tell me a story", await espeak("tell me a story"), "robot")
        s.pause(2.0)  # the story starts within about half a second; it lasts 13 s
        s.say("noise", "150 ms noise burst", noise)
        s.pause(1.6)
        s.say("barge-in", "hello", await espeak("hello"), "hello")
        s.pause(REPLY_GAP_SECS)
    for _ in range(barge_ins):  # in the bot's first second, where Chrome's echo canceller has heard little of it
        s.say("story", "tell me a story", await espeak("tell me a story"), "robot")
        s.pause(1.0)
        s.say("barge-in", "hello (early)", await espeak("hello"), "hello")
        s.pause(REPLY_GAP_SECS)
    return s


async def first_question() -> Script:
    s = Script()
    s.pause(3.0)
    text, word = FIRST_QUESTION
    s.say("question", text, await espeak(text), word)
    s.pause(5.0)
    return s


# -- targets ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Target:
    name: str
    command: list[str]
    path: str  # the page to open
    connect: str  # the JavaScript that clicks Connect
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, folder: Path) -> None:
        self.port = free_port()
        command = [c.format(port=self.port, folder=folder) for c in self.command]
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                     stderr=open(folder / f"{self.name}.log", "w"))
        deadline = time.monotonic() + 180
        async with aiohttp.ClientSession() as http:
            while True:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{self.name} did not start; see {folder / (self.name + '.log')}")
                try:
                    async with http.get(self.url + self.path) as r:
                        if r.status < 500:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.3)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def targets(only: str | None) -> list[Target]:
    py = sys.executable
    all_ = [
        Target("framegraph", [py, "-m", "pipelines.cli", "serve", "configs/assistant.yaml", "--transport", "webrtc",
                              "--port", "{port}", "--store", "{folder}/sessions.db"], "/", FRAMEGRAPH_CONNECT),
        Target("plain pipecat", [py, "bench/plain_webrtc_bot.py", "-t", "webrtc", "--host", "127.0.0.1",
                                 "--port", "{port}"], "/api/offer", PLAIN_CONNECT),
    ]
    return [t for t in all_ if only in (None, t.name.split()[0])]


# -- one session in the browser --------------------------------------------------------


@dataclass
class Heard:
    """What the page's probe recorded in one session (epoch seconds)."""

    click: float
    mic_at: float
    mic: np.ndarray  # rows: time, level (dBFS)
    bot: np.ndarray
    rtvi: list  # [time, type, data]
    reports: list  # the page's own speech end -> heard reports: [time, ms]
    jitter_buffer: dict | None  # Chrome's stats for the bot's track: mean delay, target, minimum (ms)


def as_db(rows) -> np.ndarray:
    """The probe's [epoch ms, dBFS] rows as [epoch s, dBFS]."""
    a = np.asarray(rows, dtype=float).reshape(-1, 2)
    a[:, 0] /= 1000
    return a


async def session(target: Target, script: Script, folder: Path, tag: str) -> Heard:
    mic = folder / f"{tag}.wav"
    write_wav(mic, bytes(script.pcm), RATE)  # the script already holds its room noise
    async with chromium(folder / f"profile-{tag}", Path(f"{mic}%noloop")) as page:
        await page.call("Page.enable")  # without it the probe is not installed
        await page.call("Page.addScriptToEvaluateOnNewDocument", source=PROBE)
        await page.call("Page.navigate", url=target.url + target.path)
        await page.wait_for("document.readyState === 'complete' && !!window.benchProbe", 30, "page load")
        await page.eval(target.connect)
        await page.wait_for("window.benchProbe.micAt !== null", 30, "microphone")
        mic_at = await page.eval("window.benchProbe.micAt") / 1000
        # The WAV plays from the microphone's start; let it finish (with the last answer).
        while time.time() < mic_at + script.secs + 0.5:
            await asyncio.sleep(0.5)
        probe = await page.eval("({click: window.benchClick, mic: window.benchProbe.mic, bot: window.benchProbe.bot,"
                                " rtvi: window.benchProbe.rtvi, reports: window.benchProbe.reports,"
                                " errors: window.benchProbe.errors})")
        if probe["errors"]:
            print(f"  {target.name}: probe errors {probe['errors']}")
        jitter = await page.eval("window.benchProbe.jitterBuffer()")
    return Heard(probe["click"] / 1000, mic_at, as_db(probe["mic"]), as_db(probe["bot"]), probe["rtvi"],
                 [(t / 1000, ms / 1000) for t, ms in probe["reports"]], jitter)


# -- what the ear heard ----------------------------------------------------------------


def loud_times(track: np.ndarray, db: float, start: float, stop: float) -> np.ndarray:
    rows = track[(track[:, 0] >= start) & (track[:, 0] < stop)]
    return rows[rows[:, 1] > db, 0]


def envelope(pcm: bytes) -> np.ndarray:
    """Levels (dBFS) of ``pcm`` in the meter's 10 ms steps."""
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768
    step = int(METER_SECS * RATE)
    frames = samples[: len(samples) // step * step].reshape(-1, step)
    return 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) + 1e-9)


def wav_to_page(heard: Heard, script: Script) -> float:
    """The page time of the WAV's second 0: the lag that best lines up the WAV's levels with the microphone meter's.

    The fake microphone starts about when ``getUserMedia`` returns; Chrome's
    processing (gain control, noise suppression) changes levels but not where
    the words are, so the envelopes' correlation finds the lag to 10 ms.
    """
    wav = np.maximum(envelope(bytes(script.pcm)), -70.0)
    grid = heard.mic_at - 0.5 + np.arange(len(wav) + 150) * METER_SECS
    meter = np.interp(grid, heard.mic[:, 0], np.maximum(heard.mic[:, 1], -70.0)) if len(heard.mic) else grid * 0
    wav, meter = wav - wav.mean(), meter - meter.mean()
    lags = range(0, 150)
    best = max(lags, key=lambda lag: float(np.dot(wav, meter[lag:lag + len(wav)])))
    return heard.mic_at - 0.5 + best * METER_SECS


@dataclass
class Figures:
    connect: list[float] = field(default_factory=list)
    heard: list[float] = field(default_factory=list)
    premature: int = 0
    turns: int = 0
    unanswered: int = 0
    barge_silent: list[float] = field(default_factory=list)
    barge_missed: int = 0  # barge-ins the agent never interrupted on
    barge_tries: int = 0
    barge_erased: int = 0  # the microphone track itself had no speech where the barge-in was
    false_interruptions: int = 0
    noise_bursts: int = 0
    noise_muted: list[float] = field(default_factory=list)  # seconds of bot audio the page muted per noise burst
    first_ok: int = 0
    first_tries: int = 0
    #: (bench, page) speech end -> heard of the turns the page reported, matched by the bot's onset.
    paired: list[tuple[float, float]] = field(default_factory=list)
    #: The server's /metrics means: to the first chunk it sent, and the page's reports it keeps.
    server_mean: float | None = None
    server_page_mean: float | None = None
    #: Where the time went: stage -> ms after the speech's end (replies) or onset (barge-ins), per turn.
    reply_stages: dict[str, list[float]] = field(default_factory=dict)
    barge_stages: dict[str, list[float]] = field(default_factory=dict)
    jitter_buffer: dict | None = None
    verbose: bool = False


#: A reply's steps as the page sees them (RTVI messages arrive over the data channel within a
#: millisecond or two on loopback): VAD's stop decision, the final transcript, the turn's end,
#: the LLM's start and first text, the TTS's start, the output's first chunk sent; then heard.
REPLY_STAGES = [("vad stop", "vad-user-stopped-speaking"), ("stt final", "user-transcription"),
                ("turn end", "user-stopped-speaking"), ("llm start", "bot-llm-started"),
                ("llm text", "bot-llm-text"), ("tts start", "bot-tts-started"), ("sent", "bot-started-speaking")]
#: A barge-in's: VAD's start decision, the turn's start, the interruption reaching the page; then silent.
BARGE_STAGES = [("vad start", "vad-user-started-speaking"), ("user turn", "user-started-speaking"),
                ("interrupted", "bot-interrupted")]


def stage_times(heard: Heard, stages: list[tuple[str, str]], start: float, stop: float, zero: float,
                final: bool) -> dict[str, float]:
    """Each stage's message time (seconds after ``zero``): the last in ``start``..``stop``, or the first when
    ``final`` is false; a user transcription counts only when final."""
    times = {}
    for name, kind in stages:
        found = [t / 1000 for t, k, d in heard.rtvi if k == kind and start <= t / 1000 <= stop
                 and (k != "user-transcription" or d.get("final"))]
        if found:
            times[name] = (found[-1] if final else found[0]) - zero
    return times


def add_stages(into: dict[str, list[float]], times: dict[str, float]) -> None:
    for name, secs in times.items():
        into.setdefault(name, []).append(secs)


def bot_text_between(heard: Heard, start: float, stop: float) -> str:
    return " ".join(str(d.get("text", "")) for t, kind, d in heard.rtvi
                    if kind in ("bot-tts-text", "bot-llm-text") and start <= t / 1000 < stop).lower()


def judge(heard: Heard, script: Script, figures: Figures, first_only: bool = False) -> None:
    """Adds one session's figures."""
    zero = wav_to_page(heard, script)
    if heard.jitter_buffer and not first_only:
        figures.jitter_buffer = heard.jitter_buffer
    ready = next((t / 1000 for t, kind, _ in heard.rtvi if kind == "bot-ready"), None)
    if ready is not None:
        figures.connect.append(ready - heard.click)
    us = script.utterances
    for i, u in enumerate(us):
        onset, end = zero + u.onset, zero + u.end
        following = zero + (us[i + 1].onset if i + 1 < len(us) else script.secs)
        if u.kind in ("question", "clip", "comma") or (u.kind == "story"):
            loud = loud_times(heard.bot, BOT_LOUD_DBFS, onset, following)
            if first_only or u is us[0]:
                figures.first_tries += 1
                figures.first_ok += int(u.expect in bot_text_between(heard, end, following))
                if first_only:
                    continue
            if u.kind == "story":
                continue
            figures.turns += 1
            mic_loud = loud_times(heard.mic, MIC_SPEECH_DBFS, onset - 0.3, end + 0.5)
            if figures.verbose and len(loud):
                mic_ends = []
                for th in (-45, -50, -55, -60):
                    m = loud_times(heard.mic, th, onset - 0.3, loud[0])
                    mic_ends.append(f"{th}: {1000 * (m[-1] + METER_SECS - end) if len(m) else float('nan'):+4.0f}")
                print("      meter end - bench end at thresholds", ", ".join(mic_ends))
            if figures.verbose:
                print(f"    {u.kind:8} {u.label[:30]:30} wav end {end - zero:6.2f} mic end {(mic_loud[-1] - zero) if len(mic_loud) else -1:6.2f}"
                      f" bot onset {(loud[0] - end) if len(loud) else float('nan'):+.3f} s  {bot_text_between(heard, end, following)[:50]!r}")
            if not len(loud):
                figures.unanswered += 1
            elif loud[0] < end:
                figures.premature += 1
            else:
                figures.heard.append(loud[0] - end)
                times = {**stage_times(heard, REPLY_STAGES, onset, loud[0] + 0.02, end, True), "heard": loud[0] - end}
                add_stages(figures.reply_stages, times)
                if figures.verbose:
                    print("      " + ", ".join(f"{k} {1000 * v:.0f}" for k, v in times.items()))
                page = [ms for t, ms in heard.reports if abs(t - loud[0]) < 0.1]
                if page:
                    figures.paired.append((loud[0] - end, page[0]))
        elif u.kind == "noise":
            figures.noise_bursts += 1
            started = [t for t, kind, _ in heard.rtvi if kind == "user-started-speaking" and onset <= t / 1000 < end + 0.6]
            figures.false_interruptions += int(bool(started))
            rows = heard.bot[(heard.bot[:, 0] >= onset) & (heard.bot[:, 0] < end + 0.6)]
            figures.noise_muted.append(METER_SECS * int((rows[:, 1] <= -180).sum()))  # the page muted the bot
        elif u.kind == "barge-in":
            figures.barge_tries += 1
            if not len(loud_times(heard.mic, MIC_SPEECH_DBFS, onset - 0.05, end + 0.05)):
                figures.barge_erased += 1
            if not any(kind == "bot-interrupted" and onset <= t / 1000 < end + 1.0 for t, kind, _ in heard.rtvi):
                figures.barge_missed += 1  # the agent never interrupted the story
            else:
                # Silent from the end of the last bot sound before its first gap of 100 ms or more.
                loud = loud_times(heard.bot, BOT_LOUD_DBFS, onset, end + 0.15)
                gaps = [i for i in range(len(loud)) if i + 1 == len(loud) or loud[i + 1] - loud[i] >= 0.1]
                figures.barge_silent.append((loud[gaps[0]] + METER_SECS - onset) if len(loud) else 0.0)
                mic = loud_times(heard.mic, MIC_SPEECH_DBFS, onset - 0.1, end)
                times = {"mic": (mic[0] - onset) if len(mic) else float("nan"),
                         **stage_times(heard, BARGE_STAGES, onset - 0.1, end + 1.0, onset, False),
                         "silent": figures.barge_silent[-1]}
                add_stages(figures.barge_stages, times)
                if figures.verbose:
                    print("    barge-in " + ", ".join(f"{k} {1000 * v:.0f}" for k, v in times.items()))


async def server_means(url: str) -> tuple[float | None, float | None]:
    """framegraph's /metrics: the means of its speech end -> first audio, and of the page's reports it kept."""
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as r:
        text = await r.text()

    def mean(name: str) -> float | None:
        values = {}
        for line in text.splitlines():
            for part in ("_sum", "_count"):
                if line.startswith(name + part):
                    values[part] = values.get(part, 0.0) + float(line.split()[-1])
        return values["_sum"] / values["_count"] if values.get("_count") else None

    return mean("framegraph_speech_end_to_first_audio_seconds"), mean("framegraph_page_speech_end_to_heard_seconds")


# -- printing ----------------------------------------------------------------------------


def ms(values: list[float], q: float | None = None) -> str:
    if not values:
        return "   -"
    return f"{1000 * (statistics.median(values) if q is None else percentile(values, q)):4.0f}"


def ratio(a: list[float], b: list[float]) -> str:
    return f"{statistics.median(a) / statistics.median(b):.2f}" if a and b and statistics.median(b) > 0 else "-"


def report(results: dict[str, Figures], loads: list[float]) -> None:
    print(f"\nload average {min(loads):.1f}-{max(loads):.1f} (1 min) on {os.cpu_count()} cores")
    print(f"{'target':14} {'connect->ready':>14} {'end->heard med':>14} {'p90':>5} {'n':>3} {'premature':>9}"
          f" {'unanswered':>10} {'barge-in->silent':>16} {'through':>7} {'erased':>6} {'false int.':>10} {'first ok':>8}")
    for name, f in results.items():
        print(f"{name:14} {ms(f.connect):>14} {ms(f.heard):>14} {ms(f.heard, 90):>5} {len(f.heard):>3}"
              f" {f.premature:>9} {f.unanswered:>10} {ms(f.barge_silent):>16} {f.barge_tries - f.barge_missed:>3}/{f.barge_tries:<3} {f.barge_erased:>6}"
              f" {f.false_interruptions:>4}/{f.noise_bursts:<5} {f.first_ok:>4}/{f.first_tries}")
    for name, f in results.items():
        for what, stages in (("speech end ->", f.reply_stages), ("barge-in onset ->", f.barge_stages)):
            if stages:
                print(f"{name}: where the time goes, median ms {what} " + ", ".join(
                    f"{stage} {ms(values).strip()}" for stage, values in stages.items()))
        if f.noise_muted:
            print(f"{name}: bot audio muted by the page during each noise burst (ms): "
                  + ", ".join(f"{1000 * m:.0f}" for m in f.noise_muted))
        if f.jitter_buffer:
            print(f"{name}: Chrome's jitter buffer for the bot's track (long session): mean delay"
                  f" {f.jitter_buffer['delay']:.0f} ms, target {f.jitter_buffer['target']:.0f} ms,"
                  f" minimum {f.jitter_buffer['minimum']:.0f} ms")
        if f.paired:
            bench, page = zip(*f.paired, strict=True)
            print(f"{name}: speech end -> heard on {len(f.paired)} turns the page reported: bench median {ms(list(bench))},"
                  f" page median {ms(list(page))}, median |difference| {ms([abs(a - b) for a, b in f.paired])} ms")
        if f.server_mean is not None:
            print(f"{name} /metrics means: speech end -> first chunk sent {1000 * f.server_mean:.0f} ms;"
                  f" page reports kept {1000 * (f.server_page_mean or float('nan')):.0f} ms")
    if len(results) == 2:
        (a, fa), (b, fb) = results.items()
        print(f"ratios {a} / {b}: connect {ratio(fa.connect, fb.connect)}, speech end -> heard {ratio(fa.heard, fb.heard)},"
              f" barge-in -> silent {ratio(fa.barge_silent, fb.barge_silent)}")


async def main(args) -> None:
    clips = human_clips()
    print(f"clips: {', '.join(n for n, _ in clips) if clips else f'none in {HUMAN_AUDIO}: espeak speech only'}")
    long = await conversation(args.barge_ins, clips)
    short = await first_question()
    results: dict[str, Figures] = {}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="bench-browser-") as tmp:
        folder = Path(tmp)
        for target in targets(args.only):
            figures = results[target.name] = Figures(verbose=args.verbose)
            await target.start(folder)
            try:
                judge(await session(target, long, folder, f"{target.name[:5]}-long"), long, figures)
                if target.name == "framegraph":
                    figures.server_mean, figures.server_page_mean = await server_means(target.url)
                for n in range(args.first):
                    judge(await session(target, short, folder, f"{target.name[:5]}-first{n}"), short, figures, True)
                    loads.append(os.getloadavg()[0])
            finally:
                target.stop()
            loads.append(os.getloadavg()[0])
    report(results, loads)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=int, default=3, help="fresh sessions that ask one first question (default 3)")
    parser.add_argument("--barge-ins", type=int, default=2, help="barge-ins in the long session (default 2)")
    parser.add_argument("--verbose", action="store_true", help="print each turn")
    parser.add_argument("--only", choices=["framegraph", "plain"], help="measure one target")
    args = parser.parse_args()
    asyncio.run(main(args))

"""What the listening benchmarks share: clips, speech found by energy, timelines, memory.

The benchmarks run the whole agent (a YAML config on the synthetic transport,
whose output plays audio in real time like a sound card) and feed it human
speech at real speed. Times are taken on one clock (``time.monotonic``): the
frames' push times, the output's write times, and the feeding of each 20 ms
chunk.
"""

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pipecat.frames.frames import Frame, InputAudioRawFrame, OutputAudioRawFrame, TranscriptionFrame
from pipecat.processors.frame_processor import FrameDirection

from pipelines.audio import read_wav
from pipelines.overrides import load_agent_with
from pipelines.testing import AgentHarness
from pipelines.validate import Agent

# Recorded human clips (X.wav, 16-bit, and X.txt with its words): FRAMEGRAPH_HUMAN_AUDIO names the
# folder (as in the tests); by default ../shared/audio/human beside the repository. A fresh clone has
# none: every bench then speaks ESPEAK_SENTENCES with espeak-ng instead, and says so (docs/benchmarks.md).
HUMAN_AUDIO = Path(
    os.environ.get("FRAMEGRAPH_HUMAN_AUDIO", Path(__file__).resolve().parents[2] / "shared" / "audio" / "human")
)
#: What the benches say when no recorded clips exist: questions and statements of one to four seconds.
ESPEAK_SENTENCES = (
    "What is the weather like today?",
    "Could you tell me a short story about a lighthouse?",
    "I would like to book a table for two people tonight.",
    "Please remind me to call my sister tomorrow morning.",
    "How far is it from here to the nearest train station?",
    "Thank you, that was very helpful.",
)
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "assistant.yaml"
RATE = 16000
CHUNK_SECS = 0.02
CHUNK_BYTES = int(RATE * CHUNK_SECS) * 2
ENERGY_FRAME = 160  # 10 ms


@dataclass
class Clip:
    """A human clip and where its speech starts and ends (seconds, from its energy)."""

    name: str
    pcm: bytes
    onset: float
    end: float
    text: str = ""  # the words, when known (X.txt beside a recorded clip; the sentence espeak spoke)

    @property
    def duration(self) -> float:
        return len(self.pcm) / (2 * RATE)


def speech_span(pcm: bytes) -> tuple[float, float]:
    """(onset, end) of the speech in ``pcm`` from its energy.

    Levels of 10 ms frames, smoothed over 30 ms; speech is what rises 10 dB
    above the room's noise floor, taken as the median level of the clip's
    first and last 100 ms (the clips start and end in silence).
    """
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32)
    frames = samples[: len(samples) // ENERGY_FRAME * ENERGY_FRAME].reshape(-1, ENERGY_FRAME)
    level = 10 * np.log10((frames**2).mean(axis=1) + 1e-9)
    level = np.convolve(level, np.ones(3) / 3, mode="same")
    floor = np.median(np.concatenate([level[1:11], level[-11:-1]]))
    loud = np.flatnonzero(level > floor + 10)
    return loud[0] * ENERGY_FRAME / RATE, (loud[-1] + 1) * ENERGY_FRAME / RATE


def load_clips(folder: Path = HUMAN_AUDIO) -> list[Clip]:
    """Every clip in ``folder`` at 16 kHz with its speech span and words (X.txt); none when there is no folder."""
    clips = []
    for path in sorted(folder.glob("*.wav")) if folder.is_dir() else ():
        pcm = read_wav(path, 16000)
        text = path.with_suffix(".txt").read_text().strip() if path.with_suffix(".txt").is_file() else ""
        clips.append(Clip(path.stem, pcm, *speech_span(pcm), text=text))
    return clips


async def bench_clips(folder: Path = HUMAN_AUDIO) -> list[Clip]:
    """The recorded clips in ``folder``, else ``ESPEAK_SENTENCES`` spoken by espeak-ng; prints which it uses."""
    clips = load_clips(folder)
    if clips:
        print(f"clips: {len(clips)} recorded clips from {folder}", flush=True)
        return clips
    from processors.tts.espeak import synthesize_pcm

    print(f"clips: no recorded clips in {folder} (FRAMEGRAPH_HUMAN_AUDIO names a folder of X.wav + X.txt): "
          f"{len(ESPEAK_SENTENCES)} sentences spoken by espeak-ng; its speech is not human speech, so figures "
          "that depend on the voice (word errors, turn ends) differ from the recorded clips'", flush=True)
    room = np.random.default_rng(0)
    for i, text in enumerate(ESPEAK_SENTENCES):
        speech = np.frombuffer(await synthesize_pcm(text, sample_rate=RATE), dtype=np.int16)
        # Half a second of room noise (about -60 dBFS) each side, as the recorded clips start and end in
        # silence: ``speech_span`` finds the speech against that floor (digital silence has none).
        pad = np.zeros(RATE // 2, dtype=np.int16)
        samples = np.concatenate([pad, speech, pad]).astype(np.float64) + room.normal(0, 30, 2 * len(pad) + len(speech))
        pcm = np.clip(samples, -32768, 32767).astype(np.int16).tobytes()
        clips.append(Clip(f"espeak{i}", pcm, *speech_span(pcm), text=text))
    return clips


#: Issue 19's sentence, with a person's pause at its comma (espeak's own is 160 ms, under VAD's
#: stop_secs): the transcript-aware turn end took "tell me a long" as complete in pipecat's eval scenario.
COMMA_SENTENCE = ("Tell me a long,", "detailed story about a dragon who lives in the mountains.")
COMMA_PAUSE_SECS = 0.35


async def comma_sentence() -> bytes:
    """``COMMA_SENTENCE`` spoken by espeak-ng at 16 kHz, ``COMMA_PAUSE_SECS`` of digital silence at its comma."""
    from processors.tts.espeak import synthesize_pcm

    first, rest = COMMA_SENTENCE
    return (await synthesize_pcm(first, sample_rate=RATE) + bytes(2 * int(COMMA_PAUSE_SECS * RATE))
            + await synthesize_pcm(rest, sample_rate=RATE))


async def comma_clip() -> Clip:
    """The comma sentence as a clip: half a second of room noise (about -60 dBFS) each side and under it."""
    speech = np.frombuffer(await comma_sentence(), dtype=np.int16)
    pad = np.zeros(RATE // 2, dtype=np.int16)
    noise = np.random.default_rng(19).normal(0, 30, 2 * len(pad) + len(speech))
    pcm = np.clip(np.concatenate([pad, speech, pad]) + noise, -32768, 32767).astype(np.int16).tobytes()
    return Clip("comma", pcm, *speech_span(pcm), text=" ".join(COMMA_SENTENCE))


def load_bench_agent(config: Path, keep_grammar: bool, overrides: list[str] = ()) -> Agent:
    """The agent in ``config`` with ``overrides`` (``--set`` values); unless ``keep_grammar``, its pocketsphinx
    STT uses the open language model instead of a closed grammar (the human clips are not in any closed
    domain, and a grammar that rejects them leaves the turn unanswered)."""
    agent = load_agent_with(config, overrides)
    if not keep_grammar:
        for component in agent.processors.values():
            if component.type.name == "pocketsphinx_stt":
                component.params = component.params.model_copy(
                    update={"phrases": None, "grammar": None, "grammar_file": None}
                )
    return agent


@dataclass
class Timeline:
    """First-push times (monotonic seconds) of frames, by (processor name, frame type name)."""

    events: list[tuple[float, str, str]] = field(default_factory=list)
    transcripts: list[tuple[float, str]] = field(default_factory=list)

    def first(self, frame_type: str, after: float, source: str | None = None) -> float | None:
        """The first push of a ``frame_type`` at or after ``after`` (by ``source``, or by any)."""
        return next(
            (t for t, s, f in self.events if f == frame_type and t >= after and source in (None, s)), None
        )


def record_pushes(harness: AgentHarness, timeline: Timeline, frame_types: tuple[type[Frame], ...]) -> None:
    """Records in ``timeline`` when the agent's processors first push frames of ``frame_types``.

    Each processor's ``push_frame`` is wrapped: one ``isinstance`` per push,
    where a pipecat observer would receive every frame of every processor
    through a queue and a task (about a tenth of a core with eight agents).
    """
    seen: set[int] = set()
    for name, processor in harness.processors.items():
        original = processor.push_frame

        async def push_frame(frame, direction=FrameDirection.DOWNSTREAM, _original=original, _name=name):
            if isinstance(frame, frame_types) and frame.id not in seen:
                seen.add(frame.id)
                timeline.events.append((time.monotonic(), _name, type(frame).__name__))
                if isinstance(frame, TranscriptionFrame):
                    timeline.transcripts.append((time.monotonic(), frame.text))
            await _original(frame, direction)

        processor.push_frame = push_frame


async def start_agent(agent: Agent, timeline: Timeline, frame_types: tuple[type[Frame], ...]) -> AgentHarness:
    """Starts ``agent`` on the synthetic transport, recording pushes of ``frame_types``.

    The test kit's probe observer sees every frame of every processor through
    pipecat's observer proxy; a server has no such observer, and with eight
    agents it costs a tenth of a core, so it is removed here.
    """
    harness = AgentHarness(agent)
    record_pushes(harness, timeline, frame_types)
    await harness.__aenter__()
    await harness.worker.remove_observer(harness._observer)
    return harness


class Feeder:
    """Feeds an agent's input a continuous real-time stream: queued speech, else silence."""

    def __init__(self, harness: AgentHarness):
        self._harness = harness
        self._queue: list[tuple[bytes, asyncio.Future]] = []
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def play(self, pcm: bytes) -> asyncio.Future:
        """Queues ``pcm``; the future gives the monotonic time its first sample was fed."""
        started = asyncio.get_running_loop().create_future()
        self._queue.append((pcm, started))
        return started

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start, sent = loop.time(), 0
        pending = b""
        silence = b"\0" * CHUNK_BYTES
        while True:
            if not pending and self._queue:
                pending, started = self._queue.pop(0)
                started.set_result(time.monotonic())
            chunk, pending = (pending[:CHUNK_BYTES], pending[CHUNK_BYTES:]) if pending else (silence, b"")
            chunk = chunk.ljust(CHUNK_BYTES, b"\0")
            await self._harness.inject(InputAudioRawFrame(audio=chunk, sample_rate=RATE, num_channels=1))
            sent += 1
            await asyncio.sleep(max(0.0, start + sent * CHUNK_SECS - loop.time()))


class BotAudio:
    """(write time, duration) of the bot audio chunks an agent's output wrote, read as they come."""

    def __init__(self, harness: AgentHarness):
        self._written = harness.output.written
        self._read = 0
        self.chunks: list[tuple[float, float]] = []

    def update(self) -> list[tuple[float, float]]:
        """Reads the chunks written since the last call; returns them all."""
        for w in self._written[self._read:]:
            if isinstance(w.frame, OutputAudioRawFrame):
                self.chunks.append((w.time, len(w.frame.audio) / (2 * w.frame.num_channels * w.frame.sample_rate)))
        self._read = len(self._written)
        return self.chunks


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (field 3 onwards)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def process_tree(root_pids: list[int]) -> list[int]:
    """``root_pids`` and all their live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                children.setdefault(int(_stat_fields(int(entry))[1]), []).append(int(entry))
            except OSError:
                continue
    tree, stack = [], list(root_pids)
    while stack:
        pid = stack.pop()
        if pid not in tree:
            tree.append(pid)
            stack.extend(children.get(pid, []))
    return tree


def process_tree_pss_mib(root_pids: list[int]) -> float:
    """Proportional set size of processes and all their descendants, in MiB.

    PSS splits pages shared by several processes (the decoder model, shared
    copy-on-write by every forked decoder) between them, so summing it over
    the tree counts each page once.
    """
    total_kib = 0
    for pid in process_tree(root_pids):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total_kib += next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration):
            continue
    return total_kib / 1024


class TreeCpu:
    """CPU seconds of a process tree, counting processes that exit while it watches.

    A process's CPU vanishes from ``/proc`` when it exits, and the decoder
    host's forked decoders (one per session, reaped by the kernel) take
    theirs with them when their session ends: a single reading at the end of
    a run would miss them. ``sample()`` (call it every few hundred ms) keeps
    each process's latest reading; ``by_kind()`` splits the total by command
    (decoders, workers, the main process).
    """

    def __init__(self, root_pids: list[int]):
        self._roots = list(root_pids)
        self._seen: dict[tuple[int, str], tuple[str, float]] = {}
        self._base: dict[tuple[int, str], float] = {}
        self.sample()
        self._base = {key: secs for key, (_, secs) in self._seen.items()}

    def sample(self) -> None:
        """Reads every live process of the tree."""
        ticks = os.sysconf("SC_CLK_TCK")
        for pid in process_tree(self._roots):
            try:
                fields = _stat_fields(pid)
                key = (pid, fields[19])  # a pid with its start time: one process, even if the pid is reused
                kind = self._seen[key][0] if key in self._seen else self._kind(pid)
            except OSError:
                continue
            self._seen[key] = (kind, (int(fields[11]) + int(fields[12])) / ticks)

    def by_kind(self) -> dict[str, float]:
        """CPU seconds since this object was made, per kind of process."""
        totals: dict[str, float] = {}
        for key, (kind, secs) in self._seen.items():
            totals[kind] = totals.get(kind, 0.0) + secs - self._base.get(key, 0.0)
        return totals


    def _kind(self, pid: int) -> str:
        """What a process of the tree is, from its command line (read once per process)."""
        if pid in self._roots:
            return "main"
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read().replace(b"\0", b" ").decode(errors="replace")
        return _process_kind(command)


def _process_kind(command: str) -> str:
    if "decoder_host" in command:
        return "decoders"
    if "multiprocessing" in command:
        return "workers"
    return "other"


def process_tree_cpu_secs(root_pids: list[int]) -> float:
    """User + system CPU seconds used so far by processes and their live descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in process_tree(root_pids):
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]

"""Load levels from measurement: what a server measures of its own pressure, and what it does at each level.

Each server (each worker of ``serve --workers N``) samples, every
``SAMPLE_S``, how late its event loop wakes (loop lag), the CPU share of its
process, the share of its sessions' audio chunks that reached the listener
late (a gap in the bot's voice: counted by the outputs, ``pipelines.pressure``),
and keeps the latencies of its recent replies (VAD stop -> the bot's
first audio, from ``pipelines.server.latency``). ``LevelMachine`` turns those
into one of five levels with hysteresis: a higher level is entered once it
was measured for ``rise_secs``; a level is left one step at a time, once
every signal stayed under ``recover_ratio`` of that level's thresholds for
``recover_secs``. What each level does (docs/backpressure.md):

- ELEVATED: nothing but the log, ``/health`` and the metrics (an early warning);
- DEGRADED: sessions that start now run with the agent's ``backpressure.degraded``
  params (e.g. poses only instead of a rendered video, a narrower STT search),
  and the running sessions' processors that take params live (``Retunable``:
  the avatar, the pocketsphinx STT) switch to them; back to their own when the level leaves DEGRADED;
- SHEDDING: a new session goes to another server that has room (307), this
  server tells the others it has none, and idle users' check-ins wait;
- SESSION_REJECT: a new session gets 503 + ``Retry-After``.

Admitted conversations are never ended for load, and a DISCONNECTED session
may always resume: a level refuses only sessions that do not exist yet.
``--max-sessions`` stays the hard cap on top.
"""

import asyncio
import enum
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from loguru import logger

from pipelines.pressure import PRESSURE, Retunable
from pipelines.server.admission import Full
from pipelines.spec import BackpressureSettings
from pipelines.validate import Agent, Component

#: Seconds between two samples of the loop lag and the CPU share.
SAMPLE_S = 0.1


class Level(enum.IntEnum):
    """The five load levels, in order."""

    NORMAL = 0
    ELEVATED = 1
    DEGRADED = 2
    SHEDDING = 3
    SESSION_REJECT = 4


#: The signals, each named as the ``BackpressureSettings`` field that holds its thresholds.
SIGNALS = ("loop_lag_ms", "cpu_share", "reply_p95_secs", "late_chunk_share")


class Busy(Full):
    """A new session refused at SESSION_REJECT; the client is told to come back after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass
class Change:
    """One level change: from, to, the measurement that made it, and the signal that decided."""

    before: Level
    after: Level
    measured: dict[str, float]
    signal: str

    def describe(self) -> str:
        values = ", ".join(f"{k} {v:g}" for k, v in self.measured.items())
        why = "rose" if self.after > self.before else "recovered"
        return f"load level {self.before.name} -> {self.after.name} ({self.signal} {why}; measured {values})"


class LevelMachine:
    """Measurements in, a level out, with hysteresis; pure (time is passed in), so tests feed it directly."""

    def __init__(self, settings: BackpressureSettings):
        self.settings = settings
        self.level = Level.NORMAL
        self.since = time.monotonic()
        self._rising_since: float | None = None
        self._falling_since: float | None = None

    def measured_level(self, measured: dict[str, float], ratio: float = 1.0) -> tuple[Level, str]:
        """The highest level any signal reaches (each threshold times ``ratio``), and that signal."""
        best, which = Level.NORMAL, ""
        for signal in SIGNALS:
            value = measured.get(signal)
            if value is None:
                continue
            for index, threshold in enumerate(getattr(self.settings, signal)):
                if threshold is not None and value >= threshold * ratio and Level(index + 1) > best:
                    best, which = Level(index + 1), signal
        return best, which

    def update(self, measured: dict[str, float], now: float) -> Change | None:
        """Feeds one measurement taken at ``now`` (monotonic seconds); returns the change it made, if any."""
        up, signal = self.measured_level(measured)
        if up > self.level:
            self._falling_since = None
            self._rising_since = now if self._rising_since is None else self._rising_since
            if now - self._rising_since >= self.settings.rise_secs:
                return self._move(up, measured, signal, now)
            return None
        self._rising_since = None
        held, _ = self.measured_level(measured, self.settings.recover_ratio)
        if held < self.level:
            self._falling_since = now if self._falling_since is None else self._falling_since
            if now - self._falling_since >= self.settings.recover_secs:
                self._falling_since = now  # the next step down waits recover_secs again
                return self._move(Level(self.level - 1), measured, signal or "every signal", now)
            return None
        self._falling_since = None
        return None

    def _move(self, level: Level, measured: dict[str, float], signal: str, now: float) -> Change:
        change = Change(self.level, level, dict(measured), signal)
        self.level, self.since = level, now
        if level > change.before:
            self._rising_since = None
        return change


class LoadMonitor:
    """Measures this process's load continuously and holds its level (started and stopped with the server)."""

    def __init__(self, settings: BackpressureSettings, metrics: Any, server_id: str,
                 running: Callable[[], Iterable[tuple[Agent, Any]]] = lambda: ()):
        """``running``: this server's running sessions as (declared agent, built graph) pairs, when asked."""
        self.settings = settings
        self.machine = LevelMachine(settings)
        self.metrics = metrics
        self.server_id = server_id
        self.measured: dict[str, float] = {}
        self._lags: deque[tuple[float, float]] = deque()
        self._cpu: deque[tuple[float, float]] = deque()
        self._replies: deque[tuple[float, float]] = deque()
        self._chunks: deque[tuple[float, int, int]] = deque()  # (when, chunks written, late ones) per sample
        self._counted = (PRESSURE.chunks, PRESSURE.late_chunks)
        self._task: asyncio.Task | None = None
        #: The latest change, described with the measurement that made it (``/health``'s ``cause``).
        self.cause = ""
        self.running = running
        metrics.set_load_level(Level.NORMAL.value, Level.NORMAL.name)

    @property
    def level(self) -> Level:
        return self.machine.level

    def start(self) -> None:
        if self.settings.enabled and self._task is None:
            self._task = asyncio.create_task(self._sample())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        PRESSURE.defer_check_ins = False  # a stopped monitor defers nothing (the flag is the process's)

    def record_reply(self, seconds: float) -> None:
        """One reply latency (VAD stop -> the bot's first audio) of a session of this server."""
        self._replies.append((time.monotonic(), seconds))

    def feed(self, measured: dict[str, float], now: float | None = None) -> Change | None:
        """Feeds one measurement to the level machine; logs and counts a change. The sampler calls this."""
        self.measured = {k: round(v, 3) for k, v in measured.items()}
        change = self.machine.update(measured, time.monotonic() if now is None else now)
        self.metrics.set_load_signals({signal: self.measured.get(signal, 0.0) for signal in SIGNALS})
        if change is not None:
            self.cause = change.describe()
            log = logger.warning if change.after > change.before else logger.info
            log(f"{self.server_id}: {self.cause}")
            self.metrics.set_load_level(change.after.value, change.after.name, changed=True)
            self._act(change)
        return change

    def _act(self, change: Change) -> None:
        """What a change does to the running sessions: check-ins wait at SHEDDING; DEGRADED params on or off."""
        PRESSURE.defer_check_ins = change.after >= Level.SHEDDING
        was, now = change.before >= Level.DEGRADED, change.after >= Level.DEGRADED
        if was != now:
            switched = sum(retune(agent, built, now) for agent, built in self.running())
            if switched:
                logger.info(f"{self.server_id}: {switched} running session(s) switched to their "
                            f"{'degraded' if now else 'own'} params")

    def admit_new(self, agent: Agent) -> None:
        """Raises ``Busy`` (503 + Retry-After) for a new session of ``agent`` at SESSION_REJECT."""
        if self.level >= Level.SESSION_REJECT:
            raise Busy(f"the server is overloaded ({self.describe()}); try again in "
                       f"{agent.spec.backpressure.retry_after_secs} s", agent.spec.backpressure.retry_after_secs)

    @property
    def shedding(self) -> bool:
        """Whether new sessions should go to another server that has room."""
        return self.level >= Level.SHEDDING and self.settings.shed_to_others

    def shaped(self, agent: Agent) -> Agent:
        """``agent`` as a session starting now runs it: with its ``degraded`` params at DEGRADED or above."""
        if self.level < Level.DEGRADED or not agent.spec.backpressure.degraded:
            return agent
        return degraded(agent)

    def describe(self) -> str:
        values = ", ".join(f"{k} {v:g}" for k, v in self.measured.items())
        return f"level {self.level.name}" + (f": {values}" if values else "")

    def report(self) -> dict[str, Any]:
        """What ``/health`` shows: the level, since when (seconds ago) and the latest measurement."""
        return {"level": self.level.name, "for_s": round(time.monotonic() - self.machine.since, 1),
                "measured": dict(self.measured), "cause": self.cause}

    async def _sample(self) -> None:
        used, at = time.process_time(), time.monotonic()
        while True:
            await asyncio.sleep(SAMPLE_S)
            now = time.monotonic()
            now_used = time.process_time()
            self._lags.append((now, max(0.0, now - at - SAMPLE_S)))
            self._cpu.append((now, (now_used - used) / max(now - at, 1e-6)))
            used, at = now_used, now
            counted = (PRESSURE.chunks, PRESSURE.late_chunks)
            self._chunks.append((now, counted[0] - self._counted[0], counted[1] - self._counted[1]))
            self.metrics.count_late_chunks(counted[1] - self._counted[1])
            self._counted = counted
            self.feed(self._measure(now), now)

    def _measure(self, now: float) -> dict[str, float]:
        window, replies_window = self.settings.window_secs, self.settings.reply_window_secs
        kept = ((self._lags, window), (self._cpu, window), (self._chunks, window), (self._replies, replies_window))
        for samples, secs in kept:
            while samples and now - samples[0][0] > secs:
                samples.popleft()
        measured = {
            "loop_lag_ms": 1000 * sum(v for _, v in self._lags) / max(len(self._lags), 1),
            "cpu_share": sum(v for _, v in self._cpu) / max(len(self._cpu), 1),
        }
        chunks = sum(n for _, n, _ in self._chunks)
        if chunks >= self.settings.min_chunks:  # too few chunks make no share (one late in three is not 33%)
            measured["late_chunk_share"] = sum(n for _, _, n in self._chunks) / chunks
        if self._replies:
            ordered = sorted(v for _, v in self._replies)
            measured["reply_p95_secs"] = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        return measured


def retune(agent: Agent, built: Any, on: bool) -> bool:
    """Lays ``agent``'s degraded params over the ``Retunable`` processors of its running graph ``built``
    (``on``), or its own params back; returns whether any processor took them."""
    target = degraded(agent) if on else agent
    took = False
    for pid in agent.spec.backpressure.degraded:
        processor = built.processors.get(pid)
        if isinstance(processor, Retunable):
            processor.retune(target.processors[pid].params)
            took = True
    return took


def degraded(agent: Agent) -> Agent:
    """``agent`` with its ``backpressure.degraded`` params laid over its processors' (checked at load time)."""
    processors = dict(agent.processors)
    for pid, override in agent.spec.backpressure.degraded.items():
        component = processors[pid]
        params = component.type.params.model_validate({**component.params.model_dump(), **override})
        processors[pid] = Component(component.id, component.type, params)
    return replace(agent, processors=processors)

"""Worker processes: every core of a machine runs sessions (``framegraph serve --workers N``).

Each worker is a whole one-process server (``SessionManager`` and its
uvicorn, the same code as ``--workers 1``) started with the ``spawn`` method
on a loopback port of its own, with its own event loop, its own VAD, turn,
speech and TTS work, and its own server id ``SERVER/wN`` as the owner of its
sessions in the shared store. The front process (``pipelines.server.front``)
owns the public address and proxies each request to a worker.

Workers start warm: each calls its agents' ``prewarm`` hooks (Silero VAD and
Smart Turn sessions, the pocketsphinx decoder host) before it says it is ready,
as LiveKit's worker pool does. Each reports, every quarter second through
shared memory, its live sessions, the CPU it used over the last second and
its load level; the pool places a new session by ``pipelines.server.placement``'s
rule: a worker below SHEDDING first (a SHEDDING one only when every one is,
a SESSION_REJECT one never while another is not), and among those the one
with the fewest sessions (counting the sessions it placed in the last second,
which a report may not show yet), then the least busy. A worker that dies is started again under the same
server id: its ``SessionManager.start`` marks the sessions the dead one left
live DISCONNECTED, and their clients resume them with their context. A
worker whose front process died (even by SIGKILL) ends itself.
"""

import asyncio
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import uvicorn
from loguru import logger

from pipelines.server.admission import Slots
from pipelines.server.app import server_config, usable_store
from pipelines.server.load_level import Level
from pipelines.server.options import ServerOptions
from pipelines.server.placement import Place, choose, placement_level
from pipelines.server.warming import warm
from pipelines.sessions.metrics import MULTIPROCESS_DIR
from pipelines.validate import Agent

#: Seconds between a worker's load reports.
REPORT_EVERY_S = 0.25
#: What each worker reports, in this order, in its row of the shared report array.
REPORTED = ("live", "cpu", "level")
#: Placements this recent count against a worker (its report may not show them yet).
RECENT_PLACEMENT_S = 1.0
#: How long a worker may take to load its models and listen.
START_TIMEOUT_S = 120.0
#: The wait before starting a dead worker again: doubled after each death soon after a start, up to the most.
FIRST_RESTART_DELAY_S = 1.0
MOST_RESTART_DELAY_S = 60.0
#: A worker that served this long before it died counts as healthy: its next restart waits the first delay again.
HEALTHY_RUN_S = 60.0
#: The metrics folders of front processes are named after their pid: ``framegraph-metrics-PID-XXXX``.
METRICS_PREFIX = "framegraph-metrics-"


def worker_main(slot: int, agents: list[Agent], options: ServerOptions, ready: Any, report: Any) -> None:
    """A worker process's entry point: serves ``agents`` on a loopback port until SIGTERM.

    It leaves the terminal's process group: Ctrl-C reaches the front alone,
    which stops its workers itself (rather than seeing them exit and start them again).
    """
    os.setpgrp()
    sys.exit(asyncio.run(_serve_worker(slot, agents, options, ready, report)))


async def _serve_worker(slot: int, agents: list[Agent], options: ServerOptions, ready: Any, report: Any) -> int:
    """Serves until told to stop; returns the process's exit status (3: its store cannot be used)."""
    config, manager = server_config(agents, options, tls=False)
    try:
        await usable_store(manager.store)
    except RuntimeError as e:
        logger.error(f"worker {options.server_id}: {e}")
        return 3
    warm(agents)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not (server.started or serving.done()):
        await asyncio.sleep(0.02)
    if not server.started:
        await serving
        return 1
    ready.put((slot, os.getpid(), server.servers[0].sockets[0].getsockname()[1]))
    used, at = time.process_time(), time.monotonic()
    front = os.getppid()
    while not serving.done():
        await asyncio.sleep(REPORT_EVERY_S)
        if os.getppid() != front:  # the front died (even by SIGKILL): so does its worker
            server.should_exit = True
        now_used, now = time.process_time(), time.monotonic()
        if now - at >= 1.0:
            write_report(report, slot, cpu=(now_used - used) / (now - at))
            used, at = now_used, now
        write_report(report, slot, live=len(manager.live), level=placement_level(manager.load).value)
    await serving
    return 0


def write_report(report: Any, slot: int, **values: float) -> None:
    """Writes worker ``slot``'s ``REPORTED`` values (those given) into the shared report array."""
    for name, value in values.items():
        report[len(REPORTED) * slot + REPORTED.index(name)] = value


@dataclass
class Worker:
    """One worker slot: its process (replaced when it dies), port and server id."""

    slot: int
    server_id: str
    process: Any = None
    port: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    placed: list[float] = field(default_factory=list)
    restarts: int = 0
    #: When the current process was started (monotonic) and when it may be started again after a death.
    started_at: float = 0.0
    restart_delay_s: float = 0.0
    restart_at: float | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class WorkerPool:
    """N warm worker processes, their placement and their replacement when one dies."""

    def __init__(self, agents: list[Agent], options: ServerOptions, server_id: str, count: int):
        self.agents = agents
        self.count = count
        self.server_id = server_id
        self.workers = [Worker(i, f"{server_id}/w{i}") for i in range(count)]
        self._context = multiprocessing.get_context("spawn")
        remove_stale_metrics_dirs()
        self._metrics_dir = tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-")
        # One count of live sessions for the whole server, shared by every worker (pipelines.server.admission).
        self.slots = Slots.shared(self._context, count, [a.spec.name for a in agents],
                                  os.path.join(self._metrics_dir, "admission.lock"))
        # Each worker listens on loopback and speaks plain HTTP (the front terminates TLS);
        # the front applies the Host/Origin checks.
        self.worker_options = replace(
            options, host="127.0.0.1", port=0, allowed_origins=[], allowed_hosts=[], workers=1, slots=self.slots,
        )
        self._ready = self._context.Queue()
        self._report = self._context.Array("d", len(REPORTED) * count, lock=False)
        self._tasks: list[asyncio.Task] = []
        self._closing = False

    def advertise(self, url: str) -> None:
        """The front's URL: each worker publishes it (several servers redirect there), unless one was given."""
        if not self.worker_options.advertise_url:
            self.worker_options = replace(self.worker_options, advertise_url=url)

    async def start(self) -> None:
        """Starts every worker and waits until each has loaded its models and listens."""
        self._tasks.append(asyncio.create_task(self._listen()))
        for worker in self.workers:
            self._spawn(worker)
        logger.info(f"starting {len(self.workers)} worker processes: each loads its models once")
        await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in self.workers)), START_TIMEOUT_S)
        self._tasks.append(asyncio.create_task(self._watch()))

    async def stop(self) -> None:
        """Stops every worker (SIGTERM: their sessions stay resumable), killing any that hangs."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for worker in self.workers:
            if worker.process is not None and worker.process.is_alive():
                worker.process.terminate()
        for worker in self.workers:
            if worker.process is not None:
                await asyncio.to_thread(worker.process.join, 10)
                if worker.process.is_alive():
                    worker.process.kill()
                    await asyncio.to_thread(worker.process.join, 5)
        shutil.rmtree(self._metrics_dir, ignore_errors=True)

    def reported(self, worker: Worker, name: str) -> float:
        """The worker's last reported ``name`` (one of ``REPORTED``)."""
        return self._report[len(REPORTED) * worker.slot + REPORTED.index(name)]

    def live(self, worker: Worker) -> int:
        """Live sessions the worker reported last."""
        return int(self.reported(worker, "live"))

    def cpu(self, worker: Worker) -> float:
        """The worker's CPU use over its last reported second (1.0: one core)."""
        return self.reported(worker, "cpu")

    def level(self, worker: Worker) -> Level:
        """The load level the worker reported last (``placement.placement_level``)."""
        return Level(int(self.reported(worker, "level")))

    def least_loaded(self) -> Worker:
        """The worker a new session goes to (``placement.choose``: below SHEDDING first; then the fewest live and
        just-placed sessions, then the least CPU); counts it. When every worker is at SESSION_REJECT, the least
        busy, which answers 503 itself (the front routes every request somewhere)."""
        now = time.monotonic()
        for worker in self.workers:
            worker.placed = [t for t in worker.placed if now - t < RECENT_PLACEMENT_S]
        ready = [w for w in self.workers if w.ready.is_set()] or self.workers
        places = [Place(w, self.level(w), 1, busy=(self.live(w) + len(w.placed), self.cpu(w), w.slot)) for w in ready]
        best = choose(places) or min(places, key=lambda p: p.busy)
        best.where.placed.append(now)
        return best.where

    def owning(self, server_id: str) -> Worker | None:
        """The worker slot whose server id is ``server_id`` (a session's owner), if it is one of this pool's."""
        return next((w for w in self.workers if w.server_id == server_id), None)

    def _spawn(self, worker: Worker) -> None:
        worker.ready.clear()
        worker.started_at = time.monotonic()
        self.slots.clear(worker.slot)  # a dead worker's sessions hold no slot (they are DISCONNECTED)
        options = replace(self.worker_options, server_id=worker.server_id, slots=self.slots.for_worker(worker.slot))
        worker.process = self._context.Process(
            target=worker_main, args=(worker.slot, self.agents, options, self._ready, self._report),
            name=f"framegraph-worker-{worker.slot}", daemon=True,
        )
        # The worker inherits the metrics folder (read by prometheus_client at import);
        # this process keeps its own environment.
        own = os.environ.get(MULTIPROCESS_DIR)
        os.environ[MULTIPROCESS_DIR] = self._metrics_dir
        try:
            worker.process.start()
        finally:
            if own is None:
                del os.environ[MULTIPROCESS_DIR]
            else:
                os.environ[MULTIPROCESS_DIR] = own
        write_report(self._report, worker.slot, live=0, level=Level.NORMAL.value)

    async def _listen(self) -> None:
        """Marks workers ready as they say so (slot, pid, port) on the queue."""
        import queue

        while True:
            try:
                slot, pid, port = await asyncio.to_thread(self._ready.get, True, 0.5)
            except queue.Empty:
                continue
            worker = self.workers[slot]
            if worker.pid == pid:
                worker.port = port
                worker.ready.set()
                logger.info(f"worker {worker.server_id} (pid {pid}) serves on {worker.url}")

    async def _watch(self) -> None:
        """Starts a dead worker again (same server id: it recovers its sessions as DISCONNECTED).

        A worker that dies again soon after its start (its store is down, a
        model will not load) is started after a delay that doubles each time,
        up to ``MOST_RESTART_DELAY_S``, not in a tight loop that reloads its
        models every few seconds; the log says why it waits.
        """
        while not self._closing:
            await asyncio.sleep(0.2)
            for worker in self.workers:
                if not self._closing:
                    self._restart_if_dead(worker, time.monotonic())

    def _restart_if_dead(self, worker: Worker, now: float) -> None:
        if worker.process is None or worker.process.exitcode is None:
            return
        if worker.restart_at is None:
            ran = now - worker.started_at
            served = worker.ready.is_set()
            if served and (ran >= HEALTHY_RUN_S or worker.restarts == 0):  # a crash, not a failing start
                worker.restart_delay_s = 0.0
            else:
                worker.restart_delay_s = min(max(2 * worker.restart_delay_s, FIRST_RESTART_DELAY_S),
                                             MOST_RESTART_DELAY_S)
            worker.restart_at = now + worker.restart_delay_s
            when = "now" if not worker.restart_delay_s else f"in {worker.restart_delay_s:g} s"
            why = "" if worker.ready.is_set() else " before it was ready (see its log above: store, models)"
            logger.warning(f"worker {worker.server_id} (pid {worker.pid}) exited with {worker.process.exitcode} "
                           f"after {ran:.0f} s{why}; starting it again {when}")
            worker.ready.clear()
        if now >= worker.restart_at:
            worker.restart_at = None
            worker.restarts += 1
            self._spawn(worker)


def remove_stale_metrics_dirs() -> list[str]:
    """Removes the metrics folders left by front processes that are gone (a SIGKILLed front cleans nothing).

    Folders are named after their front's pid; one whose pid no longer runs is
    stale (its workers end themselves when their front dies). Returns the removed paths.
    """
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{METRICS_PREFIX}*"):
        pid = folder.name.removeprefix(METRICS_PREFIX).split("-", 1)[0]
        if not folder.is_dir() or not pid.isdigit() or _running(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(str(folder))
    if removed:
        logger.info(f"removed {len(removed)} metrics folder(s) left by front processes that were killed")
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True

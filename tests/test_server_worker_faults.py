"""Worker processes when things go wrong (issue 21, items 9 and 11): restarts back off, killed fronts leave nothing.

A worker that cannot start (its store is down, a model will not load) used
to be started again every 0.2 s, each time loading its models; and a front
killed with SIGKILL left its prometheus folder in the temporary folder for
good. The dying workers here are real processes that exit at once.
"""

import asyncio
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loguru import logger
from test_server_hostile import RTC

from pipelines.server.options import ServerOptions
from pipelines.server.workers import METRICS_PREFIX, WorkerPool, remove_stale_metrics_dirs
from pipelines.validate import load_agent_text


def exit_at_once() -> None:
    os._exit(3)


async def test_a_worker_that_keeps_failing_to_start_is_restarted_with_backoff():
    pool = WorkerPool([load_agent_text(RTC)], ServerOptions(), "srv", 1)
    context = multiprocessing.get_context("spawn")
    starts: list[float] = []

    def spawn(worker):  # a real process that dies before it is ready, as with its store down
        worker.ready.clear()
        worker.started_at = time.monotonic()
        worker.process = context.Process(target=exit_at_once, daemon=True)
        worker.process.start()
        starts.append(worker.started_at)

    pool._spawn = spawn
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), format="{message}", level="WARNING")
    try:
        spawn(pool.workers[0])
        watch = asyncio.create_task(pool._watch())
        await asyncio.sleep(8)
        pool._closing = True
        await watch
    finally:
        logger.remove(sink)
        await pool.stop()
    gaps = [round(b - a, 2) for a, b in zip(starts, starts[1:], strict=False)]
    # 1, 2, 4 s between starts (plus a process start each): 2 to 4 starts in 8 s, not one every 0.2 s.
    assert 2 <= len(starts) <= 4, gaps
    delays = [line.split("starting it again in ")[1].strip() for line in lines if "before it was ready" in line]
    assert delays[:3] == ["1 s", "2 s", "4 s"][:len(delays[:3])] and len(delays) >= 2, lines


def test_a_killed_fronts_metrics_folder_is_removed_on_the_next_start():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = Path(tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{dead.pid}-"))
    (stale / "counter_1.db").write_bytes(b"x" * 100)
    mine = Path(tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-"))
    try:
        pool = WorkerPool([load_agent_text(RTC)], ServerOptions(), "srv", 1)  # what a new front does first
        assert not stale.exists()
        assert mine.exists()  # a live front's folder is kept
        assert Path(pool._metrics_dir).name.startswith(f"{METRICS_PREFIX}{os.getpid()}-")
        assert remove_stale_metrics_dirs() == []
    finally:
        for folder in (stale, mine, Path(pool._metrics_dir)):
            shutil.rmtree(folder, ignore_errors=True)

"""Session stores: how long a turn's write, a read and a listing page take, SQLite and Redis side by side.

Per store: N sessions are created, then one turn (a user and an assistant
message, latencies) is appended to each, T times over, by C concurrent
writers; then every session is read back and the whole store is listed page
by page. Prints p50/p95 per operation, writes per second, and the machine's
load. SQLite runs on a temporary file with WAL and ``synchronous=FULL`` (a
real fsync per commit); Redis on a redis-server started here (no persistence,
so the figure is the store's own cost, not the disk's).

    .venv/bin/python bench/session_store.py [--sessions 200] [--turns 5] [--concurrency 8]
"""

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from redis_kit import redis_server  # noqa: E402

from pipelines.sessions.redis_store import RedisSessionStore  # noqa: E402
from pipelines.sessions.sqlite_store import SQLiteSessionStore  # noqa: E402
from pipelines.sessions.store import MAX_PAGE, SessionStore  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def timed(samples: list[float], coro):
    start = time.perf_counter()
    result = await coro
    samples.append(time.perf_counter() - start)
    return result


async def measure(store: SessionStore, sessions: int, turns: int, concurrency: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"create": [], "append": [], "get": [], "list page": []}
    ids = [(await timed(times["create"], store.create(agent="bench", owner="b")))[0].id for _ in range(sessions)]
    queue = [sid for _ in range(turns) for sid in ids]
    started = time.perf_counter()

    async def writer():
        while queue:
            sid = queue.pop()
            turn = [{"role": "user", "content": "What is the weather like?"}, {"role": "assistant", "content": "Sunny."}]
            await timed(times["append"], store.append(sid, turn, latencies={"speech_end_to_first_audio_s": 0.4}))

    await asyncio.gather(*(writer() for _ in range(concurrency)))
    times["append wall"] = [time.perf_counter() - started]
    for sid in ids:
        await timed(times["get"], store.get(sid))
    cursor = None
    while True:
        page = await timed(times["list page"], store.list(limit=MAX_PAGE, cursor=cursor))
        if not (cursor := page.next_cursor):
            break
    return times


def report(name: str, times: dict[str, list[float]]) -> None:
    appends = len(times["append"])
    print(f"{name}: {appends / times['append wall'][0]:.0f} turn writes/s")
    for op in ("create", "append", "get", "list page"):
        t = times[op]
        print(f"  {op:10s} p50 {statistics.median(t) * 1000:7.2f} ms   p95 {percentile(t, 95) * 1000:7.2f} ms   (n={len(t)})")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as folder:
        async with SQLiteSessionStore(Path(folder) / "bench.db") as store:
            report("SQLite (WAL, synchronous=FULL)", await measure(store, args.sessions, args.turns, args.concurrency))
        with redis_server(Path(folder)) as url:
            async with RedisSessionStore(url) as store:
                report("Redis", await measure(store, args.sessions, args.turns, args.concurrency))
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    asyncio.run(main())

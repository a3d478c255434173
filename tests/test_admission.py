"""``--max-sessions`` is one atomic count for a whole server, however many worker processes it has.

The count itself across real processes (spawned as the worker pool spawns
them, racing for slots), then real ``framegraph serve --workers 2``
processes hit by concurrent ``POST /sessions``: exactly the limit is
admitted and the rest get 503 + ``Retry-After``; with two such servers on
one real ``redis-server``, each server's own limit holds exactly.
"""

import asyncio
import multiprocessing
import re
import signal
import sys

import httpx
from conftest import ROOT
from test_server_resume import AGENT

from pipelines.server.admission import Full, Slots


def _grab(slots: Slots, start, attempts: int, taken) -> None:
    start.wait()
    for _ in range(attempts):
        try:
            slots.take("agent", max_sessions=7)
        except Full:
            continue
        with taken.get_lock():
            taken.value += 1


def test_processes_racing_for_slots_take_exactly_the_limit(tmp_path):
    context = multiprocessing.get_context("spawn")
    slots = Slots.shared(context, 4, ["agent"], str(tmp_path / "admission.lock"))
    start, taken = context.Event(), context.Value("i", 0)
    racers = [context.Process(target=_grab, args=(slots.for_worker(i), start, 20, taken)) for i in range(4)]
    for racer in racers:
        racer.start()
    start.set()
    for racer in racers:
        racer.join(60)
    assert taken.value == 7 and slots.total() == 7
    for row in range(4):  # what the pool does for each worker that died
        slots.clear(row)
    assert slots.total() == 0


async def start_server(config, store: str, *extra: str):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipelines.cli", "serve", str(config), "--transport", "websocket", "--port", "0",
        "--store", store, "--workers", "2", "--connect-timeout", "120", *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, cwd=ROOT,
    )
    line = (await asyncio.wait_for(proc.stdout.readline(), 180)).decode()
    return proc, re.search(r"(http://[\d.]+:\d+)/", line).group(1)


async def stop(*procs) -> None:
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs:
        await asyncio.wait_for(proc.wait(), 30)


async def post_many(http: httpx.AsyncClient, url: str, n: int) -> list[httpx.Response]:
    return await asyncio.gather(*(http.post(f"{url}/sessions") for _ in range(n)))


async def test_two_workers_admit_exactly_max_sessions_under_concurrent_requests(tmp_path):
    config = tmp_path / "memory.yaml"
    config.write_text(AGENT)
    proc, url = await start_server(config, str(tmp_path / "sessions.db"), "--max-sessions", "3")
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            answers = await post_many(http, url, 9)
            admitted = [a for a in answers if a.status_code == 201]
            refused = [a for a in answers if a.status_code == 503]
            assert len(admitted) == 3 and len(refused) == 6
            assert all(a.headers.get("retry-after") for a in refused)
            owners = [(await http.get(f"{url}/sessions/{a.json()['id']}")).json()["owner"] for a in admitted]
            assert all(re.search(r"/w[01]$", owner) for owner in owners)  # admitted by the worker processes

            assert (await http.delete(f"{url}/sessions/{admitted[0].json()['id']}")).status_code == 204
            again = await post_many(http, url, 4)  # one slot is free again: exactly one more
            assert sorted(a.status_code for a in again) == [201, 503, 503, 503]
    finally:
        await stop(proc)


async def test_each_of_two_servers_on_redis_keeps_its_own_limit_exactly(tmp_path, redis_url):
    config = tmp_path / "memory.yaml"
    config.write_text(AGENT)
    (a, a_url), (b, b_url) = await asyncio.gather(
        start_server(config, redis_url, "--max-sessions", "2", "--server-id", "a"),
        start_server(config, redis_url, "--max-sessions", "2", "--server-id", "b"))
    try:
        async with httpx.AsyncClient(timeout=60, follow_redirects=True) as http:
            answers = await post_many(http, a_url, 5) + await post_many(http, b_url, 5)
            assert sorted(r.status_code for r in answers).count(201) == 4
            owners = [(await http.get(f"{a_url}/sessions/{r.json()['id']}")).json()["owner"]
                      for r in answers if r.status_code == 201]
            assert sorted(o.split("/")[0] for o in owners) == ["a", "a", "b", "b"]
            assert all(r.headers.get("retry-after") for r in answers if r.status_code == 503)
    finally:
        await stop(a, b)

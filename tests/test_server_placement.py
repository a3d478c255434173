"""Placement by load level (issue 24, SHEDDING): a new session goes where the level is below SHEDDING and there
is room; to a SHEDDING place only when none has room; to a SESSION_REJECT place never.

Among servers: three real servers on one real redis-server, their levels set through the load monitor's
``feed`` (the test hook the other load-level tests use), published by their heartbeats. Among worker
processes: the front's pool reading the levels the workers report through shared memory (written here as a
worker writes them, ``workers.write_report``), so no process needs to be pushed to SHEDDING for real.
"""

import asyncio
import time

import httpx
from test_server_resume import AGENT

from pipelines.server.app import running
from pipelines.server.load_level import Level
from pipelines.server.options import ServerOptions
from pipelines.server.placement import Place, choose
from pipelines.server.workers import WorkerPool, write_report
from pipelines.validate import load_agent_text


def test_the_rule_prefers_below_shedding_then_shedding_and_never_session_reject():
    normal, shedding, rejecting = Place("n", Level.DEGRADED, 1, (5,)), Place("s", Level.SHEDDING, 9, (0,)), \
        Place("r", Level.SESSION_REJECT, 9, (0,))
    assert choose([shedding, normal, rejecting]) is normal  # below SHEDDING first, however busy
    assert choose([shedding, Place("n", Level.NORMAL, 0, (0,)), rejecting]) is shedding  # no room below: SHEDDING
    assert choose([rejecting, Place("s", Level.SHEDDING, 0, (0,))]) is None  # never SESSION_REJECT
    assert choose([Place("a", Level.NORMAL, 1, (2,)), Place("b", Level.ELEVATED, 1, (1,))]).where == "b"


async def test_the_front_places_on_a_worker_below_shedding_first(tmp_path):
    agent = load_agent_text(AGENT)
    pool = WorkerPool([agent], ServerOptions(store=str(tmp_path / "s.db")), "front", 2)
    try:
        for worker in pool.workers:
            worker.ready.set()
        quiet, busy = pool.workers
        write_report(pool._report, quiet.slot, live=0, level=Level.SHEDDING.value)
        write_report(pool._report, busy.slot, live=5, level=Level.NORMAL.value)
        assert pool.least_loaded() is busy  # the SHEDDING worker is skipped although it has fewer sessions
        write_report(pool._report, busy.slot, level=Level.SHEDDING.value)
        assert pool.least_loaded() is quiet  # both SHEDDING: the one with fewer sessions
        write_report(pool._report, quiet.slot, level=Level.SESSION_REJECT.value)
        assert pool.least_loaded() is busy  # never the SESSION_REJECT one while another takes sessions
    finally:
        await pool.stop()


async def _until(check, what: str) -> None:
    deadline = time.monotonic() + 20
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


async def test_a_full_server_sends_a_new_session_below_shedding_first_then_to_shedding_never_to_reject(redis_url):
    agent = load_agent_text(AGENT)
    servers = dict(store=redis_url, housekeeping_s=0.3)
    async with running(agent, server_id="a", max_sessions=1, **servers) as (a_url, a), \
            running(agent, server_id="b", **servers) as (b_url, b), \
            running(agent, server_id="c", **servers) as (c_url, c), \
            httpx.AsyncClient(base_url=a_url, timeout=30) as http:

        def level_of(server_id: str, level: Level):
            async def published() -> bool:
                return (await a.servers()).get(server_id, {}).get("level") == level.name
            return published

        for server, signals in ((a, {}), (b, {"cpu_share": 1.0}), (c, {})):
            await server.load.stop()  # the test sets the levels from here
            if signals:
                server.load.feed(signals, now=1e6)
                server.load.feed(signals, now=1e6 + 2)
        assert b.load.level == Level.SHEDDING
        await _until(level_of("b", Level.SHEDDING), "b's heartbeat never said SHEDDING")
        await _until(level_of("c", Level.NORMAL), "c never heartbeat")
        assert (await http.post("/sessions")).status_code == 201  # a has room: it keeps its own
        placed = await http.post("/sessions")  # a is full: c (NORMAL), though b (SHEDDING) has as much room
        assert placed.status_code == 307 and placed.headers["location"] == f"{c_url}/sessions?placed=true"
        c.load.feed({"loop_lag_ms": 999}, now=1e6)
        c.load.feed({"loop_lag_ms": 999}, now=1e6 + 2)
        assert c.load.level == Level.SESSION_REJECT
        await _until(level_of("c", Level.SESSION_REJECT), "c's heartbeat never said SESSION_REJECT")
        placed = await http.post("/sessions")  # nobody below SHEDDING has room: b, never c
        assert placed.status_code == 307 and placed.headers["location"] == f"{b_url}/sessions?placed=true"
        b.load.feed({"loop_lag_ms": 999}, now=1e6 + 4)
        b.load.feed({"loop_lag_ms": 999}, now=1e6 + 6)
        await _until(level_of("b", Level.SESSION_REJECT), "b's heartbeat never said SESSION_REJECT")
        refused = await http.post("/sessions")  # nobody takes it: a, full, refuses
        assert refused.status_code == 503 and refused.headers["retry-after"]

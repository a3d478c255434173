"""The session store goes away mid-conversation (issue 21, item 1): nothing acknowledged is lost.

A real redis-server is stopped (SIGTERM, then started again on its port with
its append-only file) or frozen (SIGSTOP, then SIGCONT); a real SQLite file is
locked by another process holding ``BEGIN EXCLUSIVE`` (what a second writer,
a backup or a full disk looks like to SQLite: its writes fail with
"database is locked" after the busy timeout). Tests run as root, where a
read-only chmod stops no write, so the read-only case uses ``PRAGMA
query_only`` on the store's own connection (SQLite then refuses every write
with "attempt to write a readonly database", as for a read-only file). While the store is away the conversation goes on,
the API answers 503 with ``Retry-After`` and a sentence, the write-behind
backlog shows on ``/metrics``; when it returns every completed turn is
stored, in order.
"""

import asyncio
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack

import httpx
import pytest
import websockets
from redis_kit import free_port, redis_server
from test_server_resume import AGENT, say_over_ws, ws_of
from transport_kit import wait_until

from pipelines.client_protocol import messages as cm
from pipelines.server.app import running
from pipelines.sessions.sqlite_store import SQLiteSessionStore
from pipelines.sessions.store import StoreUnavailable
from pipelines.sessions.write_behind import WriteBehind
from pipelines.validate import load_agent_text
from transports.clients.talk import Talker

NAMES = ["ada", "bob", "cy", "dan", "eve"]


def backlog(metrics_text: str) -> float:
    line = next(x for x in metrics_text.splitlines() if x.startswith("framegraph_store_backlog "))
    return float(line.split()[1])


async def assert_api_says_unavailable(http: httpx.AsyncClient, session_id: str, reads: bool) -> None:
    """While the store is away: 503, Retry-After and a sentence, for a create (and a read and a listing)."""
    calls = [("POST", "/sessions")] + [("GET", f"/sessions/{session_id}"), ("GET", "/sessions")] * reads
    for method, path in calls:
        r = await http.request(method, path)
        assert r.status_code == 503, (method, path, r.status_code, r.text)
        assert r.headers["retry-after"].isdigit()
        assert "store is unavailable" in r.json()["detail"]
    if reads:  # a session's WebSocket handshake (its token is checked in the store): 503 too, not 500
        ws_url = f"{str(http.base_url).replace('http', 'ws').rstrip('/')}/sessions/{session_id}/ws?token=x"
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(ws_url)
        assert refused.value.response.status_code == 503


async def talk_through_an_outage(url: str, manager, outage, restore, *, reads_fail: bool = True) -> None:
    """One turn stored, then turns while ``outage()`` lasts, then ``restore()``: all of them stored, in order.

    ``reads_fail``: whether reading fails too (not with a locked SQLite file in WAL mode, which still reads).
    """
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        created = (await http.post("/sessions")).json()
        async with Talker(ws_of(url, created)) as talker:
            await talker.wait_for_message(cm.BOT_READY, timeout=15)
            assert (await say_over_ws(talker, f"my name is {NAMES[0]}")).startswith("Nice")
            await wait_until(lambda: manager.writes.depth == 0, 10, "the first turn stored")
            await outage()
            for name in NAMES[1:]:  # the conversation goes on without the store
                assert (await say_over_ws(talker, f"my name is {name}")).startswith("Nice")
            await wait_until(lambda: manager.writes.waiting(created["id"]) >= 1, 20, "turns queued")
            assert backlog((await http.get("/metrics")).text) >= 1
            await assert_api_says_unavailable(http, created["id"], reads_fail)
            await restore()
            await wait_until(lambda: manager.writes.depth == 0, 60, "the backlog flushed")
            stored = (await http.get(f"/sessions/{created['id']}")).json()
        assert stored["turns"] == len(NAMES), stored
        said = [m["content"] for m in stored["messages"] if m["role"] == "user"]
        assert said == [f"my name is {n}" for n in NAMES], said
        # (A reply may be stored after the next user message: the test talks on before the bot stops speaking.)
        assert sum(m["role"] == "assistant" for m in stored["messages"]) == len(NAMES), stored["messages"]
        assert backlog((await http.get("/metrics")).text) == 0


async def test_redis_stopped_mid_conversation_loses_no_turn(tmp_path):
    folder, port = tmp_path / "redis", free_port()
    folder.mkdir()
    with ExitStack() as stack:
        url = stack.enter_context(redis_server(folder, "--appendonly", "yes", port=port))

        async def stop():
            await asyncio.to_thread(stack.close)  # SIGTERM: redis-server writes its append-only file and exits

        async def start():
            await asyncio.to_thread(lambda: stack.enter_context(
                redis_server(folder, "--appendonly", "yes", port=port)))

        async with running(load_agent_text(AGENT), store=url, grace_s=60) as (base, manager):
            await talk_through_an_outage(base, manager, stop, start)


async def test_redis_frozen_mid_conversation_loses_no_turn_and_applies_each_once(tmp_path):
    folder = tmp_path / "redis"
    folder.mkdir()
    with redis_server(folder) as url:
        pid = int(subprocess.run(["redis-cli", "-u", url, "info", "server"], capture_output=True, text=True)
                  .stdout.split("process_id:")[1].split()[0])

        async def freeze():
            os.kill(pid, signal.SIGSTOP)

        async def thaw():
            os.kill(pid, signal.SIGCONT)

        try:
            async with running(load_agent_text(AGENT), store=url, grace_s=60) as (base, manager):
                await talk_through_an_outage(base, manager, freeze, thaw)
        finally:
            os.kill(pid, signal.SIGCONT)


#: Holds an exclusive lock on a SQLite file (argv[1]) until its stdin closes.
LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
db.execute("ROLLBACK")
"""


async def test_sqlite_locked_by_another_process_mid_conversation_loses_no_turn(tmp_path):
    path = tmp_path / "sessions.db"
    locker = None

    async def lock():
        nonlocal locker
        locker = await asyncio.create_subprocess_exec(sys.executable, "-c", LOCKER, str(path),
                                                      stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert (await asyncio.wait_for(locker.stdout.readline(), 20)).strip() == b"locked"

    async def unlock():
        locker.stdin.close()
        await asyncio.wait_for(locker.wait(), 20)

    try:
        async with running(load_agent_text(AGENT), store=str(path), grace_s=60) as (base, manager):
            await talk_through_an_outage(base, manager, lock, unlock, reads_fail=False)
    finally:
        if locker is not None and locker.returncode is None:
            locker.kill()
            await locker.wait()


async def test_a_read_only_sqlite_file_refuses_writes_as_unavailable_and_queued_writes_flush_after(tmp_path):
    """Read-only through ``PRAGMA query_only`` (root ignores file modes): writes fail as StoreUnavailable."""
    async with SQLiteSessionStore(tmp_path / "s.db") as store:
        session, _ = await store.create(agent="a", owner="o")
        await store._run(lambda db: db.execute("PRAGMA query_only=ON"))
        with pytest.raises(StoreUnavailable, match="readonly"):
            await store.append(session.id, [{"role": "user", "content": "lost?"}])
        assert (await store.get(session.id)).turns == 0  # reading still works
        writes = WriteBehind(first_retry_s=0.05, max_retry_s=0.1)
        for i in range(3):
            await writes.write(session.id, "turn", lambda i=i: store.append(session.id, [{"role": "user", "content": str(i)}]))
        assert writes.waiting(session.id) == 3
        await store._run(lambda db: db.execute("PRAGMA query_only=OFF"))
        deadline = time.monotonic() + 10
        while writes.depth:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        stored = await store.get(session.id)
        assert [m["content"] for m in stored.messages] == ["0", "1", "2"] and stored.turns == 3
        await writes.close()


async def test_a_full_queue_drops_its_oldest_write_and_counts_it():
    from pipelines.sessions.metrics import SessionMetrics

    async def away():
        raise StoreUnavailable("away")

    metrics = SessionMetrics()
    writes = WriteBehind(metrics, per_session=2, first_retry_s=60)
    for _ in range(3):
        await writes.write("s", "turn", away)
    assert writes.waiting("s") == 2
    assert b"framegraph_store_writes_dropped_total 1.0" in metrics.exposition()
    assert b"framegraph_store_backlog 2.0" in metrics.exposition()
    await writes.close(timeout_s=0.1)

"""The program-side WebSocket lifecycle: a dropped session comes back with its id and token, and is told so.

A real ``framegraph serve`` process is stopped (SIGINT: its clients are
told 1012) and started again, then killed (SIGKILL: the connection just
drops) and started again, on the same port and store; the ``Talker`` (what
``framegraph talk`` runs) reconnects by itself with its backoff, the server
says ``session-restored`` with the turn count, and the conversation goes on
with its context. A client whose server never comes back gives up after
its tries; one whose session was deleted does not try at all.
"""

import asyncio
import os
import re
import signal
import sys
import time

import httpx
import pytest
from conftest import ROOT
from test_server_resume import AGENT, say_over_ws, wait_for_turns, ws_of

from pipelines.client_protocol import messages as cm
from pipelines.server.app import running
from pipelines.validate import load_agent_text
from transports.clients.talk import Reconnect, Talker, session_url

FAST = Reconnect(first_s=0.5, max_s=2.0, attempts=30)


async def start_server(config, store: str, port: int = 0, workers: int = 1):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipelines.cli", "serve", str(config), "--transport", "websocket", "--port", str(port),
        "--store", store, "--workers", str(workers), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, cwd=ROOT,
    )
    line = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode()
    return proc, re.search(r"(http://[\d.]+:\d+)/", line).group(1)


def test_the_default_backoff_is_1_to_30_seconds_and_10_tries():
    assert Reconnect().delays() == [1, 2, 4, 8, 16, 30, 30, 30, 30, 30]


async def restored(talker: Talker, after: float) -> dict:
    """The ``session-restored`` server message received after ``after``."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for at, msg in talker.messages:
            data = msg.get("data") or {}
            if at > after and cm.kind_of(msg) == cm.SERVER_MESSAGE and data.get("type") == cm.SESSION_RESTORED:
                return data
        await asyncio.sleep(0.1)
    raise AssertionError(f"no session-restored message; the client: {talker.gave_up or 'still trying'}")


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_talker_resumes_its_session_through_a_server_restart_and_a_crash(tmp_path, workers):
    config = tmp_path / "memory.yaml"
    config.write_text(AGENT)
    store = str(tmp_path / "sessions.db")
    proc, url = await start_server(config, store, workers=workers)
    port = int(url.rsplit(":", 1)[1])
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            created = (await http.post("/sessions")).json()
        async with Talker(ws_of(url, created), reconnect=FAST) as talker:
            await talker.wait_for_message(cm.BOT_READY, timeout=20)
            assert (await say_over_ws(talker, "my name is ada")).startswith("Nice")
            async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                await wait_for_turns(http, created["id"], 1)

            for stop in (signal.SIGINT, signal.SIGKILL):  # a restart (close code 1012), then a crash (no close)
                stopped = time.monotonic()
                proc.send_signal(stop)
                await asyncio.wait_for(proc.wait(), 30)
                proc, _ = await start_server(config, store, port, workers)
                told = await restored(talker, stopped)
                assert told == {"type": "session-restored", "session_id": created["id"], "turns": 1}
                assert not talker.closed and talker.gave_up is None
            assert len(talker.reconnects) == 2 and talker.waits[0] == FAST.first_s
            assert (await say_over_ws(talker, "tell me my name")) == "Your name is ada."
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), 30)


async def test_a_talker_gives_up_after_its_tries_when_the_server_never_comes_back(tmp_path):
    config = tmp_path / "memory.yaml"
    config.write_text(AGENT)
    proc, url = await start_server(config, str(tmp_path / "sessions.db"))
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            created = (await http.post("/sessions")).json()
        talker = Talker(ws_of(url, created), reconnect=Reconnect(first_s=0.05, max_s=0.2, attempts=4))
        async with talker:
            await talker.wait_for_message(cm.BOT_READY, timeout=20)
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
            deadline = time.monotonic() + 30
            while not talker.closed:
                assert time.monotonic() < deadline, "the talker never gave up"
                await asyncio.sleep(0.05)
        assert talker.gave_up == "gave up resuming the session after 4 tries" and talker.waits == [0.05, 0.1, 0.2, 0.2]
        assert talker.reconnects == []
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_deleted_session_is_not_reconnected_and_a_server_url_gets_a_new_session():
    async with running(load_agent_text(AGENT)) as (url, _), httpx.AsyncClient(base_url=url, timeout=10) as http:
        ws = await asyncio.to_thread(session_url, url)  # what `framegraph talk http://...` does first
        session_id = ws.split("/sessions/")[1].split("/")[0]
        async with Talker(ws, reconnect=FAST) as talker:
            await talker.wait_for_message(cm.BOT_READY, timeout=20)
            assert (await http.delete(f"/sessions/{session_id}")).status_code == 204
            deadline = time.monotonic() + 20
            while not talker.closed:
                assert time.monotonic() < deadline, "the talker kept its connection to a deleted session"
                await asyncio.sleep(0.05)
        assert talker.waits == [] and talker.gave_up.startswith("the server closed the session's connection")


async def test_a_server_that_stops_tells_its_websocket_clients_to_come_back():
    talker = Talker("", reconnect=Reconnect(first_s=0.05, max_s=0.05, attempts=2))
    async with running(load_agent_text(AGENT)) as (url, _), httpx.AsyncClient(base_url=url, timeout=10) as http:
        created = (await http.post("/sessions")).json()
        talker.url = ws_of(url, created)
        await talker.__aenter__()
        await talker.wait_for_message(cm.BOT_READY, timeout=20)
    # The server stopped with its client connected (code 1012, not a session's deliberate end): the client tries again.
    deadline = time.monotonic() + 20
    while not talker.closed:
        assert time.monotonic() < deadline, "the talker neither came back nor gave up"
        await asyncio.sleep(0.05)
    # Two tries and no more: nothing resumed on the stopping server (which would have started the count again).
    assert talker.waits == [0.05, 0.05] and talker.gave_up == "gave up resuming the session after 2 tries"
    await talker.close()

"""Several servers on one Redis: placement when one is full, redirects to a session's owner, take-over after a crash.

Two real ``framegraph serve`` processes share a real ``redis-server``. A full
server sends a new session to the other (307); a WebSocket for a session
reached through the wrong server is redirected to its owner; once the owner
is killed (SIGKILL), the other server takes its
session over (nothing listens at the owner's address, so at the first
reconnect, not three heartbeats later) and the conversation goes on with
its context from Redis.
"""

import asyncio
import os
import re
import signal
import sys
import time

import httpx
from conftest import ROOT
from test_server_resume import AGENT, say_over_ws, wait_for_turns, ws_of

from pipelines.client_protocol import messages as cm
from transports.clients.talk import Talker


async def start_server(config, store: str, server_id: str, *extra: str):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipelines.cli", "serve", str(config), "--transport", "websocket", "--port", "0",
        "--store", store, "--workers", "1", "--server-id", server_id, *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, cwd=ROOT,
    )
    line = (await asyncio.wait_for(proc.stdout.readline(), 90)).decode()
    return proc, re.search(r"(http://[\d.]+:\d+)/", line).group(1)


async def test_two_servers_on_redis_place_redirect_and_take_over_a_killed_servers_session(tmp_path, redis_url):
    config = tmp_path / "memory.yaml"
    config.write_text(AGENT)
    (a, a_url), (b, b_url) = await asyncio.gather(
        start_server(config, redis_url, "a", "--max-sessions", "1"), start_server(config, redis_url, "b"))
    try:
        async with httpx.AsyncClient(timeout=20, follow_redirects=True) as http, \
                httpx.AsyncClient(base_url=b_url, timeout=20) as on_b:
            first = (await http.post(f"{a_url}/sessions")).json()
            placed = await http.post(f"{a_url}/sessions")  # a is full: b has room
            assert placed.status_code == 201 and placed.history[0].status_code == 307
            assert str(placed.url).startswith(b_url)
            assert (await http.get(f"{b_url}/sessions/{placed.json()['id']}")).json()["owner"] == "b"
            assert (await http.get(f"{b_url}/sessions/{first['id']}")).json()["owner"] == "a"

            # Through b, the WebSocket is redirected to the session's owner, a.
            async with Talker(ws_of(b_url, first)) as talker:
                await talker.wait_for_message(cm.BOT_READY, timeout=20)
                assert (await say_over_ws(talker, "my name is ada")).startswith("Nice")
                await wait_for_turns(on_b, first["id"], 1)
                os.kill(a.pid, signal.SIGKILL)  # while connected: the store still says ACTIVE, owner a
                await a.wait()

            started = time.monotonic()
            while True:  # b finds nothing listening at a's address and takes the session over at once
                try:
                    back = await Talker(ws_of(b_url, first)).__aenter__()
                    break
                except OSError:
                    assert time.monotonic() - started < 30, "b never took over a's session"
                    await asyncio.sleep(0.5)
            try:
                await back.wait_for_message(cm.BOT_READY, timeout=20)
                assert (await say_over_ws(back, "tell me my name")) == "Your name is ada."
            finally:
                await back.close()
            print(f"resumed on b {time.monotonic() - started:.1f} s after the first reconnect attempt")
            assert (await http.get(f"{b_url}/sessions/{first['id']}")).json()["owner"] == "b"
    finally:
        for proc in (a, b):
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)
                await asyncio.wait_for(proc.wait(), 20)


async def test_only_a_refused_connection_marks_an_owner_dead():
    from pipelines.server.placement import refuses_connections

    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    assert not await refuses_connections(f"http://127.0.0.1:{port}")  # listening: alive, however slow
    server.close()
    await server.wait_closed()
    assert await refuses_connections(f"http://127.0.0.1:{port}/")  # nothing listens: its process died

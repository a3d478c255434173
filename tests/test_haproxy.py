"""HAProxy (Debian's ``haproxy``) in front of two ``framegraph serve`` processes on one real ``redis-server``.

The config is the one ``framegraph deploy haproxy`` writes (deploy/haproxy.cfg is its shipped form,
checked by ``haproxy -c``). Through HAProxy, with a WebSocket client that follows no redirect (as a
browser's): each client's requests reach the server that owns its session (the cookie), a server
killed with SIGKILL has its session resumed on the other with its context (no acknowledged turn
lost) while the other's session goes on, and a server at SESSION_REJECT is drained: no new client
reaches it, its own sessions still do, and it takes new ones again once it recovers.
"""

import asyncio
import csv
import io
import os
import shutil
import signal
import subprocess
import time
from contextlib import asynccontextmanager

import httpx
import websockets
from conftest import ROOT
from redis_kit import free_port
from test_scale_servers import start_server
from test_server_resume import AGENT, say_over_ws, wait_for_turns, ws_of

from pipelines.client_protocol import messages as cm
from pipelines.deploy_command import COOKIE, haproxy_config
from pipelines.server.app import running
from pipelines.server.load_level import Level
from pipelines.validate import load_agent_text
from transports.clients.talk import Talker

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def test_the_shipped_config_is_what_the_generator_writes_and_haproxy_accepts_it():
    shipped = ROOT / "deploy" / "haproxy.cfg"
    assert shipped.read_text() == haproxy_config({"a": "10.0.0.11:8000", "b": "10.0.0.12:8000"}, "0.0.0.0:8080")
    checked = subprocess.run([HAPROXY, "-c", "-f", str(shipped)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_generator_refuses_a_bad_server_in_one_line(tmp_path):
    from pipelines.cli import main

    out = tmp_path / "h.cfg"
    assert main(["deploy", "haproxy", "--servers", "a=10.0.0.1:80", "b c=10.0.0.2:80", "-o", str(out)]) == 2
    assert not out.exists()
    with_key = haproxy_config({"a": "127.0.0.1:1"}, "127.0.0.1:2", api_key_env="FG_KEY")
    assert 'hdr Authorization "Bearer ${FG_KEY}"' in with_key


@asynccontextmanager
async def haproxy_before(servers: dict[str, str], folder, check_every_ms: int = 300):
    """Runs HAProxy with the generated config before ``servers``; yields (its URL, its stats socket)."""
    port, sock = free_port(), folder / "haproxy.sock"
    config = folder / "haproxy.cfg"
    config.write_text(haproxy_config(servers, f"127.0.0.1:{port}", stats_socket=str(sock),
                                     check_every_ms=check_every_ms))
    with open(folder / "haproxy.log", "wb") as log:
        process = await asyncio.create_subprocess_exec(HAPROXY, "-db", "-f", str(config), stdout=log, stderr=log)
    try:
        yield f"http://127.0.0.1:{port}", sock
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), 10)


async def states(sock) -> dict[str, str]:
    """The backend servers' status (UP, DOWN...) by name, from HAProxy's runtime API."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(sock))
    except OSError:
        return {}
    writer.write(b"show stat\n")
    text = (await reader.read()).decode()
    writer.close()
    rows = csv.DictReader(io.StringIO(text.removeprefix("# ")))
    return {r["svname"]: r["status"] for r in rows if r["pxname"] == "framegraph_servers" and r["svname"] != "BACKEND"}


async def until_states(sock, wanted: dict[str, str], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while (seen := await states(sock)) != wanted:
        assert time.monotonic() < deadline, f"HAProxy sees {seen}, not {wanted}"
        await asyncio.sleep(0.2)


def cookie(http: httpx.AsyncClient) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={http.cookies[COOKIE]}"}


async def test_through_haproxy_a_killed_servers_session_resumes_on_the_other_with_its_context(tmp_path, redis_url,
                                                                                            monkeypatch):
    monkeypatch.setattr(websockets.asyncio.client, "MAX_REDIRECTS", 1)  # one try: no redirect followed
    config = tmp_path / "memory.yaml"
    config.write_text(AGENT)
    (a, a_url), (b, b_url) = await asyncio.gather(
        start_server(config, redis_url, "a"), start_server(config, redis_url, "b"))
    clients: dict[str, tuple[httpx.AsyncClient, dict]] = {}
    try:
        servers = {"a": a_url.removeprefix("http://"), "b": b_url.removeprefix("http://")}
        async with haproxy_before(servers, tmp_path) as (lb_url, sock):
            await until_states(sock, {"a": "UP", "b": "UP"})
            for _ in range(8):  # one client (a cookie jar) per session, until each server owns one
                http = httpx.AsyncClient(base_url=lb_url, timeout=30)
                created = (await http.post("/sessions")).json()
                owner = (await http.get(f"/sessions/{created['id']}")).json()["owner"]
                assert http.cookies[COOKIE] == owner  # the cookie names the session's owner
                if owner in clients:
                    await http.aclose()
                else:
                    clients[owner] = (http, created)
                if len(clients) == 2:
                    break
            (on_a, first), (on_b, second) = clients["a"], clients["b"]
            async with Talker(ws_of(lb_url, second), headers=cookie(on_b)) as other:
                await other.wait_for_message(cm.BOT_READY, timeout=30)
                async with Talker(ws_of(lb_url, first), headers=cookie(on_a)) as talker:
                    await talker.wait_for_message(cm.BOT_READY, timeout=30)
                    assert (await say_over_ws(talker, "my name is ada")).startswith("Nice")
                    await wait_for_turns(on_a, first["id"], 1)  # acknowledged: the turn is in Redis
                    os.kill(a.pid, signal.SIGKILL)
                    await a.wait()
                started = time.monotonic()
                while True:  # the same client, with a's cookie, through HAProxy: redispatched to b
                    try:
                        back = await Talker(ws_of(lb_url, first), headers=cookie(on_a)).__aenter__()
                        break
                    except (OSError, websockets.InvalidHandshake) as e:
                        assert time.monotonic() - started < 30, f"never resumed through HAProxy: {e}"
                        await asyncio.sleep(0.5)
                try:
                    await back.wait_for_message(cm.BOT_READY, timeout=30)
                    assert (await say_over_ws(back, "tell me my name")) == "Your name is ada."
                finally:
                    await back.close()
                print(f"resumed through HAProxy {time.monotonic() - started:.1f} s after the first reconnect")
                assert (await say_over_ws(other, "my name is bob")).startswith("Nice")  # b's own session went on
            assert (await on_b.get(f"/sessions/{first['id']}")).json()["owner"] == "b"
            await until_states(sock, {"a": "DOWN", "b": "UP"})
    finally:
        for http, _ in clients.values():
            await http.aclose()
        for proc in (a, b):
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)
                await asyncio.wait_for(proc.wait(), 20)


async def test_haproxy_drains_a_server_at_session_reject_and_takes_it_back_when_it_recovers(tmp_path):
    agent = load_agent_text(AGENT)
    async with running(agent, server_id="a") as (a_url, a), running(agent, server_id="b") as (b_url, b):
        servers = {"a": a_url.removeprefix("http://"), "b": b_url.removeprefix("http://")}
        async with haproxy_before(servers, tmp_path) as (lb_url, sock):
            await until_states(sock, {"a": "UP", "b": "UP"})
            kept = None
            for _ in range(8):
                http = httpx.AsyncClient(base_url=lb_url, timeout=30)
                created = (await http.post("/sessions")).json()
                if http.cookies[COOKIE] == "a":
                    kept = (http, created)
                    break
                await http.aclose()
            assert kept is not None, "HAProxy never placed a session on a"
            on_a, session = kept
            await a.load.stop()  # the test feeds a's measurements from here
            a.load.feed({"loop_lag_ms": 999}, now=1e6)
            a.load.feed({"loop_lag_ms": 999}, now=1e6 + 2)
            assert a.load.level == Level.SESSION_REJECT
            await until_states(sock, {"a": "DOWN", "b": "UP"})  # drained
            for _ in range(4):
                async with httpx.AsyncClient(base_url=lb_url, timeout=30) as new_client:
                    assert (await new_client.post("/sessions")).status_code == 201
                    assert new_client.cookies[COOKIE] == "b"
            # a's own session still reaches a (b's store does not know it: it would refuse it).
            async with Talker(ws_of(lb_url, session), headers=cookie(on_a)) as talker:
                await talker.wait_for_message(cm.BOT_READY, timeout=30)
                assert (await say_over_ws(talker, "my name is ada")).startswith("Nice")
            await on_a.aclose()
            for step in range(1, 5):  # recovery, one level per recover_secs
                a.load.feed({"loop_lag_ms": 1}, now=1e6 + 2 + step * 100)
                a.load.feed({"loop_lag_ms": 1}, now=1e6 + 2 + step * 100 + a.load.settings.recover_secs)
            assert a.load.level == Level.NORMAL
            await until_states(sock, {"a": "UP", "b": "UP"})


async def test_the_browser_page_through_haproxy_resumes_on_the_other_server_after_a_sigkill(tmp_path, redis_url):
    from test_browser_page import fake_microphone

    from transports.clients.chromium import chromium

    config = ROOT / "configs" / "assistant.yaml"
    started = await asyncio.gather(*(start_server(config, redis_url, name, "--transport", "webrtc") for name in "ab"))
    procs = {"a": started[0][0], "b": started[1][0]}
    try:
        servers = {name: url.removeprefix("http://") for name, (_, url) in zip("ab", started, strict=True)}
        async with haproxy_before(servers, tmp_path) as (lb_url, sock), \
                httpx.AsyncClient(base_url=lb_url, timeout=30) as http:
            await until_states(sock, {"a": "UP", "b": "UP"})
            async with chromium(tmp_path / "profile", await fake_microphone(tmp_path / "mic.wav", "hello")) as page:
                await page.call("Page.navigate", url=lb_url)
                await page.wait_for("document.readyState === 'complete' && !!window.framegraph", 30, "page load")
                await page.eval("document.getElementById('connect').click()")
                await page.wait_for("window.framegraph.state === 'connected'", 30, "connected")
                line = await page.wait_for(
                    "(window.framegraph.transcript.find(l => l.who === 'bot') || {}).text", 60, "bot transcript")
                assert line.startswith("Hello!")
                session_id = await page.eval("window.framegraph.session.id")
                await wait_for_turns(http, session_id, 1)  # acknowledged: in Redis
                owner = (await http.get(f"/sessions/{session_id}")).json()["owner"]
                other = "b" if owner == "a" else "a"
                procs[owner].kill()
                await procs[owner].wait()
                # The page reconnects by itself, through HAProxy, with its cookie naming the dead server.
                await page.wait_for("window.framegraph.history.some(h => (h.text || '').includes('reconnecting'))", 30,
                                    "the page noticed")
                await page.wait_for("window.framegraph.state === 'connected'", 60, "resumed")
                assert await page.eval("window.framegraph.session.id") == session_id
                resumed = (await http.get(f"/sessions/{session_id}")).json()
                assert resumed["owner"] == other and resumed["turns"] >= 1
                assert any(m.get("content", "").startswith("Hello!") for m in resumed["messages"])
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)
                await asyncio.wait_for(proc.wait(), 20)

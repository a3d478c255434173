"""Hostile input against the server (issue 11): one regression test per class.

Each test runs a real server on loopback and, where the class is about
stalls, measures that a second, well-behaved client is answered while the
abuse goes on (a static file; the goal is under 200 ms; the asserted bound
leaves room for a loaded 2-core machine).
"""

import asyncio
import os
import statistics
import sys
import time

import httpx
import pytest
import websockets
from transport_kit import wait_until

from pipelines.server.app import running
from pipelines.server.limits import exposure_warning
from pipelines.sessions.model import SessionState
from pipelines.validate import load_agent_text
from processors.tone import tone
from transports.clients.webrtc import WebRTCPeer

RTC = """
version: 1
name: tone
transport: {type: webrtc, port: 0, peer_timeout_secs: 3}
processors:
  bot: {type: tone_reply, reply_secs: 1, stop_ms: 300}
pipeline: [input, bot, output]
"""
WS = RTC.replace("type: webrtc, port: 0, peer_timeout_secs: 3", "type: websocket, port: 0")
#: A static request while abuse runs: median under the 200 ms goal, the slowest under this.
WORST_STATIC_S = 1.0


async def static_latencies(url: str, stop: asyncio.Event) -> list[float]:
    """Fetches the page's style sheet every 50 ms until ``stop``; returns each request's seconds."""
    took = []
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        await http.get("/static/style.css")  # connected and warm before the abuse starts
        while not stop.is_set():
            t = time.monotonic()
            assert (await http.get("/static/style.css")).status_code == 200
            took.append(time.monotonic() - t)
            await asyncio.sleep(0.05)
    return took


#: The attacker: for 2 s, opens the session's WebSocket, sends up to 100,000 junk messages
#: until closed, prints how many it sent and the close code, and comes back (resuming).
FLOOD = """
import sys, time
from websockets.sync.client import connect
from websockets.exceptions import ConnectionClosed
until = time.monotonic() + 2.0
while time.monotonic() < until:
    sent = 0
    with connect(sys.argv[1], max_size=None) as ws:
        try:
            for sent in range(100_000):
                ws.send(b"\\xff junk")
        except ConnectionClosed:
            pass
        try:
            while True:
                ws.recv(timeout=10)
        except ConnectionClosed:
            pass
        print(sent, ws.close_code, flush=True)
    time.sleep(0.3)
"""


def assert_answered(took: list[float]) -> None:
    assert len(took) >= 5, took
    assert statistics.median(took) < 0.2 and max(took) < WORST_STATIC_S, took


def rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


async def test_a_junk_flood_on_a_websocket_is_closed_and_stalls_no_one():
    async with running(load_agent_text(WS), junk_burst=200, junk_per_s=20) as (url, manager), \
            httpx.AsyncClient(base_url=url, timeout=10) as http:
        created = (await http.post("/sessions")).json()
        stop = asyncio.Event()
        watcher = asyncio.create_task(static_latencies(url, stop))
        await asyncio.sleep(0.2)
        ws_url = f"{url.replace('http', 'ws')}/sessions/{created['id']}/ws?token={created['token']}"
        # The attacker is another process, so that its own sending does not share the server's loop.
        attacker = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FLOOD, ws_url, stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(attacker.communicate(), 60)
        floods = [tuple(map(int, line.split())) for line in out.decode().split("\n") if line.strip()]
        stop.set()
        assert floods and all(code == 1008 for _, code in floods), floods
        assert_answered(await watcher)
        sessions = [s for s in manager.sessions.values() if s.id == created["id"]]
        assert all(len(s.events) <= manager.options.kept_events for s in sessions)
        # The server stopped reading long before the 100,000th (the client's count is what its socket took).
        assert max(s.junk.total for s in sessions) < 20_000
        # The session itself is not lost: it waits to be resumed.
        assert (await http.get(f"/sessions/{created['id']}")).json()["state"] == "DISCONNECTED"


async def test_a_junk_offer_is_refused_and_starts_nothing():
    async with running(load_agent_text(RTC)) as (url, manager), httpx.AsyncClient(base_url=url, timeout=10) as http:
        junk = b'{"sdp":"x","type":"offer"}'
        foreign = await http.post("/api/offer", content=junk,
                                  headers={"Content-Type": "text/plain", "Origin": "http://evil.example"})
        assert foreign.status_code == 403
        plain = await http.post("/api/offer", content=junk, headers={"Content-Type": "text/plain"})
        assert plain.status_code == 400
        assert not manager.live
        assert (await http.get("/health")).json()["active"] == 0


async def test_a_session_whose_peer_never_connects_ends_soon():
    async with running(load_agent_text(RTC), connect_timeout_s=1.0) as (url, manager), \
            httpx.AsyncClient(base_url=url, timeout=10) as http:
        idle = (await http.post("/sessions")).json()  # never connects at all
        # A valid offer whose peer never completes the connection (its answer is never applied).
        silent = WebRTCPeer()
        await silent.pc.setLocalDescription(await silent.pc.createOffer())
        answered = await http.post("/api/offer", json={"sdp": silent.pc.localDescription.sdp, "type": "offer"})
        assert answered.status_code == 200
        await wait_until(lambda: not manager.live, 10, "both sessions ending")
        for session in (await http.get("/sessions")).json()["items"]:
            assert session["state"] == SessionState.ENDED, session
        assert idle["id"] in [s["id"] for s in (await http.get("/sessions")).json()["items"]]
        await silent.pc.close()


async def test_admission_is_atomic_five_offers_against_two_slots():
    async with running(load_agent_text(RTC), max_sessions=2) as (url, manager), \
            httpx.AsyncClient(base_url=url, timeout=20) as http:
        peers = [WebRTCPeer() for _ in range(5)]
        for p in peers:
            await p.pc.setLocalDescription(await p.pc.createOffer())
        answers = await asyncio.gather(*(
            http.post("/api/offer", json={"sdp": p.pc.localDescription.sdp, "type": "offer"}) for p in peers))
        assert sorted(a.status_code for a in answers) == [200, 200, 503, 503, 503]
        assert len(manager.live) == 2
        await asyncio.gather(*(p.pc.close() for p in peers))


async def test_bodies_are_refused_on_their_length_and_chunked_ones_read_no_further():
    async with running(load_agent_text(RTC), max_body_bytes=64 * 1024) as (url, manager):
        host, port = url.removeprefix("http://").split(":")
        # Declared 500 MB: refused from the headers alone.
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"POST /api/offer HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {500 * 1024 * 1024}\r\n\r\n".encode())
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 5)
        assert b"413" in status
        writer.close()

        before = rss_mib()
        sent = 0

        async def chunks():
            nonlocal sent
            for _ in range(2000):  # 128 MB if it were all read
                sent += 64 * 1024
                yield b"x" * (64 * 1024)

        async with httpx.AsyncClient(base_url=url, timeout=20) as http:
            try:
                response = await http.post("/api/offer", content=chunks())
                assert response.status_code == 413
            except httpx.HTTPError:
                pass  # the server answered 413 and closed while the upload was still going
        assert sent < 2000 * 64 * 1024 and rss_mib() - before < 64


async def test_listing_many_sessions_does_not_block_anyone():
    async with running(load_agent_text(RTC)) as (url, manager):
        for _ in range(300):
            session, _ = await manager.store.create(agent="tone", owner="x", messages=[
                {"role": "user", "content": "y" * 500}] * 20)
        stop = asyncio.Event()
        watcher = asyncio.create_task(static_latencies(url, stop))
        async with httpx.AsyncClient(base_url=url, timeout=20) as http:
            assert (await http.get("/sessions", params={"limit": 100_000})).status_code == 400  # capped
            until = time.monotonic() + 1.5
            while time.monotonic() < until:
                pages = await asyncio.gather(*(http.get("/sessions", params={"limit": 100}) for _ in range(10)))
                assert all(len(p.json()["items"]) == 100 and "messages" not in p.json()["items"][0] for p in pages)
        stop.set()
        assert_answered(await watcher)


async def test_access_model_hosts_origins_and_slow_clients():
    async with running(load_agent_text(WS), header_timeout_s=1.0) as (url, manager), \
            httpx.AsyncClient(base_url=url, timeout=10) as http:
        assert (await http.get("/health", headers={"Host": "rebound.evil.example"})).status_code == 403
        assert (await http.post("/sessions", headers={"Origin": "http://evil.example"})).status_code == 403
        own = url  # the page's own origin
        assert (await http.post("/sessions", headers={"Origin": own})).status_code == 201
        created = (await http.post("/sessions")).json()
        ws_url = f"{url.replace('http', 'ws')}/sessions/{created['id']}/ws?token={created['token']}"
        with pytest.raises(websockets.InvalidStatus, match="403"):
            async with websockets.connect(ws_url, origin="http://evil.example"):
                pass

        # An idle connection and one whose headers never end are closed by the server.
        host, port = url.removeprefix("http://").split(":")
        for opening in (b"", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(opening)
            started = time.monotonic()
            assert await asyncio.wait_for(reader.read(1024), 10) == b""  # closed, nothing sent
            assert time.monotonic() - started < 5
            writer.close()


def test_listening_beyond_loopback_without_tls_or_key_warns():
    assert exposure_warning("127.0.0.1", tls=False, api_key=False) is None
    assert exposure_warning("localhost", tls=False, api_key=False) is None
    assert "TLS" in exposure_warning("0.0.0.0", tls=False, api_key=True)
    assert "API key" in exposure_warning("192.168.1.5", tls=True, api_key=False)
    assert exposure_warning("0.0.0.0", tls=True, api_key=True) is None


async def test_junk_on_a_webrtc_data_channel_closes_that_connection_only():
    # Waits are bounded and generous (failed once at load 7, every figure at load 7.8 was under 3 s); the peer
    # watchdog (a peer not connected for peer_timeout_secs is dropped) gets 10 s so a loaded loop never trips it:
    # only the junk may close the flooder.
    agent = load_agent_text(RTC.replace("peer_timeout_secs: 3", "peer_timeout_secs: 10, max_message_bytes: 2000"))
    async with running(agent, junk_burst=50, junk_per_s=5) as (url, manager):
        flooder, calm = WebRTCPeer(), WebRTCPeer()
        await flooder.connect(url)
        await calm.connect(url)
        await wait_until(lambda: len(manager.live) == 2 and all(s.state == SessionState.ACTIVE for s in manager.live.values()),
                         30, "both connected")
        (target,) = [s for s in manager.live.values() if s.peer_id == flooder.pc_id]
        (other,) = [s for s in manager.live.values() if s is not target]
        for _ in range(500):
            flooder.send({"label": "rtvi-ai", "type": "client-message", "data": "x" * 3000})  # over max_message_bytes
        await wait_until(lambda: target.id not in manager.live, 30, "the flooding peer's session closing")
        assert len(target.events) <= manager.options.kept_events and target.junk.total < 500
        assert other.id in manager.live and other.state == SessionState.ACTIVE  # closed that connection only
        said = time.monotonic() + calm.say(tone(0.3, 16000, 300, 10000))
        await calm.wait_for_loud(timeout=20, after=said)  # the other participant still talks
        await flooder.close()
        await calm.close()


async def test_bad_text_is_refused_on_the_way_in_and_the_listing_stays_up():
    """A lone surrogate or a control character in a PATCH or persona variables: 400, nothing stored."""
    async with running(load_agent_text(RTC)) as (url, manager), httpx.AsyncClient(base_url=url, timeout=10) as http:
        created = (await http.post("/sessions")).json()
        json_headers = {"Content-Type": "application/json"}
        for body in (b'{"system_prompt": "\\ud800"}', b'{"tts": {"voice": "a\\u0000b"}}',
                     b'{"llm": {"\\udc00": 1}}'):
            r = await http.patch(f"/sessions/{created['id']}", content=body, headers=json_headers)
            assert r.status_code == 400, (body, r.text)
            assert "lone surrogate" in r.json()["detail"] or "control character" in r.json()["detail"]
        r = await http.post("/sessions", content=b'{"variables": {"name": "\\u001b[2J"}}', headers=json_headers)
        assert r.status_code == 400 and "control character" in r.json()["detail"], r.text
        listing = await http.get("/sessions")
        assert listing.status_code == 200 and [s["settings"] for s in listing.json()["items"]] == [{}]
        assert (await http.get(f"/sessions/{created['id']}")).status_code == 200
        # Newlines and tabs pass the text check: the refusal left is this agent's (it has no LLM to prompt).
        ok = await http.patch(f"/sessions/{created['id']}", json={"system_prompt": "Be brief.\n\tThank you."})
        assert ok.status_code == 422 and "no LLM" in ok.json()["detail"], ok.text


async def test_deeply_nested_json_is_a_400_through_the_front_too():
    from pipelines.server.launch import running_workers

    deep = b"[" * 100_000 + b"]" * 100_000
    nested_offer = b'{"sdp": "x", "type": "offer", "pc_id": ' + deep + b"}"
    async with running_workers(load_agent_text(RTC), workers=2) as (url, front), \
            httpx.AsyncClient(base_url=url, timeout=30) as http:
        for path, body in (("/api/offer", nested_offer), ("/api/offer", deep), ("/start", deep),
                           ("/start", b'{"body": ' + deep + b"}"), ("/sessions", deep)):
            r = await http.post(path, content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 400, (path, r.status_code, r.text[:200])


@pytest.mark.parametrize("store", ["redis://127.0.0.1:{port}/0", "{file}/sessions.db", "{tmp}/db-is-a-folder"])
def test_an_unusable_store_at_start_up_is_one_line_and_exit_1(tmp_path, store):
    import subprocess

    from redis_kit import free_port

    agent = tmp_path / "tone.yaml"
    agent.write_text(RTC)
    (tmp_path / "db-is-a-folder").mkdir()
    location = store.format(port=free_port(), file=agent, tmp=tmp_path)
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "serve", str(agent), "--store", location,
                           "--workers", "1", "--port", "0"], capture_output=True, text=True, timeout=120)
    out = (done.stdout + done.stderr).strip()
    assert done.returncode == 1, out
    assert "Traceback" not in out and len(out.splitlines()) == 1, out
    assert out.startswith("error: session store") and ("cannot" in out or "Error" in out), out


async def test_junk_offers_leave_no_session_rows():
    async with running(load_agent_text(RTC)) as (url, manager), httpx.AsyncClient(base_url=url, timeout=10) as http:
        junk = {"sdp": "v=0 junk", "type": "offer"}
        for _ in range(20):
            assert (await http.post("/api/offer", json=junk)).status_code == 400
        started = (await http.post("/start", json={})).json()["sessionId"]
        assert (await http.post(f"/sessions/{started}/api/offer", json=junk)).status_code == 400
        assert not manager.live
        assert (await http.get("/sessions")).json()["items"] == []
        assert (await http.get("/health")).json()["total"] == 0


def client_from(url: str, address: str) -> httpx.AsyncClient:
    """An HTTP client whose connections come from ``address`` (any 127.x.y.z is loopback on Linux)."""
    return httpx.AsyncClient(base_url=url, timeout=10, transport=httpx.AsyncHTTPTransport(local_address=address))


async def test_one_client_cannot_take_every_slot_429_with_retry_after():
    async with running(load_agent_text(WS), max_sessions=16, client_unconnected_sessions=3,
                       client_sessions_per_minute=5, limit_loopback_clients=True) as (url, manager), \
            client_from(url, "127.0.0.2") as greedy, client_from(url, "127.0.0.3") as good:
        tries = await asyncio.gather(*(greedy.post("/sessions") for _ in range(16)))
        codes = sorted(r.status_code for r in tries)
        assert codes == [201] * 3 + [429] * 13, codes
        refused = next(r for r in tries if r.status_code == 429)
        assert refused.headers["retry-after"].isdigit() and "waiting for their connection" in refused.json()["detail"]
        for _ in range(5):  # the other client is served, every time
            made = await good.post("/sessions")
            assert made.status_code == 201, made.text
            assert (await good.delete(f"/sessions/{made.json()['id']}")).status_code == 204
        # Its own per-minute limit: the sixth in a minute is refused, with when to come back.
        sixth = await good.post("/sessions")
        assert sixth.status_code == 429 and 1 <= int(sixth.headers["retry-after"]) <= 61, sixth.text
        assert "in the last minute" in sixth.json()["detail"]
        # Another route that creates sessions counts too.
        assert (await greedy.post("/start", json={})).status_code == 429


async def test_refused_messages_are_logged_as_one_summary_line_per_interval_not_one_each():
    """JSON-mode junk (not JSON, not RTVI) is refused, counted and summarized, and the flood is closed."""
    from loguru import logger

    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), format="{message}", level="INFO")
    try:
        async with running(load_agent_text(WS), junk_burst=300, junk_per_s=10) as (url, manager), \
                httpx.AsyncClient(base_url=url, timeout=10) as http:
            created = (await http.post("/sessions")).json()
            ws_url = f"{url.replace('http', 'ws')}/sessions/{created['id']}/ws?token={created['token']}"
            async with websockets.connect(ws_url) as ws:
                await ws.send('{"label": "rtvi-ai", "type": "client-ready", "id": "1", "data": {}}')
                try:
                    for i in range(2000):
                        await ws.send("not json" if i % 2 else '{"label": "other"}')
                    await asyncio.wait_for(ws.wait_closed(), 20)
                except websockets.ConnectionClosed:
                    pass
                assert ws.close_code == 1008
    finally:
        logger.remove(sink)
    about_refusals = [line for line in lines if "refused" in line]
    assert 1 <= len(about_refusals) <= 5, about_refusals[:10]
    assert not any("EvalSerializer" in line for line in lines)

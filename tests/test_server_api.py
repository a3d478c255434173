"""The server's REST API end to end on loopback: httpx, a real aiortc peer, a WebSocket client.

One server runs two tone agents (``tone_reply``: loud input is speech, the
bot answers with a tone), one over WebRTC and one over WebSocket, chosen by
name at ``POST /sessions``: no speech models, seconds per test.
"""

import asyncio
import time

import httpx
from transport_kit import wait_until

from pipelines.client_protocol import messages as cm
from pipelines.server.app import running
from pipelines.sessions.model import SessionState
from pipelines.validate import load_agent_text
from processors.tone import tone
from transports.clients.talk import Talker
from transports.clients.webrtc import WebRTCPeer

RTC = """
version: 1
name: tone-rtc
transport: {type: webrtc, port: 0, peer_timeout_secs: 3}
processors:
  bot: {type: tone_reply, reply_secs: 1, stop_ms: 300}
pipeline: [input, bot, output]
"""
WS = RTC.replace("tone-rtc", "tone-ws").replace("type: webrtc, port: 0, peer_timeout_secs: 3",
                                                 "type: websocket, port: 0")

SPEECH = tone(0.3, 16000, 300, 10000)
SILENCE = bytes(int(16000 * 0.4) * 2)


def agents():
    return [load_agent_text(RTC), load_agent_text(WS)]


def offer_to(http: httpx.AsyncClient, path: str, token: str | None = None):
    """A WebRTCPeer signal function posting to ``path`` (with the session token as a bearer)."""

    async def signal(offer: dict) -> dict:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await http.post(path, json=offer, headers=headers)
        response.raise_for_status()
        return response.json()

    return signal


async def test_create_list_offer_websocket_delete():
    async with running(agents()) as (url, manager), httpx.AsyncClient(base_url=url, timeout=10) as http:
        rtc = (await http.post("/sessions", json={"agent": "tone-rtc"})).json()
        assert rtc["signalling"] == "sdp-offer" and len(rtc["token"]) > 30
        ws = await http.post("/sessions", json={"agent": "tone-ws"})
        assert ws.status_code == 201 and ws.json()["signalling"] == "socket"
        ws = ws.json()
        assert (await http.post("/sessions", json={"agent": "nobody"})).status_code == 422

        # WebRTC: the offer with the session's token, trickled ICE to /ice, the agent answers.
        peer = WebRTCPeer()
        await peer.connect_with(offer_to(http, f"/sessions/{rtc['id']}/offer", rtc["token"]))
        ice = await http.patch(f"/sessions/{rtc['id']}/ice", json={"pc_id": peer.pc_id, "candidates": []},
                               headers={"Authorization": f"Bearer {rtc['token']}"})
        assert ice.status_code == 200
        said = time.monotonic() + peer.say(SPEECH)
        await peer.wait_for_loud(timeout=5, after=said)

        # WebSocket: the token as a query parameter.
        async with Talker(f"{url.replace('http', 'ws')}/sessions/{ws['id']}/ws?token={ws['token']}") as talker:
            await talker.wait_for_message(cm.BOT_READY, timeout=10)
            said = time.monotonic()
            await talker.stream(SPEECH + SILENCE)
            await talker.wait_for_message(cm.BOT_STARTED_SPEAKING, timeout=5, after=said)
            listed = (await http.get("/sessions", params={"state": "ACTIVE"})).json()
            assert {s["id"] for s in listed["items"]} == {rtc["id"], ws["id"]}
            health = (await http.get("/health")).json()
            assert health["active"] == 2 and health["store_ok"] is True
            assert (await http.delete(f"/sessions/{ws['id']}")).status_code == 204
            await wait_until(lambda: talker.closed, 10, "the deleted session's connection closing")
        assert (await http.get(f"/sessions/{ws['id']}")).json()["state"] == SessionState.ENDED

        # Paging: one at a time, every session once.
        seen, cursor = [], None
        while True:
            page = (await http.get("/sessions", params={"limit": 1} | ({"cursor": cursor} if cursor else {}))).json()
            seen += [s["id"] for s in page["items"]]
            if not (cursor := page["next_cursor"]):
                break
        assert sorted(seen) == sorted([rtc["id"], ws["id"]])
        assert b"framegraph_sessions" in (await http.get("/metrics")).content
        await peer.close()


async def test_past_max_sessions_503_with_retry_after_and_running_ones_undisturbed():
    async with running(agents(), max_sessions=1) as (url, _), httpx.AsyncClient(base_url=url, timeout=10) as http:
        first = (await http.post("/sessions", json={"agent": "tone-ws"})).json()
        refused = await http.post("/sessions", json={"agent": "tone-ws"})
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) > 0
        async with Talker(f"{url.replace('http', 'ws')}/sessions/{first['id']}/ws?token={first['token']}") as talker:
            await talker.wait_for_message(cm.BOT_READY, timeout=10)
            assert (await http.post("/start", json={"body": {"agent": "tone-rtc"}})).status_code == 503
            said = time.monotonic()
            await talker.stream(SPEECH + SILENCE)
            await talker.wait_for_message(cm.BOT_STARTED_SPEAKING, timeout=5, after=said)


async def test_api_key_guards_the_api_and_docs_and_the_token_guards_media():
    key = "k" * 40
    async with running(agents(), api_key=key) as (url, _), httpx.AsyncClient(base_url=url, timeout=10) as http:
        for path in ("/sessions", "/health", "/metrics", "/openapi.json", "/docs"):
            assert (await http.get(path)).status_code == 401, path
        assert (await http.get("/sessions", headers={"Authorization": "Bearer wrong"})).status_code == 401
        auth = {"Authorization": f"Bearer {key}"}
        assert (await http.get("/openapi.json", headers=auth)).json()["paths"]["/sessions"]
        created = (await http.post("/sessions", json={"agent": "tone-ws"}, headers=auth)).json()
        ws_url = f"{url.replace('http', 'ws')}/sessions/{created['id']}/ws"
        for bad in ("", "?token=wrong", f"?token={key}"):
            talker = Talker(ws_url + bad)
            try:
                await talker.__aenter__()
                await wait_until(lambda: talker.closed, 5, "refusal")
            except Exception as e:  # refused before the upgrade: HTTP 403
                assert "403" in str(e)
        async with Talker(f"{ws_url}?token={created['token']}") as talker:
            await talker.wait_for_message(cm.BOT_READY, timeout=10)


async def test_pipecat_runner_protocol_start_then_offer_connects_and_talks():
    async with running(load_agent_text(RTC)) as (url, manager), httpx.AsyncClient(base_url=url, timeout=10) as http:
        started = await http.post("/start", json={"transport": "webrtc", "body": {}})
        session_id = started.json()["sessionId"]
        peer = WebRTCPeer()
        await peer.connect_with(offer_to(http, f"/sessions/{session_id}/api/offer"))
        said = time.monotonic() + peer.say(SPEECH)
        await peer.wait_for_loud(timeout=5, after=said)
        # The open offer was for the first connection only: a second one needs the token.
        again = await http.post(f"/sessions/{session_id}/api/offer", json={"sdp": "v=0", "type": "offer"})
        assert again.status_code == 404
        await peer.close()
        await wait_until(lambda: not manager.live, 10, "the session's end")


async def test_framegraph_serve_runs_several_files_each_on_its_own_transport(tmp_path):
    import re
    import signal
    import subprocess
    import sys

    from conftest import ROOT

    (tmp_path / "rtc.yaml").write_text(RTC)
    (tmp_path / "ws.yaml").write_text(WS)
    cli = [sys.executable, "-m", "pipelines.cli", "serve"]
    wrong = subprocess.run([*cli, str(tmp_path / "ws.yaml"), "--transport", "carrier-pigeon"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 1 and "carrier-pigeon" in wrong.stdout and "Traceback" not in wrong.stderr
    proc = await asyncio.create_subprocess_exec(
        *cli, str(tmp_path / "rtc.yaml"), str(tmp_path / "ws.yaml"), "--port", "0",
        "--store", str(tmp_path / "s.db"), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, cwd=ROOT)
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        url = re.search(r"(http://[\d.]+:\d+)/", line).group(1)
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            kinds = {name: (await http.post("/sessions", json={"agent": name})).json()["signalling"]
                     for name in ("tone-rtc", "tone-ws")}
            assert kinds == {"tone-rtc": "sdp-offer", "tone-ws": "socket"}
            assert (await http.post("/sessions")).status_code == 422  # which one? the server runs two
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 20)

"""Resume: a dropped conversation goes on with its context, over WebSocket and WebRTC, after a crash too.

The agent remembers a name through its LLM context (a scripted ``recall``
rule answers "tell me my name" from an earlier user turn), so a reply after
a resume proves the earlier turns came back. Speech is espeak-ng heard by
pocketsphinx with a phrase list.
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
from pipecat.frames.frames import TranscriptionFrame
from pipecat.serializers.protobuf import ProtobufFrameSerializer
from pipecat.utils.time import time_now_iso8601
from transport_kit import wait_until

from pipelines.client_protocol import messages as cm
from pipelines.server.app import running
from pipelines.sessions.model import SessionState
from pipelines.validate import load_agent_text
from transports.clients.talk import Talker
from transports.clients.webrtc import WebRTCPeer

AGENT = r"""
version: 1
name: memory
transport: {type: websocket, port: 0}
context: {type: llm_context, system_prompt: You remember names.}
processors:
  llm:
    type: scripted
    rules:
      - {match: "tell me my name", recall: "my name is (\\w+)", reply: "Your name is \\1."}
      - {match: "my name is", reply: "Nice to meet you."}
      - {match: "story", reply: "Once upon a time a small robot learned to speak, and it talked all day long to everyone it met."}
    fallback: "I do not know your name."
    token_delay_ms: 0
  tts: {type: espeak, voice: en-us, rate: 175}
pipeline: [input, user_context, llm, tts, output, assistant_context]
"""


def ws_of(url: str, created: dict) -> str:
    return f"{url.replace('http', 'ws')}/sessions/{created['id']}/ws?token={created['token']}"


def transcript(text: str) -> TranscriptionFrame:
    return TranscriptionFrame(text, "user", time_now_iso8601(), finalized=True)


async def send_transcript(talker: Talker, text: str) -> None:
    """Sends ``text`` as the user's transcript (pipecat protobuf)."""
    await talker.send_raw(await ProtobufFrameSerializer().serialize(transcript(text)))


async def say_over_ws(talker: Talker, text: str) -> str:
    """Sends ``text`` as the user's transcript; returns the text of the bot's reply."""
    asked = time.monotonic()
    await send_transcript(talker, text)
    return (await talker.wait_for_message(cm.BOT_TTS_TEXT, timeout=20, after=asked))["data"]["text"]


async def turns(http: httpx.AsyncClient, session_id: str) -> int:
    return (await http.get(f"/sessions/{session_id}")).json()["turns"]


async def wait_for_turns(http, session_id: str, n: int) -> None:
    deadline = time.monotonic() + 20
    while await turns(http, session_id) < n:
        assert time.monotonic() < deadline, f"turn {n} was not stored"
        await asyncio.sleep(0.1)


async def test_resume_over_websocket_keeps_the_context_and_refuses_wrong_tokens():
    name, ask = "my name is ada", "tell me my name"
    async with running(load_agent_text(AGENT), grace_s=60) as (url, manager), \
            httpx.AsyncClient(base_url=url, timeout=10) as http:
        created = (await http.post("/sessions")).json()
        talker = Talker(ws_of(url, created))
        await talker.__aenter__()
        await talker.wait_for_message(cm.BOT_READY, timeout=15)
        assert (await say_over_ws(talker, name)).startswith("Nice")
        await wait_for_turns(http, created["id"], 1)
        talker._ws.transport.abort()  # the network drops: no close frame
        await wait_until(lambda: not manager.live, 15, "the dropped session's worker end")
        assert (await http.get(f"/sessions/{created['id']}")).json()["state"] == "DISCONNECTED"

        # The turn's latency went to the store and the metrics.
        stored = (await http.get(f"/sessions/{created['id']}")).json()
        assert 0 < stored["latencies"]["speech_end_to_first_audio_s"] < 10
        assert b'framegraph_speech_end_to_first_audio_seconds_count{agent="memory"} 1.0' in (
            await http.get("/metrics")).content

        wrong = Talker(ws_of(url, created | {"token": "x" * 43}))
        with pytest.raises(Exception, match="403"):
            await wrong.__aenter__()
        async with Talker(ws_of(url, created)) as back:
            await back.wait_for_message(cm.BOT_READY, timeout=15)
            assert (await say_over_ws(back, ask)) == "Your name is ada."
        await talker.close()


def offer_signal(http, created: dict):
    """Signalling for a ``WebRTCPeer``: its offer to the session's ``/offer`` with the session's token."""

    async def send(offer):
        r = await http.post(f"/sessions/{created['id']}/offer", json=offer,
                            headers={"Authorization": f"Bearer {created['token']}"})
        r.raise_for_status()
        return r.json()

    return send


async def test_resume_over_webrtc_after_the_peer_vanishes():
    name, ask = "my name is ada", "tell me my name"
    agent = load_agent_text(AGENT.replace("type: websocket, port: 0", "type: webrtc, port: 0, peer_timeout_secs: 3"))
    async with running(agent) as (url, manager), httpx.AsyncClient(base_url=url, timeout=10) as http:
        created = (await http.post("/sessions")).json()
        peer = WebRTCPeer()
        await peer.connect_with(offer_signal(http, created))
        await wait_until(lambda: manager.live[created["id"]].state == SessionState.ACTIVE, 10, "connected")
        asked = time.monotonic()
        await manager.live[created["id"]].worker.queue_frame(transcript(name))
        assert (await peer.wait_for_message(cm.BOT_TTS_TEXT, 20, after=asked))["data"]["text"].startswith("Nice")
        await wait_for_turns(http, created["id"], 1)
        peer.vanish()
        back = WebRTCPeer()
        await back.connect_with(offer_signal(http, created))  # the token takes the session over from the vanished peer
        await wait_until(lambda: manager.live[created["id"]].state == SessionState.ACTIVE, 10, "connected")
        asked = time.monotonic()
        await manager.live[created["id"]].worker.queue_frame(transcript(ask))
        reply = await back.wait_for_message(cm.BOT_TTS_TEXT, 20, after=asked)
        assert reply["data"]["text"] == "Your name is ada."
        await back.close()
        await peer.close()


async def test_an_expired_grace_period_refuses_the_resume_and_reveals_nothing():
    agent = load_agent_text(AGENT)
    async with running(agent, grace_s=0.3, housekeeping_s=0.1) as (url, manager), \
            httpx.AsyncClient(base_url=url, timeout=10) as http:
        created = (await http.post("/sessions")).json()
        async with Talker(ws_of(url, created)) as talker:
            await talker.wait_for_message(cm.BOT_READY, timeout=15)
        await wait_until(lambda: not manager.live, 10, "worker end")
        deadline = time.monotonic() + 10
        while (await http.get(f"/sessions/{created['id']}")).json()["state"] != "ENDED":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        offer = {"sdp": "v=0", "type": "offer"}
        expired = await http.post(f"/sessions/{created['id']}/offer", json=offer,
                                  headers={"Authorization": f"Bearer {created['token']}"})
        unknown = await http.post(f"/sessions/{'0' * 32}/offer", json=offer,
                                  headers={"Authorization": f"Bearer {created['token']}"})
        assert expired.status_code == unknown.status_code == 404 and expired.json() == unknown.json()


async def test_a_system_prompt_change_mid_reply_waits_for_the_reply_end():
    async with running(load_agent_text(AGENT)) as (url, manager), httpx.AsyncClient(base_url=url, timeout=10) as http:
        created = (await http.post("/sessions")).json()
        async with Talker(ws_of(url, created)) as talker:
            await talker.wait_for_message(cm.BOT_READY, timeout=15)
            asked = time.monotonic()
            await send_transcript(talker, "tell me a story")
            await talker.wait_for_message(cm.BOT_STARTED_SPEAKING, timeout=20, after=asked)
            changed = await http.patch(f"/sessions/{created['id']}", json={"system_prompt": "Be brief."})
            assert changed.json()["held"] is True and changed.json()["pending"] == [changed.json()["change_id"]]
            context = manager.live[created["id"]].built.llm_context
            assert context.get_messages()[0]["content"] == "You remember names."  # not mid-reply
            await talker.wait_for_message(cm.BOT_STOPPED_SPEAKING, timeout=30, after=asked)
            await wait_until(lambda: context.get_messages()[0]["content"] == "Be brief.", 5, "the held change")
            told = await talker.wait_for_message("server-message", timeout=5, after=asked)
            assert told["data"]["type"] == "settings-applied" and told["data"]["held"] is True
            assert told["data"]["change"] == {"system_prompt": "Be brief."}
            stored = (await http.get(f"/sessions/{created['id']}")).json()["settings"]
            assert stored["system_prompt"] == "Be brief." and "pending" not in stored
            assert [a["id"] for a in stored["applied"]] == told["data"]["change_ids"] == [changed.json()["change_id"]]
            events = [e["event"] for e in manager.live[created["id"]].events]
            assert "settings-applied" in events


async def start_server(config, store: str, port: int = 0):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipelines.cli", "serve", str(config), "--transport", "websocket",
        "--port", str(port), "--store", store, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        cwd=ROOT,
    )
    line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
    url = re.search(r"(http://[\d.]+:\d+)/", line).group(1)
    return proc, url


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_sigkill_and_restart_every_session_resumes_with_its_context(backend, tmp_path, request):
    name, ask = "my name is ada", "tell me my name"
    config = tmp_path / "memory.yaml"
    config.write_text(AGENT)
    store = str(tmp_path / "sessions.db") if backend == "sqlite" else request.getfixturevalue("redis_url")
    proc, url = await start_server(config, store)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            created = (await http.post("/sessions")).json()
            async with Talker(ws_of(url, created)) as talker:
                await talker.wait_for_message(cm.BOT_READY, timeout=20)
                assert (await say_over_ws(talker, name)).startswith("Nice")
                await wait_for_turns(http, created["id"], 1)
                os.kill(proc.pid, signal.SIGKILL)
                await proc.wait()
        port = int(url.rsplit(":", 1)[1])
        proc, url = await start_server(config, store, port)
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            assert (await http.get(f"/sessions/{created['id']}")).json()["state"] == "DISCONNECTED"
            async with Talker(ws_of(url, created)) as back:
                await back.wait_for_message(cm.BOT_READY, timeout=20)
                assert (await say_over_ws(back, ask)) == "Your name is ada."
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), 20)

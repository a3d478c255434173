"""Worker processes (``serve --workers N``): placement on two processes, WebSockets through the front, a killed worker.

Sessions are placed on the least-loaded worker, each a process of its own;
a WebSocket session talks end to end through the front process; a worker
killed with SIGKILL is started again and its session, DISCONNECTED as
after a crash, resumes with its context (the scripted LLM recalls a name
from an earlier turn).
"""

import asyncio
import os
import signal

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_server_resume import AGENT, offer_signal, say_over_ws, wait_for_turns, ws_of
from transport_kit import wait_until

from pipelines.client_protocol import messages as cm
from pipelines.server.launch import running_workers
from pipelines.validate import load_agent_text
from transports.clients.talk import Talker
from transports.clients.webrtc import WebRTCPeer


async def metric_total(http: httpx.AsyncClient, name: str) -> float:
    text = (await http.get("/metrics")).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples if sample.name == name)


async def wait_for_metric(http: httpx.AsyncClient, name: str, value: float) -> None:
    for _ in range(50):
        if await metric_total(http, name) == value:
            return
        await asyncio.sleep(0.2)
    assert await metric_total(http, name) == value


async def test_sessions_on_two_workers_talk_through_the_front_and_survive_a_killed_worker():
    async with running_workers(load_agent_text(AGENT), workers=2, grace_s=60) as (url, front), \
            httpx.AsyncClient(base_url=url, timeout=20) as http:
        pids = {w.pid for w in front.pool.workers}
        assert len(pids) == 2 and os.getpid() not in pids

        first = (await http.post("/sessions")).json()
        second = (await http.post("/sessions")).json()
        wrong = Talker(ws_of(url, first | {"token": "x" * 43}))
        with pytest.raises(Exception, match="403"):  # refused by the worker, as by one process
            await wrong.__aenter__()
        assert (await http.get("/sessions/" + "0" * 32)).status_code == 404
        owners = [(await http.get(f"/sessions/{s['id']}")).json()["owner"] for s in (first, second)]
        workers = [front.pool.owning(o) for o in owners]
        assert None not in workers and workers[0].pid != workers[1].pid, owners

        async with Talker(ws_of(url, first)) as one, Talker(ws_of(url, second)) as two:
            await one.wait_for_message(cm.BOT_READY, timeout=20)
            await two.wait_for_message(cm.BOT_READY, timeout=20)
            assert (await say_over_ws(one, "my name is ada")).startswith("Nice")
            assert (await say_over_ws(two, "my name is bob")).startswith("Nice")
            await wait_for_turns(http, first["id"], 1)
            await wait_until(lambda: front.pool.live(workers[0]) == 1 and front.pool.live(workers[1]) == 1,
                             10, "each worker reports its live session")
            # /metrics, answered by one worker, counts both workers' turns
            await wait_for_metric(http, "framegraph_turns_total", 2)

            killed = workers[0]
            old_pid = killed.pid
            os.kill(old_pid, signal.SIGKILL)
            await wait_until(lambda: killed.restarts == 1 and killed.ready.is_set(), 60, "the worker's replacement")
            assert killed.pid != old_pid
            assert (await http.get(f"/sessions/{first['id']}")).json()["state"] == "DISCONNECTED"
            # The other worker's session went on meanwhile.
            assert (await say_over_ws(two, "tell me my name")) == "Your name is bob."

        async with Talker(ws_of(url, first)) as back:
            await back.wait_for_message(cm.BOT_READY, timeout=20)
            assert (await say_over_ws(back, "tell me my name")) == "Your name is ada."
        await wait_for_metric(http, "framegraph_turns_total", 4)  # the killed worker's turn still counts
        assert (await http.get(f"/sessions/{first['id']}")).json()["owner"] == killed.server_id



async def test_a_webrtc_session_signals_through_the_front_and_its_media_reaches_the_worker():
    agent = load_agent_text(AGENT.replace("type: websocket, port: 0", "type: webrtc, port: 0"))
    async with running_workers(agent, workers=2) as (url, front), \
            httpx.AsyncClient(base_url=url, timeout=20) as http:
        created = (await http.post("/sessions")).json()
        peer = WebRTCPeer()
        try:
            await peer.connect_with(offer_signal(http, created))
            await peer.wait_for_message(cm.BOT_READY, 20)  # over the data channel, straight from the worker
            owner = front.pool.owning((await http.get(f"/sessions/{created['id']}")).json()["owner"])
            await wait_until(lambda: front.pool.live(owner) == 1, 10, "the owning worker reports the session")
        finally:
            await peer.close()

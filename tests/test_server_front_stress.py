"""The ``--workers`` front under a stream of mixed requests (issue 21, item 10): no request fails.

The front proxies over keep-alive connections to its workers. A worker
closes an idle one after ``keep_alive_s``; a front that reused it at that
moment got ``ReadError`` and answered 503 "the worker did not answer". Here
``keep_alive_s`` is short and the clients pause around it between requests,
so that moment comes hundreds of times: every answer must be the route's own.
"""

import asyncio
import random

import httpx
from test_server_hostile import RTC

from pipelines.server.launch import running_workers
from pipelines.validate import load_agent_text

REQUESTS = 1000
CLIENTS = 10  # each pauses about KEEP_ALIVE_S after each request: more clients, less waiting
KEEP_ALIVE_S = 0.1


async def client(url: str, n: int, seed: int, statuses: list[tuple[str, int]]) -> None:
    """``n`` mixed requests on one keep-alive client, with pauses around the workers' keep-alive time."""
    rng = random.Random(seed)
    # The client drops its own idle connections to the front early: the race tested is the front's with its workers.
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(keepalive_expiry=KEEP_ALIVE_S / 3)) as http:
        mine: list[str] = []
        for _ in range(n):
            kind = rng.choice(["create", "get", "list", "health", "static", "metrics", "delete", "junk"])
            if kind == "create":
                r = await http.post("/sessions")
                if r.status_code == 201:
                    mine.append(r.json()["id"])
            elif kind == "get" and mine:
                r = await http.get(f"/sessions/{rng.choice(mine)}")
            elif kind == "delete" and mine:
                r = await http.delete(f"/sessions/{mine.pop()}")
            elif kind == "junk":
                r = await http.post("/api/offer", content=b'{"sdp": "x", "type": "offer"}')
            elif kind == "static":
                r = await http.get("/static/style.css")
            elif kind == "metrics":
                r = await http.get("/metrics")
            elif kind == "health":
                r = await http.get("/health")
            else:
                r = await http.get("/sessions", params={"limit": 5})
            statuses.append((f"{r.request.method} {r.request.url.path}", r.status_code))
            await asyncio.sleep(rng.uniform(0.95, 1.05) * KEEP_ALIVE_S)


async def test_a_thousand_mixed_requests_through_the_front_all_get_their_routes_answer():
    async with running_workers(load_agent_text(RTC), workers=2, keep_alive_s=KEEP_ALIVE_S, max_sessions=10_000,
                               connect_timeout_s=2.0) as (url, front):
        statuses: list[tuple[str, int]] = []
        await asyncio.gather(*(client(url, REQUESTS // CLIENTS, seed, statuses) for seed in range(CLIENTS)))
    assert len(statuses) == REQUESTS
    failed = [s for s in statuses if s[1] >= 500]
    assert not failed, f"{len(failed)} of {REQUESTS} failed: {failed[:10]}"
    # Only the statuses each route gives: junk offers 400, the rest succeed.
    assert {code for _, code in statuses} <= {200, 201, 204, 400}, sorted(set(statuses))


async def test_client_limits_see_the_clients_own_address_through_the_front():
    from test_server_hostile import client_from

    async with running_workers(load_agent_text(RTC), workers=2, client_unconnected_sessions=2,
                               limit_loopback_clients=True) as (url, front), \
            client_from(url, "127.0.0.2") as greedy, client_from(url, "127.0.0.3") as good:
        codes = sorted([(await greedy.post("/sessions")).status_code for _ in range(10)])
        # Each worker counts its own: at most 2 per worker, then 429 (the front's own address is not the client's).
        assert codes.count(201) <= 4 and codes.count(429) >= 6, codes
        assert (await good.post("/sessions")).status_code == 201

"""What only the Redis store has: the registry of servers and their heartbeats (for several servers on one Redis)."""

import asyncio

from pipelines.sessions.model import SessionState
from pipelines.sessions.redis_store import RedisSessionStore


async def test_heartbeats_tell_live_servers_from_stale_ones_whose_sessions_others_recover(redis_url):
    async with RedisSessionStore(redis_url) as a, RedisSessionStore(redis_url) as b:
        await a.heartbeat("srv-a", {"url": "http://127.0.0.1:1"}, ttl_s=5)
        await b.heartbeat("srv-b", {"url": "http://127.0.0.1:2"}, ttl_s=5)
        live = await b.live_servers(max_age_s=5)
        assert live == {"srv-a": {"id": "srv-a", "url": "http://127.0.0.1:1"}, "srv-b": {"id": "srv-b", "url": "http://127.0.0.1:2"}}
        session, _ = await a.create(agent="x", owner="srv-a")
        await a.set_state(session.id, SessionState.ACTIVE)

        await asyncio.sleep(0.4)  # srv-a stops beating; srv-b goes on
        await b.heartbeat("srv-b", ttl_s=5)
        assert list(await b.live_servers(max_age_s=0.3)) == ["srv-b"]
        assert await b.stale_servers(max_age_s=0.3) == ["srv-a"]

        assert await b.recover(owner="srv-a") == [session.id]
        resumed = await b.set_state(session.id, SessionState.ACTIVE, owner="srv-b")
        assert resumed.owner == "srv-b"
        assert await b.recover(owner="srv-a") == []  # it left srv-a's set when srv-b took it over
        await b.forget_server("srv-a")
        assert await b.stale_servers(max_age_s=0.3) == []
        assert list(await b.live_servers(max_age_s=5)) == ["srv-b"]


async def test_a_server_entry_lapses_with_its_ttl(redis_url):
    async with RedisSessionStore(redis_url) as store:
        await store.heartbeat("srv-a", ttl_s=0.2)
        await asyncio.sleep(0.4)
        assert await store.live_servers(max_age_s=60) == {}  # in the zset still, but its info key lapsed

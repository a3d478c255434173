"""The housekeeper on real stores: expiry, the sessions gauge, the heartbeat, and a store outage it survives."""

import asyncio

from redis_kit import redis_server
from test_sessions_metrics import samples

from pipelines.sessions.housekeeping import Housekeeper
from pipelines.sessions.metrics import SessionMetrics
from pipelines.sessions.model import SessionState
from pipelines.sessions.redis_store import RedisSessionStore
from pipelines.sessions.sqlite_store import SQLiteSessionStore


async def wait_until(predicate, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def eventually(probe, timeout: float = 5.0):
    """Awaits ``probe()`` until it returns something true; returns that."""
    async with asyncio.timeout(timeout):
        while not (result := await probe()):
            await asyncio.sleep(0.02)
    return result


async def test_rounds_end_expired_sessions_and_refresh_the_gauge(tmp_path):
    metrics = SessionMetrics()
    ended: list[str] = []

    async def on_expired(ids):
        ended.extend(ids)

    async with SQLiteSessionStore(tmp_path / "s.db") as store:
        dropped, _ = await store.create(agent="a", owner="me")
        live, _ = await store.create(agent="a", owner="me")
        await store.set_state(dropped.id, SessionState.DISCONNECTED)
        await store.set_state(live.id, SessionState.ACTIVE)
        keeper = Housekeeper(store, server_id="me", metrics=metrics, every_s=0.05, grace_s=0.3, on_expired=on_expired)
        keeper.start()
        try:
            await wait_until(lambda: ended == [dropped.id])
            await asyncio.sleep(0.15)  # a round after the expiry refreshed the gauge
        finally:
            await keeper.stop()
        assert (await store.get(dropped.id)).state is SessionState.ENDED
        assert (await store.get(live.id)).state is SessionState.ACTIVE
        got = samples(metrics)
        assert got[("framegraph_sessions", (("state", "ENDED"),))] == 1
        assert got[("framegraph_sessions", (("state", "ACTIVE"),))] == 1


async def test_heartbeats_go_to_redis_and_an_outage_is_counted_not_fatal(tmp_path):
    metrics = SessionMetrics()
    folder = tmp_path / "redis"
    folder.mkdir()
    with redis_server(folder) as url:
        store = RedisSessionStore(url)
        await store.open()
        keeper = Housekeeper(
            store, server_id="srv-1", metrics=metrics, every_s=0.05, server_info=lambda: {"url": "http://x"}
        )
        keeper.start()
        async with RedisSessionStore(url) as peer:
            live = await eventually(lambda: peer.live_servers(max_age_s=5))
            assert live == {"srv-1": {"id": "srv-1", "url": "http://x"}}
    # redis-server is gone now: rounds fail, are counted, and the task goes on.
    try:
        await wait_until(lambda: samples(metrics).get(("framegraph_errors_total", (("kind", "store"),)), 0) >= 2)
        assert keeper.running
    finally:
        await keeper.stop()
        await store.close()

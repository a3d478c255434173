"""History by hour (issue 25, item 6): the store's per-hour buckets, on SQLite and a real redis-server.

Sessions and turns are counted in the transaction that writes them; reply
latencies go into a fixed histogram whose percentiles lie within one bucket
width of the true ones; buckets older than ``HISTORY_HOURS`` expire.
"""

import math
import random
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

import pipelines.sessions.model as model
import pipelines.sessions.redis_store as redis_store
import pipelines.sessions.sqlite_store as sqlite_store
from pipelines.sessions.history import HISTORY_HOURS, HOUR_S, LATENCY_EDGES_S, hour_of, percentile
from pipelines.sessions.model import REPLY_LATENCY, now
from pipelines.sessions.sqlite_store import SQLiteSessionStore
from pipelines.sessions.store import SessionNotFound


def nearest_rank(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def width_at(seconds: float) -> float:
    """The width of the histogram bucket holding ``seconds``."""
    edges = (0.0, *LATENCY_EDGES_S)
    upper = next(i for i, e in enumerate(edges) if e >= seconds)
    return edges[upper] - edges[upper - 1]


def assert_close(reported: float, true: float) -> None:
    assert true <= reported <= true + width_at(true) + 1e-9, (reported, true)


def at(monkeypatch, t: float) -> None:
    """Makes both stores see ``t`` as now (a bucket written at another hour), new sessions included."""
    for module in (sqlite_store, redis_store, model):
        monkeypatch.setattr(module, "now", lambda: t)


async def test_sessions_turns_and_latency_percentiles_are_counted_per_hour(store, monkeypatch):
    t = now()
    at(monkeypatch, t)  # one hour for the whole test, even at a change of hour
    rng = random.Random(25)
    samples = [round(rng.uniform(0.3, 2.5), 4) for _ in range(40)] + [4.2, 7.9]
    sessions = [(await store.create(agent="a", owner="s1"))[0] for _ in range(3)]
    for i, seconds in enumerate(samples):
        await store.append(sessions[i % 3].id, [{"role": "user", "content": str(i)}],
                           latencies={REPLY_LATENCY: seconds, "interruption_s": 0.2})
    await store.append(sessions[0].id, [{"role": "user", "content": "no latency"}])
    await store.append(sessions[0].id, [{"role": "assistant", "content": "not a turn"}], turn=False)
    with pytest.raises(SessionNotFound):
        await store.append("no-such-session", [], latencies={REPLY_LATENCY: 0.5})

    (row,) = await store.history(1)
    assert row.hour == datetime.fromtimestamp(hour_of(t), UTC).strftime("%Y-%m-%dT%H:00:00Z")
    assert (row.sessions, row.turns, row.latency_samples) == (3, len(samples) + 1, len(samples))
    assert_close(row.latency_p50_s, nearest_rank(samples, 0.50))
    assert_close(row.latency_p95_s, nearest_rank(samples, 0.95))


async def test_history_rows_are_bounded_contiguous_hours_ending_now(store):
    await store.create(agent="a", owner="s1")
    rows = await store.history(HISTORY_HOURS * 10)
    assert len(rows) == HISTORY_HOURS and len(await store.history(0)) == 1
    assert [r.hour for r in rows] == sorted({r.hour for r in rows})  # distinct, oldest first
    assert rows[-1].sessions == 1 and sum(r.sessions for r in rows) == 1
    assert rows[-1].latency_p50_s is None and rows[-1].latency_p95_s is None  # no samples: no percentile


async def test_buckets_older_than_the_history_expire(store, monkeypatch):
    t = now()
    at(monkeypatch, t - (HISTORY_HOURS - 2) * HOUR_S)  # still kept: the second hour of the window the window
    kept, _ = await store.create(agent="a", owner="s1")
    await store.append(kept.id, [{"role": "user", "content": "old"}], latencies={REPLY_LATENCY: 0.4})
    at(monkeypatch, t - (HISTORY_HOURS + 1) * HOUR_S)  # past the window
    gone, _ = await store.create(agent="a", owner="s1")
    await store.append(gone.id, [{"role": "user", "content": "older"}], latencies={REPLY_LATENCY: 0.4})
    at(monkeypatch, t)
    await store.expire_disconnected()

    rows = await store.history(HISTORY_HOURS)
    assert (rows[1].sessions, rows[1].turns, rows[1].latency_p50_s) == (1, 1, 0.4)
    assert sum(r.sessions for r in rows) == 1 and sum(r.turns for r in rows) == 1
    old_hour = hour_of(t - (HISTORY_HOURS + 1) * HOUR_S)
    if isinstance(store, SQLiteSessionStore):
        left = await store._run(lambda db: db.execute("SELECT count(*) FROM history WHERE hour = ?",
                                                      (old_hour,)).fetchone()[0])
        assert left == 0
    else:  # a client of its own on the store's Redis (the store's connection is its own business)
        raw = aioredis.from_url(store.url)
        try:
            assert not await raw.exists(store._hour_key(old_hour))
            ttl = await raw.ttl(store._hour_key(hour_of(t - (HISTORY_HOURS - 2) * HOUR_S)))
        finally:
            await raw.aclose()
        assert HOUR_S - 60 < ttl <= 2 * HOUR_S  # it leaves when its hour falls out of the window


async def test_a_latency_out_of_range_never_fails_the_turn(store, monkeypatch):
    at(monkeypatch, now())
    session, _ = await store.create(agent="a", owner="s1")
    await store.append(session.id, [{"role": "user", "content": "a"}], latencies={REPLY_LATENCY: -0.5})
    await store.append(session.id, [{"role": "user", "content": "b"}], latencies={REPLY_LATENCY: 50.0})
    assert (await store.get(session.id)).turns == 2
    (row,) = await store.history(1)
    assert (row.turns, row.latency_samples, row.latency_p50_s) == (2, 1, LATENCY_EDGES_S[-1])  # over 10 s: 10 s


async def test_a_retried_redis_append_counts_its_turn_once(redis_url):
    async with redis_store.RedisSessionStore(redis_url, prefix="h:") as store:
        session, _ = await store.create(agent="a", owner="s1")
        for _ in range(2):  # the write-behind queue retries a write that Redis may have executed
            await store.append(session.id, [{"role": "user", "content": "x"}], latencies={REPLY_LATENCY: 1.0},
                               write_id="w1")
        (row,) = await store.history(1)
        assert (row.turns, row.latency_samples) == (1, 1)


def test_histogram_percentiles_lie_within_one_bucket_of_the_true_ones():
    rng = random.Random(7)
    for _ in range(200):
        samples = [rng.choice([rng.uniform(0, 3), rng.lognormvariate(0, 0.8)]) for _ in range(rng.randint(1, 300))]
        samples = [min(s, 9.99) for s in samples]
        histogram: dict[int, int] = {}
        for s in samples:
            index = next(i for i, e in enumerate(LATENCY_EDGES_S) if e >= s)
            histogram[index] = histogram.get(index, 0) + 1
        for q in (0.5, 0.95):
            assert_close(percentile(histogram, q), nearest_rank(samples, q))
    assert percentile({}, 0.5) is None
    assert percentile({len(LATENCY_EDGES_S): 3}, 0.95) == LATENCY_EDGES_S[-1]  # over 10 s counts as 10 s

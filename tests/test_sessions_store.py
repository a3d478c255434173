"""Both session stores (SQLite and a real redis-server) pass the same contract."""

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import ENDED_TTL_S

from pipelines.sessions.backends import store_for
from pipelines.sessions.model import MAX_ERRORS, MAX_MESSAGES, SessionState
from pipelines.sessions.redis_store import RedisSessionStore
from pipelines.sessions.sqlite_store import SQLiteSessionStore
from pipelines.sessions.store import MAX_PAGE, BadCursor, BadRecord, SessionNotFound, page_size

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


async def test_create_get_returns_what_was_stored(store):
    system = {"role": "system", "content": "You are terse."}
    session, token = await store.create(agent="tutor", owner="srv-1", variables={"subject": "maths"}, messages=[system])
    got = await store.get(session.id)
    assert got.state is SessionState.STARTING
    assert (got.agent, got.owner, got.variables, got.messages) == ("tutor", "srv-1", {"subject": "maths"}, [system])
    assert got.turns == 0 and got.created_at == pytest.approx(session.created_at)
    assert len(token) >= 40 and token not in got.model_dump_json()
    with pytest.raises(SessionNotFound):
        await store.get("nope")
    assert await store.ping()


async def test_token_verification_refuses_wrong_and_unknown_alike(store):
    session, token = await store.create(agent="a", owner="s")
    other, other_token = await store.create(agent="a", owner="s")
    assert await store.verify_token(session.id, token)
    assert not await store.verify_token(session.id, other_token)
    assert not await store.verify_token(session.id, token[:-1])
    assert not await store.verify_token("no-such-session", token)
    assert not await store.verify_token(session.id, "")


async def test_list_pages_in_creation_order_without_messages(store):
    ids = [(await store.create(agent="a", owner="s", messages=[{"role": "user", "content": "x"}]))[0].id for _ in range(7)]
    seen, cursor = [], None
    while True:
        page = await store.list(limit=3, cursor=cursor)
        assert len(page.items) <= 3
        assert all(not hasattr(item, "messages") for item in page.items)
        seen += [s.id for s in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ids
    assert len((await store.list(limit=10_000)).items) == 7
    with pytest.raises(BadCursor):
        await store.list(cursor="garbage")


def test_page_size_is_clamped():
    assert (page_size(10_000), page_size(0), page_size(-3), page_size(25)) == (MAX_PAGE, 1, 1, 25)
    assert MAX_PAGE == 100


async def test_list_filters_by_state_and_counts(store):
    a = (await store.create(agent="a", owner="s"))[0]
    b = (await store.create(agent="a", owner="s"))[0]
    await store.create(agent="a", owner="s")
    await store.set_state(a.id, SessionState.ACTIVE)
    await store.set_state(b.id, SessionState.DISCONNECTED)
    active = await store.list(state=SessionState.ACTIVE)
    assert [s.id for s in active.items] == [a.id]
    counts = await store.count_by_state()
    assert counts == {
        SessionState.STARTING: 1,
        SessionState.ACTIVE: 1,
        SessionState.DISCONNECTED: 1,
        SessionState.ENDED: 0,
    }
    got = await store.get(b.id)
    assert got.state is SessionState.DISCONNECTED and got.disconnected_at is not None
    moved = await store.set_state(b.id, SessionState.ACTIVE, owner="srv-2")
    assert moved.owner == "srv-2" and moved.state is SessionState.ACTIVE
    with pytest.raises(SessionNotFound):
        await store.set_state("nope", SessionState.ENDED)


async def test_append_keeps_last_messages_turns_and_latencies(store):
    session, _ = await store.create(agent="a", owner="s")
    for i in range(60):
        await store.append(
            session.id,
            [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}],
            latencies={"speech_to_audio_s": i / 100},
        )
    summary = await store.append(session.id, [], turn=False, latencies={"interruption_s": 0.2})
    assert summary.turns == 60
    assert summary.latencies == {"speech_to_audio_s": 0.59, "interruption_s": 0.2}
    got = await store.get(session.id)
    assert len(got.messages) == MAX_MESSAGES
    assert got.messages[0] == {"role": "user", "content": "q10"}
    assert got.messages[-1] == {"role": "assistant", "content": "a59"}
    with pytest.raises(SessionNotFound):
        await store.append("nope", [{"role": "user", "content": "x"}])


async def damage(store, session_id: str) -> None:
    """Stores settings holding a lone surrogate as an older version could (JSON's "\\ud800" escape)."""
    bad = '{"system_prompt": "\\ud800"}'
    if isinstance(store, SQLiteSessionStore):
        await store._run(lambda db: db.execute("UPDATE sessions SET settings = ? WHERE id = ?", (bad, session_id)))
    else:
        await store._redis.hset(store._key(session_id), "settings", bad)


async def test_one_unreadable_record_is_skipped_not_fatal_to_listing(store, caplog):
    good, _ = await store.create(agent="a", owner="s")
    bad, _ = await store.create(agent="a", owner="s")
    await damage(store, bad.id)
    page = await store.list()
    assert [s.id for s in page.items] == [good.id]
    for item in page.items:
        item.model_dump_json().encode("utf-8")  # what the API sends
    with pytest.raises(BadRecord):
        await store.get(bad.id)
    assert (await store.get(good.id)).id == good.id


async def test_text_the_pipeline_writes_is_stored_readable(store):
    session, _ = await store.create(agent="a", owner="s")
    await store.append(session.id, [{"role": "user", "content": "half \ud83d a pair"}])
    await store.record_error(session.id, "bad \udc00 text")
    got = await store.get(session.id)
    assert got.messages == [{"role": "user", "content": "half \ufffd a pair"}]
    assert got.errors[0].message == "bad \ufffd text"
    got.model_dump_json().encode("utf-8")


async def test_runtime_settings_are_kept_for_a_resume(store):
    session, _ = await store.create(agent="a", owner="s")
    assert (await store.get(session.id)).settings == {}
    settings = {"system_prompt": "Be brief.", "tts": {"rate": 250}}
    await store.set_settings(session.id, settings)
    assert (await store.get(session.id)).settings == settings
    assert (await store.list()).items[0].settings == settings
    with pytest.raises(SessionNotFound):
        await store.set_settings("nope", {})


async def test_recent_errors_are_capped(store):
    session, _ = await store.create(agent="a", owner="s")
    for i in range(MAX_ERRORS + 5):
        await store.record_error(session.id, f"boom {i}")
    errors = (await store.get(session.id)).errors
    assert [e.message for e in errors] == [f"boom {i}" for i in range(5, MAX_ERRORS + 5)]
    with pytest.raises(SessionNotFound):
        await store.record_error("nope", "x")


async def test_concurrent_appends_are_atomic(make_store, store):
    session, _ = await store.create(agent="a", owner="s")
    async with make_store() as second:  # a second connection writes at the same time

        async def turn(s, i):
            await s.append(session.id, [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}])

        await asyncio.gather(*(turn(store if i % 2 else second, i) for i in range(40)))
    got = await store.get(session.id)
    assert got.turns == 40
    assert len(got.messages) == 80
    pairs = list(zip(got.messages[::2], got.messages[1::2], strict=True))
    assert all(q["content"][1:] == a["content"][1:] for q, a in pairs)  # no turn's two messages torn apart
    assert sorted(int(q["content"][1:]) for q, _ in pairs) == list(range(40))


async def test_disconnected_sessions_expire_after_the_grace_period(store):
    stays, _ = await store.create(agent="a", owner="s")
    goes, _ = await store.create(agent="a", owner="s")
    live, _ = await store.create(agent="a", owner="s")
    await store.set_state(goes.id, SessionState.DISCONNECTED)
    await store.set_state(live.id, SessionState.ACTIVE)
    assert await store.expire_disconnected(grace_s=60) == []
    await asyncio.sleep(0.3)
    await store.set_state(stays.id, SessionState.DISCONNECTED)
    assert await store.expire_disconnected(grace_s=0.2) == [goes.id]
    assert (await store.get(goes.id)).state is SessionState.ENDED
    assert (await store.get(stays.id)).state is SessionState.DISCONNECTED
    assert (await store.get(live.id)).state is SessionState.ACTIVE
    assert await store.expire_disconnected(grace_s=0.2) == []


async def test_ended_sessions_are_dropped_after_their_ttl(store):
    ended, token = await store.create(agent="a", owner="s", messages=[{"role": "user", "content": "x"}])
    kept, _ = await store.create(agent="a", owner="s")
    await store.set_state(ended.id, SessionState.ENDED)
    assert (await store.count_by_state())[SessionState.ENDED] == 1
    await asyncio.sleep(ENDED_TTL_S + 0.3)
    await store.expire_disconnected()
    with pytest.raises(SessionNotFound):
        await store.get(ended.id)
    assert not await store.verify_token(ended.id, token)
    assert [s.id for s in (await store.list()).items] == [kept.id]
    assert (await store.count_by_state())[SessionState.ENDED] == 0


async def test_recover_marks_live_sessions_disconnected(store):
    starting, _ = await store.create(agent="a", owner="s1")
    active, _ = await store.create(agent="a", owner="s1")
    elsewhere, _ = await store.create(agent="a", owner="s2")
    ended, _ = await store.create(agent="a", owner="s1")
    await store.set_state(active.id, SessionState.ACTIVE)
    await store.set_state(elsewhere.id, SessionState.ACTIVE)
    await store.set_state(ended.id, SessionState.ENDED)
    assert sorted(await store.recover(owner="s1")) == sorted([starting.id, active.id])
    assert (await store.get(elsewhere.id)).state is SessionState.ACTIVE
    assert (await store.get(ended.id)).state is SessionState.ENDED
    assert await store.recover() == [elsewhere.id]
    for sid in (starting.id, active.id, elsewhere.id):
        got = await store.get(sid)
        assert got.state is SessionState.DISCONNECTED and got.disconnected_at is not None


async def test_delete_removes_everything(store):
    session, token = await store.create(agent="a", owner="s", messages=[{"role": "user", "content": "x"}])
    await store.set_state(session.id, SessionState.DISCONNECTED)
    assert await store.delete(session.id)
    assert not await store.delete(session.id)
    with pytest.raises(SessionNotFound):
        await store.get(session.id)
    assert not await store.verify_token(session.id, token)
    assert (await store.list()).items == []
    assert sum((await store.count_by_state()).values()) == 0
    assert await store.expire_disconnected(grace_s=0) == []


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {root!r})
    from pipelines.sessions.sqlite_store import SQLiteSessionStore
    from pipelines.sessions.redis_store import RedisSessionStore
    from pipelines.sessions.model import SessionState

    async def main():
        store = {factory}
        await store.open()
        session, _ = await store.create(agent="a", owner="doomed")
        await store.set_state(session.id, SessionState.ACTIVE)
        print("SESSION", session.id, flush=True)
        i = 0
        while True:
            await store.append(session.id, [{{"role": "user", "content": f"q{{i}}"}}])
            print("ACK", i, flush=True)
            i += 1

    asyncio.run(main())
    """
)


async def test_acknowledged_writes_survive_sigkill(make_store, tmp_path, request):
    probe = make_store()
    if isinstance(probe, SQLiteSessionStore):
        factory = f"SQLiteSessionStore({str(probe.path)!r})"
    else:
        factory = f"RedisSessionStore({probe.url!r}, prefix={probe.prefix!r})"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER.format(root=ROOT, factory=factory)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        session_id = writer.stdout.readline().split()[1]
        acked = -1
        deadline = time.monotonic() + 30
        while acked < 30 and time.monotonic() < deadline:
            acked = int(writer.stdout.readline().split()[1])
        os.kill(writer.pid, signal.SIGKILL)  # mid-write: the next append is in flight
        acked = max([acked, *(int(line.split()[1]) for line in writer.stdout if line.startswith("ACK"))])
    finally:
        writer.kill()
        writer.wait()
    assert acked >= 30
    async with make_store() as store:
        got = await store.get(session_id)
        assert got.turns >= acked + 1
        contents = [m["content"] for m in got.messages]
        assert contents[: acked + 1] == [f"q{i}" for i in range(acked + 1)]
        assert await store.recover(owner="doomed") == [session_id]
        assert (await store.get(session_id)).state is SessionState.DISCONNECTED


def test_store_for_picks_the_backend_from_the_location(tmp_path):
    assert isinstance(store_for("redis://127.0.0.1:6379/0", prefix="x:"), RedisSessionStore)
    sqlite = store_for(f"sqlite://{tmp_path}/a.db", ended_ttl_s=5)
    assert isinstance(sqlite, SQLiteSessionStore) and sqlite.path == tmp_path / "a.db"
    assert store_for("sessions.db").path.name == "sessions.db"
    with pytest.raises(ValueError, match="SQLite file path or a redis:// URL"):
        store_for(" ")

"""Users and their memory in both stores (SQLite and a real redis-server): one contract for both."""

import asyncio

import pytest

from pipelines.sessions.store import SessionNotFound, UserNotFound
from pipelines.sessions.users import MEMORY_HISTORY, MemoryOp, apply_ops, update_memory, user_id_problem


async def test_sessions_opened_as_a_user_are_counted_and_listed(store):
    with pytest.raises(UserNotFound):
        await store.get_user("ana")
    first, _ = await store.create(agent="tutor", owner="s", user="ana")
    await store.create(agent="tutor", owner="s", user="bo")
    await store.create(agent="tutor", owner="s")
    second, _ = await store.create(agent="tutor", owner="s", user="ana")
    ana = await store.get_user("ana")
    assert ana.sessions == 2 and ana.created_at == pytest.approx(first.created_at)
    assert ana.last_seen_at == pytest.approx(second.created_at)
    assert (await store.get(first.id)).user == "ana"
    page = await store.user_sessions("ana", limit=1)
    assert [s.id for s in page.items] == [first.id] and page.next_cursor
    assert [s.id for s in (await store.user_sessions("ana", cursor=page.next_cursor)).items] == [second.id]
    assert [s.user for s in (await store.list()).items] == ["ana", "bo", None, "ana"]
    assert (await store.user_sessions("nobody")).items == []


async def test_deleted_sessions_leave_the_users_listing(store):
    gone, _ = await store.create(agent="a", owner="s", user="ana")
    kept, _ = await store.create(agent="a", owner="s", user="ana")
    await store.delete(gone.id)
    assert [s.id for s in (await store.user_sessions("ana")).items] == [kept.id]


async def test_memory_compare_and_set_refuses_a_stale_version(store):
    assert (await store.read_memory("ana")).version == 0
    first = await store.write_memory("ana", 0, {"words": ["hola"]}, by="s1")
    assert first.version == 1 and first.by == "s1"
    assert await store.write_memory("ana", 0, {"words": ["lost"]}) is None  # a writer that read version 0
    now = await store.read_memory("ana")
    assert (now.version, now.fields) == (1, {"words": ["hola"]})
    assert (await store.read_memory("bo")).fields == {}  # another user's memory is their own


async def test_memory_history_keeps_the_last_fifty_versions_newest_first(store):
    for n in range(MEMORY_HISTORY + 5):
        await store.write_memory("ana", n, {"count": n + 1})
    history = await store.memory_history("ana")
    assert len(history) == MEMORY_HISTORY
    assert [v.version for v in history] == list(range(MEMORY_HISTORY + 5, 5, -1))
    assert history[0].fields == {"count": MEMORY_HISTORY + 5}
    assert [v.version for v in await store.memory_history("ana", limit=3)] == [55, 54, 53]


async def test_four_concurrent_writers_lose_no_item(make_store):
    """4 writers (each its own store connection) add 100 items each to one user's list: all 400 land."""
    stores = [make_store() for _ in range(4)]
    for s in stores:
        await s.open()
    try:
        async def writer(n, s):
            for i in range(100):
                await update_memory(s, "ana", [MemoryOp(op="add", field="words", value=f"w{n}-{i}"),
                                               MemoryOp(op="incr", field="turns")], by=f"writer-{n}")

        await asyncio.gather(*(writer(n, s) for n, s in enumerate(stores)))
        memory = await stores[0].read_memory("ana")
        assert sorted(memory.fields["words"]) == sorted(f"w{n}-{i}" for n in range(4) for i in range(100))
        assert memory.fields["turns"] == 400 and memory.version == 400
    finally:
        for s in stores:
            await s.close()


def test_field_level_operations():
    fields = apply_ops({"words": ["a"], "level": "A1"}, [
        MemoryOp(op="add", field="words", value="b"), MemoryOp(op="add", field="words", value="a"),
        MemoryOp(op="remove", field="words", value="b"), MemoryOp(op="incr", field="seen", value=2),
        MemoryOp(op="set", field="level", value="A2")])
    assert fields == {"words": ["a"], "level": "A2", "seen": 2}


def test_user_ids_are_short_and_safe():
    assert user_id_problem("ana.lopez@example") is None and user_id_problem("u-1_2") is None
    for bad in ["", "-x", "a b", "a/b", "x" * 65, "é", None, 5, "a\n"]:
        assert user_id_problem(bad), bad


async def test_usage_adds_up_by_session_and_by_user(store):
    from pipelines.sessions.model import now

    ana, _ = await store.create(agent="a", owner="s", user="ana")
    other, _ = await store.create(agent="a", owner="s", user="ana")
    anonymous, _ = await store.create(agent="a", owner="s")
    await store.add_usage(ana.id, "ana", {"llm/scripted/-/prompt_tokens": 10.0, "tts/espeak/-/characters": 40.0})
    await store.add_usage(ana.id, "ana", {"llm/scripted/-/prompt_tokens": 5.0})
    await store.add_usage(other.id, "ana", {"llm/scripted/-/prompt_tokens": 1.5})
    await store.add_usage(anonymous.id, None, {"llm/scripted/-/prompt_tokens": 100.0})
    assert (await store.get(ana.id)).usage == {"llm/scripted/-/prompt_tokens": 15.0, "tts/espeak/-/characters": 40.0}
    assert (await store.get(anonymous.id)).usage == {"llm/scripted/-/prompt_tokens": 100.0}
    assert await store.user_usage("ana") == {"llm/scripted/-/prompt_tokens": 16.5, "tts/espeak/-/characters": 40.0}
    assert await store.user_usage("ana", since=now() + 3 * 86400) == {}  # days from the future on: none
    assert await store.user_usage("bo") == {}
    with pytest.raises(SessionNotFound):
        await store.add_usage("nope", "ana", {"llm/scripted/-/prompt_tokens": 1.0})
    assert (await store.user_usage("ana"))["llm/scripted/-/prompt_tokens"] == 16.5  # nothing of the failed call

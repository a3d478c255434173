"""The memory: block: its validation, the typed writes of remember/forget, and how it enters the context."""

import pytest
from pipecat.processors.aggregators.llm_context import LLMContext

from pipelines.builder import build_agent
from pipelines.errors import ConfigErrors
from pipelines.sessions.memory import SessionMemory, open_memory
from pipelines.sessions.sqlite_store import SQLiteSessionStore
from pipelines.spec import MemorySettings
from pipelines.validate import load_agent_text

AGENT = """
version: 1
name: rememberer
transport: {type: synthetic}
context: {type: llm_context, system_prompt: You help.}
memory:
  fields:
    words: {type: list, pool: [uno, dos]}
    turns: {type: counter}
    practice: {type: counts}
    level: {type: text}
  template: "Known: {words}; {turns} turns; {practice}; level {level}."
processors:
  llm:
    type: scripted
    tools: [{name: remember, builtin: remember, description: remember}]
    rules:
      - {match: x, reply: "ok", remember: [{field: words, value: "{memory_next_words}"}]}
pipeline: [input, user_context, llm, output, assistant_context]
"""
SETTINGS = load_agent_text(AGENT).spec.memory


@pytest.fixture
async def store(tmp_path):
    async with SQLiteSessionStore(tmp_path / "s.db") as s:
        yield s


async def test_remember_and_forget_are_typed_by_the_fields(store):
    memory = await open_memory(SETTINGS, store, "ana", "s1")
    assert await memory.tool("remember", {"field": "words", "value": "uno"}) == {"version": 1}
    await memory.tool("remember", {"field": "turns", "value": "3"})
    await memory.tool("remember", {"field": "practice", "value": "uno"})
    await memory.tool("remember", {"field": "practice", "value": "uno"})
    await memory.tool("remember", {"field": "level", "value": "A2"})
    assert memory.fields == {"words": ["uno"], "turns": 3, "practice": {"uno": 2}, "level": "A2"}
    await memory.tool("forget", {"field": "words", "value": "uno"})
    await memory.tool("forget", {"field": "practice", "value": "uno"})
    await memory.tool("forget", {"field": "level"})
    assert (await store.read_memory("ana")).fields == {"words": [], "turns": 3, "practice": {}, "level": ""}
    assert "no memory field 'nope'" in (await memory.tool("remember", {"field": "nope", "value": "x"}))["error"]
    assert "whole number" in (await memory.tool("remember", {"field": "turns", "value": "many"}))["error"]
    assert await open_memory(SETTINGS, store, None, "s2") is None  # an anonymous session has none


async def test_the_template_enters_the_system_prompt_or_a_message_of_its_own(store):
    await store.write_memory("ana", 0, {"words": ["uno"], "turns": 2, "practice": {"uno": 1}})
    memory = await open_memory(SETTINGS, store, "ana", "s1")
    context = LLMContext(messages=[{"role": "system", "content": "You help."}, {"role": "user", "content": "hi"}])
    memory.enter(context)
    assert context.get_messages()[0]["content"] == "You help.\n\nKnown: uno; 2 turns; uno (1); level nothing yet."
    as_message = SessionMemory(SETTINGS.model_copy(update={"into": "message"}), store, "ana", "s1")
    await as_message.load()
    context = LLMContext(messages=[{"role": "system", "content": "You help."}])
    as_message.enter(context)
    assert [m["content"] for m in context.get_messages()] == ["You help.", "Known: uno; 2 turns; uno (1); level nothing yet."]


def test_a_template_naming_no_field_is_refused_with_its_key():
    with pytest.raises(ConfigErrors) as caught:
        load_agent_text(AGENT.replace("level {level}", "level {levle}"))
    assert "memory" in str(caught.value) and "'{levle}' names no field" in str(caught.value)
    with pytest.raises(ValueError, match="names no field"):
        MemorySettings(fields={"a": {"type": "list"}}, template="{b}")


def test_memory_writes_need_a_memory_block_and_a_declared_field():
    without_block = AGENT.split("memory:")[0] + "processors:" + AGENT.split("processors:")[1].replace(
        ', remember: [{field: words, value: "{memory_next_words}"}]', "")
    with pytest.raises(ConfigErrors, match="needs a memory: block"):
        build_agent(load_agent_text(without_block))
    with pytest.raises(ConfigErrors, match="'wrods' is not a memory field"):
        build_agent(load_agent_text(AGENT.replace("field: words", "field: wrods")))


def test_a_users_own_budget_replaces_the_agents_period_by_period():
    budget = load_agent_text(AGENT + """
budget:
  per_session: {tokens: 100}
  per_day: {tokens: 1000}
  users:
    vip: {per_day: {tokens: 5000}}
""").spec.budget
    assert budget.for_user("vip").per_day.tokens == 5000 and budget.for_user("vip").per_session.tokens == 100
    assert budget.for_user("ana").per_day.tokens == 1000 and budget.for_user(None).per_day.tokens == 1000
    with pytest.raises(ConfigErrors, match="budget.users"):
        load_agent_text(AGENT + "budget:\n  users:\n    'a b': {per_day: {tokens: 1}}\n")


async def test_over_budget_reads_the_users_day_and_month(store):
    from pipelines.server.accounting import over_budget

    budget = load_agent_text(AGENT + """
budget:
  per_month: {tokens: 300}
  users: {vip: {per_month: {tokens: 1000}}}
""").spec.budget
    for user in ("ana", "vip"):
        session, _ = await store.create(agent="a", owner="s", user=user)
        await store.add_usage(session.id, user, {"llm/x/-/prompt_tokens": 200.0, "llm/x/-/completion_tokens": 150.0})
    assert "user ana has used this month's budget (tokens 350 of 300)" in await over_budget(store, budget, "ana")
    assert await over_budget(store, budget, "vip") is None
    assert await over_budget(store, budget, None) is None


async def test_a_session_starts_with_an_empty_memory_while_the_store_is_away(tmp_path):
    from redis_kit import redis_server

    from pipelines.sessions.redis_store import RedisSessionStore

    folder = tmp_path / "redis"
    folder.mkdir()
    with redis_server(folder) as url:
        store = RedisSessionStore(url, prefix="m:")
        await store.open()
        await store.write_memory("ana", 0, {"words": ["uno"]})
        assert (await open_memory(SETTINGS, store, "ana", "s1")).fields == {"words": ["uno"]}
    try:  # redis-server stopped: reads fail as StoreUnavailable
        memory = await open_memory(SETTINGS, store, "ana", "s2")
        assert memory.fields == {} and "nothing yet" in memory.render()
        assert (await memory.tool("remember", {"field": "words", "value": "dos"})) == {
            "error": "memory could not be written now"}
    finally:
        await store.close()

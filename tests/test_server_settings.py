"""Runtime settings through the server: checked before accepted, queued while a response runs, safe on resume.

A real server (``running``), a real WebSocket client and the scripted LLM
with espeak-ng: a ``PATCH /sessions/{id}`` the agent's services cannot take
is refused with 422 naming the field; changes held during one reply all
come out, each caller's id named; a change made while a tool call is in
flight waits until the tool's follow-up reply was spoken; a bad setting
already in the store (an older server wrote it) is dropped on resume and the
bot still speaks.
"""

import asyncio
import time

import httpx
from test_server_resume import AGENT, say_over_ws, send_transcript, ws_of
from test_tools import ToolServer
from transport_kit import wait_until

from pipelines.client_protocol import messages as cm
from pipelines.server.app import running
from pipelines.validate import load_agent_text
from transports.clients.talk import Talker


async def test_settings_the_agent_cannot_take_get_422_naming_the_field_and_nothing_is_stored():
    async with running(load_agent_text(AGENT)) as (url, _), httpx.AsyncClient(base_url=url, timeout=10) as http:
        created = (await http.post("/sessions")).json()
        path = f"/sessions/{created['id']}"
        unknown = await http.patch(path, json={"nonsense_field": 1})
        assert unknown.status_code == 422
        assert "nonsense_field" in unknown.json()["detail"] and "tts (" in unknown.json()["detail"]
        field = await http.patch(path, json={"tts": {"speed": 2}})
        assert field.status_code == 422
        assert "tts.speed" in field.json()["detail"] and "pitch, rate, voice" in field.json()["detail"]
        voice = await http.patch(path, json={"tts": {"voice": "klingon"}})
        assert voice.status_code == 422 and "tts.voice" in voice.json()["detail"]
        rate = await http.patch(path, json={"tts": {"rate": "fast"}})
        assert rate.status_code == 422 and "tts.rate" in rate.json()["detail"]
        assert (await http.get(path)).json()["settings"] == {}
        good = await http.patch(path, json={"tts": {"rate": 200}})
        assert good.status_code == 200 and good.json()["applied"] is True
        assert (await http.get(path)).json()["settings"]["tts"] == {"rate": 200}


async def test_changes_held_during_a_reply_queue_show_as_pending_and_each_caller_is_told():
    # The client lets an idle connection go well before the server's keep-alive does: the reply may take longer.
    async with running(load_agent_text(AGENT)) as (url, manager), httpx.AsyncClient(
            base_url=url, timeout=10, limits=httpx.Limits(keepalive_expiry=1.0)) as http:
        created = (await http.post("/sessions")).json()
        path = f"/sessions/{created['id']}"
        async with Talker(ws_of(url, created)) as talker:
            await talker.wait_for_message(cm.BOT_READY, timeout=15)
            asked = time.monotonic()
            await send_transcript(talker, "tell me a story")
            await talker.wait_for_message(cm.BOT_STARTED_SPEAKING, timeout=20, after=asked)
            first = (await http.patch(path, json={"tts": {"rate": 200}, "system_prompt": "First."})).json()
            second = (await http.patch(path, json={"system_prompt": "Second."})).json()
            assert first["held"] and second["held"] and second["pending"] == [first["change_id"], second["change_id"]]
            waiting = (await http.get(path)).json()["settings"]["pending"]
            assert [p["id"] for p in waiting] == second["pending"]
            assert waiting[0]["change"] == {"tts": {"rate": 200}, "system_prompt": "First."}

            told = await talker.wait_for_message(cm.SERVER_MESSAGE, timeout=40, after=asked)
            assert told["data"]["type"] == "settings-applied"
            assert told["data"]["change_ids"] == [first["change_id"], second["change_id"]]
            assert told["data"]["change"] == {"tts": {"rate": 200}, "system_prompt": "Second."}
            stored = (await http.get(path)).json()["settings"]
            assert "pending" not in stored and stored["tts"] == {"rate": 200} and stored["system_prompt"] == "Second."
            assert [a["id"] for a in stored["applied"]] == second["pending"]
            assert manager.live[created["id"]].built.llm_context.get_messages()[0]["content"] == "Second."


TOOLED = """
version: 1
name: tooled
transport: {type: websocket, port: 0}
context: {type: llm_context, system_prompt: You look things up.}
processors:
  llm:
    type: scripted
    tools:
      - {name: lookup, description: Looks it up, http: {url: "TOOL_URL/slow", timeout_secs: 30}}
    rules:
      - {match: "look it up", tool: lookup, say: "Let me check.", reply: "It is {summary} today."}
    fallback: "Fine."
    token_delay_ms: 0
  tts: {type: espeak, voice: en-us, rate: 175}
pipeline: [input, user_context, llm, tts, output, assistant_context]
"""


async def test_a_change_during_a_tool_call_waits_until_the_tools_follow_up_reply_was_spoken():
    async with ToolServer() as tools:
        tools.delay = 3.0  # the tool answers 3 s after it was called: "Let me check." has been said by then
        agent = load_agent_text(TOOLED.replace("TOOL_URL", tools.url))
        async with running(agent) as (url, _), httpx.AsyncClient(base_url=url, timeout=10) as http:
            created = (await http.post("/sessions")).json()
            async with Talker(ws_of(url, created)) as talker:
                await talker.wait_for_message(cm.BOT_READY, timeout=15)
                asked = time.monotonic()
                await send_transcript(talker, "look it up")
                await asyncio.wait_for(tools.received.wait(), 20)  # the call is in flight
                changed = (await http.patch(f"/sessions/{created['id']}", json={"tts": {"rate": 250}})).json()
                assert changed["held"] is True
                told = await talker.wait_for_message(cm.SERVER_MESSAGE, timeout=60, after=asked)
                told_at = next(t for t, m in talker.messages if m is told)
                said_before = [m["data"]["text"] for t, m in talker.messages
                               if asked < t < told_at and cm.kind_of(m) == cm.BOT_TTS_TEXT]
                assert told["data"]["type"] == "settings-applied" and told["data"]["held"] is True
                assert any("sunny" in text for text in said_before), f"applied before the follow-up: {said_before}"
                stopped = [t for t, m in talker.messages if cm.kind_of(m) == cm.BOT_STOPPED_SPEAKING and t < told_at]
                assert stopped and stopped[-1] > next(t for t, m in talker.messages
                                                      if cm.kind_of(m) == cm.BOT_TTS_TEXT and "sunny" in m["data"]["text"])


async def test_a_stored_setting_that_cannot_be_applied_is_dropped_on_resume_and_the_bot_still_speaks():
    async with running(load_agent_text(AGENT)) as (url, manager), httpx.AsyncClient(base_url=url, timeout=10) as http:
        created = (await http.post("/sessions")).json()
        # What a server without the checks stored: a voice espeak does not know, and a good rate.
        await manager.store.set_settings(created["id"], {"tts": {"voice": "klingon", "rate": 200}})
        async with Talker(ws_of(url, created)) as talker:
            await talker.wait_for_message(cm.BOT_READY, timeout=15)
            assert (await say_over_ws(talker, "my name is ada")).startswith("Nice")
            await talker.wait_for_message(cm.BOT_STARTED_SPEAKING, timeout=20)
            tts = next(p for p in manager.live[created["id"]].built.processors.values() if hasattr(p, "_engine"))
            await wait_until(lambda: tts.settings.rate == 200, 5, "the good stored setting applied again")
            assert tts.settings.voice == "en-us"
        session = (await http.get(f"/sessions/{created['id']}")).json()
        assert session["settings"]["tts"] == {"rate": 200}
        assert any("tts.voice" in e["message"] and "dropped" in e["message"] for e in session["errors"])

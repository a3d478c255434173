"""A session's own persona variables reach every place the config uses them, through a real server.

configs/language_tutor.yaml served over WebSocket: a session created with
``{"variables": {"subject": "French", "learner_level": "advanced"}}`` gets
a French tutor in its system prompt and in the scripted LLM's replies (its
``when: {subject: French}`` rules and every ``{subject}`` in a reply), while
a session with the YAML's own variables stays the Spanish beginner tutor.
"""

import time

import httpx
from conftest import ROOT
from test_server_resume import send_transcript, ws_of

from pipelines.client_protocol import messages as cm
from pipelines.server.app import running, served_on
from pipelines.validate import load_agent
from transports.clients.talk import Talker


async def reply(talker: Talker, text: str) -> str:
    """The bot's whole spoken reply to ``text`` (every bot-tts-text until it stops speaking)."""
    asked = time.monotonic()
    await send_transcript(talker, text)
    stopped = await talker.wait_for_message(cm.BOT_STOPPED_SPEAKING, timeout=30, after=asked)
    stopped_at = next(t for t, m in talker.messages if m is stopped)
    said = [m["data"]["text"] for t, m in talker.messages if asked < t <= stopped_at and cm.kind_of(m) == cm.BOT_TTS_TEXT]
    return " ".join(said)


async def test_a_sessions_own_variables_reach_the_prompt_and_the_scripted_replies():
    tutor = served_on(load_agent(ROOT / "configs" / "language_tutor.yaml"), "websocket", port=0)
    async with running(tutor) as (url, manager), httpx.AsyncClient(base_url=url, timeout=10) as http:
        french = (await http.post("/sessions", json={"variables": {"subject": "French", "learner_level": "advanced"}})).json()
        spanish = (await http.post("/sessions")).json()
        async with Talker(ws_of(url, french)) as talker:
            await talker.wait_for_message(cm.BOT_READY, timeout=20)
            said = await reply(talker, "hello")
            assert "French at advanced level" in said and "bonjour" in said and "Spanish" not in said
            prompt = manager.live[french["id"]].built.llm_context.get_messages()[0]["content"]
            assert prompt.startswith("You are a patient French tutor for a advanced learner.")
        async with Talker(ws_of(url, spanish)) as talker:
            await talker.wait_for_message(cm.BOT_READY, timeout=20)
            said = await reply(talker, "hello")
            assert "Spanish at beginner level" in said and "hola" in said

"""The language tutor (configs/language_tutor.yaml) remembers each learner, end to end over WebSocket.

Real server, real store (SQLite), the tutor's own graph (pocketsphinx, the
scripted LLM, espeak-ng), JSON RTVI WebSocket clients that type their turns
(``send-text``): two sessions of one learner in a row (the second greets with
what the first practised and picks a new word), and two at once (no write lost).
"""

import asyncio
import json
import time

import httpx
import pytest
import websockets
from conftest import ROOT
from test_client_protocol import JsonClient, send_text
from transport_kit import on_transport

from pipelines.client_protocol import messages as cm
from pipelines.server.app import running, served_on
from pipelines.validate import load_agent_text

TUTOR = ROOT / "configs" / "language_tutor.yaml"


def tutor():
    return on_transport(TUTOR, "websocket", client_context=["send-text"])


class Learner:
    """One session of a learner: opened with ``POST /sessions {user}``, joined on its WebSocket."""

    def __init__(self, url: str, http: httpx.AsyncClient, manager, user: str):
        self.url, self.http, self.manager, self.user = url, http, manager, user

    async def __aenter__(self) -> "Learner":
        created = (await self.http.post("/sessions", json={"user": self.user})).json()
        self.id, self.token = created["id"], created["token"]
        ws_url = self.url.replace("http://", "ws://") + f"/sessions/{self.id}/ws?token={created['token']}"
        self.ws = await websockets.connect(ws_url)
        self.client = JsonClient(self.ws)
        await self.client.send(cm.client_ready())
        await self.client.wait_for(cm.BOT_READY, timeout=30)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.ws.close()
        for _ in range(400):  # the session's worker ends and frees its slot
            if self.id not in self.manager.live:
                break
            await asyncio.sleep(0.05)

    def context(self) -> list[dict]:
        return self.manager.live[self.id].built.llm_context.get_messages()

    async def say(self, text: str, *, audio: bool = False) -> str:
        """Types ``text`` and returns the tutor's whole reply to it (spoken too with ``audio``: TTS usage)."""
        before = len(self.context())
        sent = await self.client.send(send_text(text, audio=audio))
        await self.client.wait_for("bot-llm-stopped", after=sent, timeout=30)
        for _ in range(200):
            replies = [m for m in self.context()[before:] if m.get("role") == "assistant" and m.get("content")]
            if replies:
                return replies[-1]["content"]
            await asyncio.sleep(0.05)
        raise TimeoutError(f"no reply to {text!r}")


async def memory_of(http: httpx.AsyncClient, user: str) -> dict:
    return (await http.get(f"/users/{user}/memory")).json()["fields"]


async def test_a_second_session_greets_with_what_the_first_practised_and_picks_a_new_word():
    async with running(tutor()) as (url, manager), httpx.AsyncClient(base_url=url, timeout=20) as http:
        async with Learner(url, http, manager, "ana") as first:
            greeting = await first.say("hello")
            assert "So far you practised nothing yet" in greeting and "new word is hola" in greeting
            await first.say("gracias")
            await first.say("gracias")
            assert "Careful" in await first.say("you is my friend")
            assert await first.say("i am an intermediate learner") == "Noted: you are intermediate."
        memory = await memory_of(http, "ana")
        assert memory == {"words": ["hola"], "practice": {"gracias": 2}, "grammar": ["subject-verb agreement"],
                          "level": "intermediate"}

        async with Learner(url, http, manager, "ana") as second:
            system = second.context()[0]["content"]
            assert system.startswith("You are a patient Spanish tutor")
            assert "words introduced: hola; practice: gracias (2)" in system and "level: intermediate" in system
            greeting = await second.say("hello")
            assert "So far you practised gracias (2)" in greeting and "new word is gracias" in greeting
        assert (await memory_of(http, "ana"))["words"] == ["hola", "gracias"]
        history = (await http.get("/users/ana/memory", params={"history": 1})).json()["history"]
        assert history[0]["by"] == second.id and history[-1]["by"] == first.id

        async with Learner(url, http, manager, "bo") as other:  # another learner starts from nothing
            assert "nothing yet" in await other.say("hello")


async def test_two_sessions_of_one_learner_at_once_lose_no_practice():
    async with running(tutor()) as (url, manager), httpx.AsyncClient(base_url=url, timeout=20) as http:
        async with Learner(url, http, manager, "ana") as a, Learner(url, http, manager, "ana") as b:
            async def practise(learner: Learner, word: str) -> None:
                for _ in range(5):
                    await learner.say(word)
                    await learner.say("hola")

            await asyncio.gather(practise(a, "agua"), practise(b, "libro"))
        practice = (await memory_of(http, "ana"))["practice"]
        assert practice == {"agua": 5, "libro": 5, "hola": 10}
        assert (await http.get("/users/ana/memory")).json()["version"] == 20


async def test_usage_is_counted_once_per_session_user_and_provider_and_never_labelled_by_user():
    async with running(tutor()) as (url, manager), httpx.AsyncClient(base_url=url, timeout=20) as http:
        ids = []
        for user in ("ana", "ana", "bo"):
            async with Learner(url, http, manager, user) as learner:
                await learner.say("hello", audio=True)
                await learner.say("gracias", audio=True)
                ids.append(learner.id)
        sessions = [(await http.get(f"/sessions/{i}")).json()["usage"] for i in ids]
        for usage in sessions:
            assert usage["llm/scripted/scripted/prompt_tokens"] > 100 and usage["llm/scripted/scripted/completion_tokens"] > 10
            assert usage["tts/espeak/-/characters"] > 40
            assert usage["llm/scripted/scripted/cost"] == pytest.approx(
                usage["llm/scripted/scripted/prompt_tokens"] * 5e-7 + usage["llm/scripted/scripted/completion_tokens"] * 1.5e-6)
        ana = (await http.get("/users/ana/usage", params={"since": time.time() - 60})).json()
        for key in sessions[0]:
            assert ana["counts"][key] == pytest.approx(sessions[0][key] + sessions[1][key])
        assert ana["totals"]["tokens"] == pytest.approx(
            sum(s["llm/scripted/scripted/prompt_tokens"] + s["llm/scripted/scripted/completion_tokens"] for s in sessions[:2]))
        metrics = (await http.get("/metrics")).text
        line = next(x for x in metrics.splitlines() if x.startswith("framegraph_usage_total{")
                    and 'metric="prompt_tokens"' in x)
        assert 'agent="language_tutor"' in line and 'provider="scripted"' in line
        assert float(line.split()[-1]) == pytest.approx(sum(s["llm/scripted/scripted/prompt_tokens"] for s in sessions))
        assert "ana" not in metrics and "bo" not in metrics.replace("bot", "")


async def test_a_runaway_session_hears_the_budget_sentence_and_ends_and_the_day_budget_refuses_the_next():
    text = TUTOR.read_text().replace("per_session: {tokens: 4000}", "per_session: {tokens: 1500}").replace(
        "per_day: {tokens: 20000}", "per_day: {tokens: 2500}")  # the tutor's own figures, smaller: fewer turns
    agent = served_on(load_agent_text(text, TUTOR), "websocket", port=0, client_context=["send-text"])
    async with running(agent) as (url, manager), httpx.AsyncClient(base_url=url, timeout=20) as http:
        async with Learner(url, http, manager, "ana") as learner:
            for turn in range(40):  # noqa: B007 (read after the loop)
                sent = await learner.client.send(send_text("gracias", audio=True))
                try:
                    await learner.client.wait_for("bot-llm-stopped", after=sent, timeout=30)
                except TimeoutError:
                    break
                if any(t > sent and cm.kind_of(m) == "bot-tts-text" and "enough practice" in json.dumps(m)
                       for t, m in learner.client.messages):
                    break
            await learner.client.wait_for("bot-tts-text", text="enough practice", timeout=30)
            for _ in range(200):
                if learner.id not in manager.live:
                    break
                await asyncio.sleep(0.05)
            assert learner.id not in manager.live and turn < 39
        session = (await http.get(f"/sessions/{learner.id}")).json()
        assert session["state"] == "ENDED"
        assert any("over this session's budget (tokens" in e["message"] for e in session["errors"])
        spent = session["usage"]["llm/scripted/scripted/prompt_tokens"] + session["usage"]["llm/scripted/scripted/completion_tokens"]
        assert 1500 <= spent < 1500 + 600  # ended at the first turn past the limit

        async with Learner(url, http, manager, "ana") as second:  # the day's budget is not yet used up
            for _ in range(40):
                if (await http.post("/sessions", json={"user": "ana"})).status_code == 429:
                    break
                await second.say("gracias", audio=True)
        refused = await http.post("/sessions", json={"user": "ana"})
        assert refused.status_code == 429
        assert "user ana has used this day's budget (tokens" in refused.json()["detail"]
        assert (await http.post("/start", json={"body": {"user": "ana"}})).status_code == 429
        assert (await http.post("/sessions", json={"user": "bo"})).status_code == 201  # others are not affected


async def test_a_resumed_session_keeps_counting_against_its_own_budget():
    text = TUTOR.read_text().replace("per_session: {tokens: 4000}", "per_session: {tokens: 500}")
    agent = served_on(load_agent_text(text, TUTOR), "websocket", port=0, client_context=["send-text"])
    async with running(agent) as (url, manager), httpx.AsyncClient(base_url=url, timeout=20) as http:
        async with Learner(url, http, manager, "ana") as learner:
            await learner.say("hello")
            await learner.say("gracias")
        first = (await http.get(f"/sessions/{learner.id}")).json()
        assert first["state"] == "DISCONNECTED"
        spent = first["usage"]["llm/scripted/scripted/prompt_tokens"] + first["usage"]["llm/scripted/scripted/completion_tokens"]
        assert 250 < spent < 500  # under the limit: the session goes on after a resume
        resumed = await websockets.connect(url.replace("http://", "ws://")
                                           + f"/sessions/{learner.id}/ws?token={learner.token}")
        client = JsonClient(resumed)
        await client.send(cm.client_ready())
        await client.wait_for(cm.BOT_READY, timeout=30)
        live = manager.live[learner.id]

        def over_budget() -> bool:
            return any(e["event"] == "budget" for e in live.events)

        sent = await client.send(send_text("gracias"))  # one turn: over 500 with the first connection's, not alone
        await client.wait_for("bot-llm-stopped", after=sent, timeout=30)
        for _ in range(100):  # the check runs when the assistant's turn is stored
            if over_budget():
                break
            await asyncio.sleep(0.05)
        assert over_budget()
        for _ in range(400):  # the budget's sentence is spoken, then the session ends by itself
            if learner.id not in manager.live:
                break
            await asyncio.sleep(0.05)
        assert learner.id not in manager.live
        await resumed.close()
        ended = (await http.get(f"/sessions/{learner.id}")).json()
        assert ended["state"] == "ENDED" and any("this session's budget" in e["message"] for e in ended["errors"])

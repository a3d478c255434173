"""The language tutor (configs/language_tutor.yaml) remembers each learner, end to end over WebSocket.

Real server, real store (SQLite), the tutor's own graph (pocketsphinx, the
scripted LLM, espeak-ng), JSON RTVI WebSocket clients that type their turns
(``send-text``): two sessions of one learner in a row (the second greets with
what the first practised and picks a new word), and two at once (no write lost).
"""

import asyncio

import httpx
import websockets
from conftest import ROOT
from test_client_protocol import JsonClient, send_text
from transport_kit import on_transport

from pipelines.server.app import running
from transports import client_messages as cm

TUTOR = ROOT / "configs" / "language_tutor.yaml"


def tutor():
    return on_transport(TUTOR, "websocket", client_context=["send-text"])


class Learner:
    """One session of a learner: opened with ``POST /sessions {user}``, joined on its WebSocket."""

    def __init__(self, url: str, http: httpx.AsyncClient, manager, user: str):
        self.url, self.http, self.manager, self.user = url, http, manager, user

    async def __aenter__(self) -> "Learner":
        created = (await self.http.post("/sessions", json={"user": self.user})).json()
        self.id = created["id"]
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

    async def say(self, text: str) -> str:
        """Types ``text`` and returns the tutor's whole reply to it."""
        before = len(self.context())
        sent = await self.client.send(send_text(text))
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

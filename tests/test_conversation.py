"""The ``conversation:`` block: a greeting when the participant is ready, check-ins on a silent user, then the end."""

import asyncio
import json
import time

import pytest
import websockets
from conftest import ROOT
from transport_kit import wait_until

from pipelines.errors import ConfigErrors
from pipelines.server import running
from pipelines.validate import load_agent_text
from transports import client_messages as cm

GREETER = (ROOT / "configs" / "greeter.yaml").read_text()


def greeter(conversation: str) -> str:
    start = GREETER.index("conversation:")
    end = GREETER.index("processors:")
    return GREETER[:start] + conversation + GREETER[end:]


async def test_greets_then_checks_in_on_a_silent_user_then_ends_the_session():
    text = greeter("""conversation:
  greeting: {text: "Hello! Ask me about the weather."}
  idle: {after_secs: 1, text: "Are you still there?", end_after: 2}
""")
    agent = load_agent_text(text, ROOT / "configs" / "greeter.yaml")
    async with running(agent) as (url, server):
        async with websockets.connect(url.replace("http://", "ws://") + "/ws") as ws:
            received: list[tuple[float, dict]] = []

            async def read():
                try:
                    async for data in ws:
                        received.append((time.monotonic(), json.loads(data)))
                except websockets.ConnectionClosed:
                    pass

            reader = asyncio.create_task(read())
            await ws.send(json.dumps(cm.client_ready()))
            await asyncio.wait_for(reader, 30)  # the agent ends the session: the connection closes
        said = [m["data"]["text"] for _, m in received if cm.kind_of(m) == "bot-llm-text"]
        assert said[0] == "Hello! Ask me about the weather."
        assert said[1:] == ["Are you still there?", "Are you still there?"]
        stopped = [t for t, m in received if cm.kind_of(m) == cm.BOT_STOPPED_SPEAKING]
        check_ins = [t for t, m in received if cm.kind_of(m) == "bot-llm-started"][1:]
        assert all(0.8 <= c - s <= 5 for s, c in zip(stopped, check_ins))  # about after_secs after the bot spoke
        (session,) = server.sessions.values()
        await wait_until(lambda: session.state == "ended", 10, "the session to end")


def test_an_utterance_is_text_or_instruction_not_both():
    with pytest.raises(ConfigErrors, match="conversation.greeting.*either text or instruction"):
        load_agent_text(greeter('conversation:\n  greeting: {text: "hi", instruction: "greet"}\n'))

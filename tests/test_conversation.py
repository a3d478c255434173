"""The ``conversation:`` block: a greeting when the participant is ready, check-ins on a silent user, then the end."""

import asyncio
import json
import re
import time

import pytest
import websockets
from conftest import ROOT
from transport_kit import wait_until

from pipelines.client_protocol import messages as cm
from pipelines.errors import ConfigErrors
from pipelines.server.app import running
from pipelines.sessions.model import SessionState
from pipelines.validate import load_agent_text

GREETER = (ROOT / "configs" / "greeter.yaml").read_text()


def on_synthetic(text: str) -> str:
    """``text`` (a config whose transport block is in block style) on the synthetic transport."""
    transport = re.search(r"^transport:\n(?:  .*\n)+", text, re.M)
    assert transport, "the config's transport block is not where the test expects it"
    return text.replace(transport.group(0), "transport: {type: synthetic, audio_in_sample_rate: 16000, "
                        "audio_out_sample_rate: 24000}\n")


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
        assert all(0.8 <= c - s <= 5 for s, c in zip(stopped, check_ins, strict=False))  # about after_secs after the bot spoke
        (session,) = server.sessions.values()
        await wait_until(lambda: session.state == SessionState.DISCONNECTED, 10, "the session to end")


def test_an_utterance_is_text_or_instruction_not_both():
    with pytest.raises(ConfigErrors, match="conversation.greeting.*either text or instruction"):
        load_agent_text(greeter('conversation:\n  greeting: {text: "hi", instruction: "greet"}\n'))


def test_turn_completion_passes_pipecats_marker_strategies_to_the_user_aggregator():
    from pipecat.turns.user_stop import LLMTurnCompletionUserTurnStopStrategy
    from pipecat.turns.user_turn_strategies import FilterIncompleteUserTurnStrategies

    from pipelines.builder import build_agent
    from pipelines.pipecat_compat import user_turn_strategies

    for enabled in (True, False):
        text = GREETER.replace("conversation:\n", f"conversation:\n  turn_completion: {str(enabled).lower()}\n")
        built = build_agent(load_agent_text(on_synthetic(text)))
        strategies = user_turn_strategies(built.processors["user_context"])
        assert isinstance(strategies, FilterIncompleteUserTurnStrategies) is enabled
        assert any(isinstance(s, LLMTurnCompletionUserTurnStopStrategy) for s in strategies.stop) is enabled


def test_an_idle_check_in_without_a_context_block_is_a_config_error():
    text = """version: 1
name: no_context
transport: {type: synthetic}
conversation:
  idle: {after_secs: 5, text: "Still there?"}
pipeline: [input, output]
"""
    with pytest.raises(ConfigErrors, match=r"<text>:\d+:\d+: conversation.idle: an idle check-in needs a context block"):
        load_agent_text(text)

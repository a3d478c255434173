"""The ``scripted`` LLM and personas: rules, streaming, interruption, templates."""

import asyncio
import time
from pathlib import Path

import pytest
from pipecat.frames.frames import (
    InterruptionWorkerFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
)
from pipecat.utils.time import time_now_iso8601

from pipelines.errors import ConfigErrors
from pipelines.persona import render_persona
from pipelines.server.manager import with_variables
from pipelines.testing import AgentHarness
from pipelines.validate import load_agent, load_agent_text
from processors.llm.scripted import tokens

AGENT = """
version: 1
name: scripted
transport: {{type: synthetic}}
context: {{type: llm_context, system_prompt: "You are helpful."{context}}}
processors:
  llm:
    type: scripted
    rules:
      - {{match: "weather|rain", reply: "It is sunny today. Enjoy it!"}}
      - {{match: "\\\\bhello\\\\b", reply: "Hello{greeting}."}}
      - {{match: "story", reply: "{story}"}}
      - {{match: "my name", recall: "call me (\\\\w+)", reply: "Your name is \\\\1."}}
    fallback: "Sorry, say that again?"
    token_delay_ms: {delay}
pipeline: [input, user_context, llm, output, assistant_context]
"""

STORY = " ".join(f"Sentence number {i} of a long story." for i in range(40))


def agent(*, delay: float = 0, context: str = "", greeting: str = "") -> str:
    return AGENT.format(delay=delay, context=context, greeting=greeting, story=STORY)


def user_says(text: str) -> TranscriptionFrame:
    return TranscriptionFrame(text, "user", time_now_iso8601(), finalized=True)


async def reply_to(h: AgentHarness, text: str) -> str:
    """What the LLM answers when the user says ``text`` (a fresh probe sees only this reply)."""
    llm = h.probe("llm")
    await h.inject(user_says(text), at="user_context")
    await llm.wait_for(LLMFullResponseEndFrame, timeout=10)
    return "".join(f.text for f in llm.of_type(LLMTextFrame))


def test_tokens_keep_the_whitespace_before_each_word():
    assert tokens("It is  sunny.\nYes") == ["It", " is", "  sunny.", "\nYes"]
    assert "".join(tokens(STORY)) == STORY


async def test_first_matching_rule_answers_case_insensitively_else_the_fallback():
    async with AgentHarness.from_text(agent()) as h:
        assert await reply_to(h, "Will it RAIN tomorrow?") == "It is sunny today. Enjoy it!"
        assert await reply_to(h, "hello there") == "Hello."
        assert await reply_to(h, "othello") == "Sorry, say that again?"


async def test_a_recall_rule_answers_from_earlier_user_turns_only():
    async with AgentHarness(load_agent_text(agent())) as h:
        assert await reply_to(h, "what is my name?") == "Sorry, say that again?"  # nothing to recall yet
        await reply_to(h, "please call me Ada")
        await reply_to(h, "hello")
        assert await reply_to(h, "what is my name?") == "Your name is Ada."


async def test_reply_streams_token_by_token_between_start_and_end():
    async with AgentHarness.from_text(agent(delay=30)) as h:
        llm = h.probe("llm")
        started = time.monotonic()
        await h.inject(user_says("weather?"), at="user_context")
        await llm.wait_for(LLMFullResponseEndFrame, timeout=10)
        elapsed = time.monotonic() - started
        kinds = [type(f) for f in llm.frames if isinstance(f, (LLMFullResponseStartFrame, LLMTextFrame,
                                                                  LLMFullResponseEndFrame))]
        assert kinds == [LLMFullResponseStartFrame] + [LLMTextFrame] * 6 + [LLMFullResponseEndFrame]
        assert elapsed >= 6 * 0.03


async def test_interruption_cancels_the_reply_mid_stream():
    async with AgentHarness.from_text(agent(delay=20)) as h:
        llm = h.probe("llm")
        await h.inject(user_says("tell me a story"), at="user_context")
        await llm.wait_for(LLMTextFrame, count=5, timeout=10)
        await h.inject(InterruptionWorkerFrame(), at="llm", upstream=True)
        await asyncio.sleep(0.3)
        said = len(llm.of_type(LLMTextFrame))
        await asyncio.sleep(0.3)
        assert len(llm.of_type(LLMTextFrame)) == said < len(tokens(STORY)) // 2
        assert not llm.of_type(LLMFullResponseEndFrame)
        # The service answers the next turn normally.
        assert await reply_to(h, "weather") == "It is sunny today. Enjoy it!"


async def test_persona_fills_the_system_prompt_and_the_replies():
    context = ', system_prompt: "You teach {subject} to {learner_level} learners.", ' \
              'variables: {subject: French, learner_level: beginner}'
    text = agent(context=context, greeting=" from your {subject} tutor").replace(
        'system_prompt: "You are helpful.", ', "")
    async with AgentHarness.from_text(text) as h:
        assert await reply_to(h, "hello") == "Hello from your French tutor."
        system = h.built.llm_context.get_messages()[0]
        assert system == {"role": "system", "content": "You teach French to beginner learners."}


@pytest.mark.parametrize(
    "text, key, message",
    [
        (agent(context=', variables: {subject: French}').replace('"You are helpful."', '"Teach {subjct}."'),
         "context", "'{subjct}' is used but variables has no 'subjct'"),
        (agent(context=', variables: {subject: French}'), "context", "variable 'subject' is not used"),
        (agent().replace('"weather|rain"', '"weather("'), "processors.llm.rules.0.match", "invalid regular expression"),
    ],
)
def test_config_mistakes_are_one_line_errors_naming_the_key(text, key, message):
    with pytest.raises(ConfigErrors) as caught:
        load_agent_text(text, "agent.yaml")
    assert "\n" not in str(caught.value) and key in str(caught.value) and message in str(caught.value)


def test_persona_placeholders_must_be_plain_names():
    with pytest.raises(ValueError, match="plain variable name"):
        render_persona("Hi {user.name}", {"user": "x"})
    assert render_persona("Use {{braces}} for {x}", {"x": "y"}) == "Use {braces} for y"


async def test_language_tutor_config_speaks_in_character():
    tutor = Path(__file__).resolve().parent.parent / "configs" / "language_tutor.yaml"
    async with AgentHarness.from_file(tutor, transport_params={"realtime": False}) as h:
        assert await reply_to(h, "hello") == (  # no user: its memory reads as empty (docs/users.md)
            "Hello! Today we practise Spanish at beginner level. So far you practised nothing yet. "
            "Today's new word is hola. Say hola.")
        system = h.built.llm_context.get_messages()[0]["content"]
        assert system.startswith("You are a patient Spanish tutor for a beginner learner.")


async def test_a_rule_with_when_answers_only_for_its_persona_variables():
    tutor = load_agent(Path(__file__).resolve().parent.parent / "configs" / "language_tutor.yaml")
    french = with_variables(tutor, {"subject": "french", "learner_level": "advanced"})
    async with AgentHarness(french, transport_params={"realtime": False}) as h:
        assert await reply_to(h, "hello") == (
            "Hello! Today we practise french at advanced level. In french, hello is bonjour.")
        assert await reply_to(h, "how do i say thank you") == "In french, thank you is merci. Please say merci."
    german = with_variables(tutor, {"subject": "German"})
    async with AgentHarness(german, transport_params={"realtime": False}) as h:
        assert await reply_to(h, "hello") == (
            "Hello! Today we practise German at beginner level. Ask me how to say a word.")


def test_a_when_naming_no_persona_variable_is_an_error_naming_the_rule():
    text = agent().replace('{match: "weather|rain"', '{when: {colour: red}, match: "weather|rain"')
    text = text.replace('system_prompt: "You are helpful."', 'system_prompt: "You are {mood}.", variables: {mood: kind}')
    with pytest.raises(ConfigErrors, match=r"rules\[0\]\.when: 'colour' is not a persona variable"):
        AgentHarness.from_text(text)

"""The ``scripted`` LLM: deterministic replies from rules written in YAML.

It stands in for a language model wherever determinism matters (tests, the
offline default agent): the last user message of the context is matched
against ordered regular expressions and the first rule that matches gives
the reply, or the fallback does. Replies stream token by token with a
configurable delay, so the TTS sees text arrive as it would from a real
model, and an interruption can land in the middle of a reply.

A rule may call a tool instead (see :mod:`processors.tools`): it says its
``say`` text if any, calls the tool through pipecat's function calling (the
same path a real model's tool call takes: the call and its result enter the
context), and when the result comes back speaks ``reply`` filled from the
result's fields and the match's named groups (``on_error`` when the result
is ``{"error": ...}``). A call cancelled by an interruption has no result,
so nothing of it is spoken.
"""

import asyncio
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipecat.frames.frames import (
    FunctionCallFromLLM,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
)
from pipecat.metrics.metrics import LLMTokenUsage
from pipecat.processors.aggregators.llm_context import LLMContext

from processors.llm.answering import ContextAnsweringLLMService

# A token is a word with the whitespace before it, as chat models stream them.
_TOKEN = re.compile(r"\s*\S+")


@dataclass(frozen=True)
class Rule:
    """Reply ``reply`` when ``pattern`` is found in the user's last message, or call ``tool`` first.

    With ``recall``, the rule applies only when ``recall`` is also found in an
    earlier user message (the newest that matches); ``\\1``... in ``reply``
    are its groups. That lets a script answer a follow-up that needs the
    earlier turns (a resumed conversation's context).
    """

    pattern: re.Pattern
    reply: str
    recall: re.Pattern | None = None
    tool: str | None = None
    #: The call's arguments; string values are filled from the match's named groups.
    arguments: Mapping[str, Any] = field(default_factory=dict)
    #: Spoken before the tool is called.
    say: str = ""
    #: Spoken when the tool's result is ``{"error": ...}`` (the fallback when empty).
    on_error: str = ""
    #: Memory writes made when the rule answers: (forget, field, value template).
    remember: tuple[tuple[bool, str, str], ...] = ()


def fill_template(template: str, values: Mapping[str, Any]) -> str | None:
    """``template`` with its ``{name}`` fields from ``values``; None when one is missing or malformed."""
    try:
        return template.format_map(values)
    except (KeyError, IndexError, ValueError, AttributeError):
        return None


def estimate_tokens(text: str) -> int:
    """About how many tokens a model would count in ``text`` (four characters a token; at least one for any text)."""
    return (len(text) + 3) // 4


def tokens(text: str) -> list[str]:
    """Splits ``text`` into the tokens a scripted reply streams."""
    return _TOKEN.findall(text)


def user_texts(context: LLMContext) -> list[str]:
    """The texts of the user messages in ``context``, newest first."""
    texts = []
    for message in reversed(context.get_messages()):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.append(" ".join(part.get("text", "") for part in content if isinstance(part, dict)))
    return texts


class ScriptedLLMService(ContextAnsweringLLMService):
    """A pipecat LLM service whose answers come from ordered pattern rules.

    Toward the context aggregators it behaves like any pipecat LLM: it
    consumes ``LLMContextFrame`` and answers with ``LLMFullResponseStartFrame``,
    ``LLMTextFrame`` tokens and ``LLMFullResponseEndFrame``. An interruption
    cancels the reply where it is (pipecat cancels the frame being
    processed); no end frame follows a cancelled reply.
    """

    def __init__(
        self, *, rules: list[Rule], fallback: str, token_delay_s: float = 0.0,
        variables: Mapping[str, str] | None = None, memory: Any = None, **kwargs,
    ):
        """Creates the service.

        Args:
            rules: Tried in order; the first whose pattern is found answers.
            fallback: The reply when no rule matches ("" for no reply at all).
            token_delay_s: Pause before each token, as a model's generation time.
            variables: Persona variables, also available to tool rules' replies.
            memory: The session user's memory (``pipelines.sessions.memory``), which
                rules' ``remember`` writes go to; None: they are skipped.
            **kwargs: Passed to pipecat's ``LLMService`` (``name``...).
        """
        super().__init__(model="scripted", **kwargs)
        self._rules = rules
        self._fallback = fallback
        self._token_delay_s = token_delay_s
        self._variables = dict(variables or {})
        self._memory = memory
        #: Tool calls in flight: tool_call_id -> (rule, the match's named groups).
        self._calls: dict[str, tuple[Rule, dict[str, str]]] = {}

    def reply_to(self, text: str, earlier: list[str] = ()) -> str:
        """The reply the rules give to ``text`` after the ``earlier`` user texts, newest first (a tool rule's ``say``)."""
        rule, _, reply = self._match(text, earlier)
        if rule is None:
            return self._fallback
        return rule.say if rule.tool else reply

    def _match(self, text: str, earlier: list[str]) -> tuple[Rule | None, dict[str, str], str]:
        """The first rule that applies, the match's named groups, and its reply (``recall`` groups expanded)."""
        for rule in self._rules:
            if not (match := rule.pattern.search(text)):
                continue
            groups = {k: v for k, v in match.groupdict().items() if v is not None}
            if rule.recall is None:
                return rule, groups, rule.reply
            found = next((m for m in map(rule.recall.search, earlier) if m), None)
            if found:
                return rule, groups, found.expand(rule.reply)
        return None, {}, self._fallback

    def _reply_to_result(self, message: dict) -> str | None:
        """The reply to a tool result message of one of our calls, or None if it is not one."""
        call = self._calls.pop(message.get("tool_call_id"), None)
        if call is None:
            return None
        rule, groups = call
        content = message.get("content")
        try:
            result = json.loads(content) if isinstance(content, str) else content
        except ValueError:
            result = content  # "COMPLETED" and other plain words
        values = {**self._variables, **groups, "result": content}
        if isinstance(result, dict):
            values.update(result)
            if "error" in result:
                return rule.on_error or self._fallback
        return fill_template(rule.reply, values) or self._fallback

    def can_generate_metrics(self) -> bool:
        """Yes: it reports usage (estimated tokens), so usage and budgets work offline."""
        return True

    async def _report_usage(self, context: LLMContext, reply: str) -> None:
        """Reports estimated tokens (about four characters each, as for English) like a model's usage."""
        prompt = estimate_tokens(json.dumps(context.get_messages(), default=str))
        completion = estimate_tokens(reply)
        await self.start_llm_usage_metrics(
            LLMTokenUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion))

    async def _answer(self, context: LLMContext):
        messages = context.get_messages()
        last = messages[-1] if messages else {}
        if isinstance(last, dict) and last.get("role") == "tool":
            reply = self._reply_to_result(last)
            if reply is not None:
                await self._report_usage(context, reply)
                await self._speak(reply)
            return
        texts = user_texts(context)
        rule, groups, reply = self._match(texts[0] if texts else "", texts[1:])
        if rule is not None and rule.remember:
            await self._remember(rule, groups)
        if rule is None or not rule.tool:
            await self._report_usage(context, reply)
            await self._speak(reply)
            return
        await self._report_usage(context, rule.say)
        await self._call(rule, groups, context)

    async def _remember(self, rule: Rule, groups: dict[str, str]) -> None:
        """Makes the rule's memory writes (through the session's memory: compare-and-set, field-level)."""
        if self._memory is None:
            return
        values = {**self._variables, **groups}
        for forget, name, template in rule.remember:
            await self._memory.tool("forget" if forget else "remember",
                                    {"field": name, "value": fill_template(template, values) or template})

    async def _speak(self, text: str, *, then=None):
        await self.push_frame(LLMFullResponseStartFrame())
        await self.start_ttfb_metrics()
        for token in tokens(text):
            if self._token_delay_s:
                await asyncio.sleep(self._token_delay_s)
            await self.stop_ttfb_metrics()
            await self._push_llm_text(token)
        if then is not None:
            await then()
        await self.push_frame(LLMFullResponseEndFrame())

    async def _call(self, rule: Rule, groups: dict[str, str], context: LLMContext):
        """Says the rule's ``say``, then calls its tool as a model's tool call would."""
        arguments = {
            name: (fill_template(value, groups) or value) if isinstance(value, str) else value
            for name, value in rule.arguments.items()
        }
        call_id = f"call_{uuid.uuid4().hex[:12]}"
        self._calls[call_id] = (rule, groups)

        async def run_call():
            await self.run_function_calls(
                [FunctionCallFromLLM(function_name=rule.tool, tool_call_id=call_id, arguments=arguments,
                                     context=context)]
            )

        await self._speak(rule.say, then=run_call)

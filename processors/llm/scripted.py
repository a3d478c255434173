"""The ``scripted`` LLM: deterministic replies from rules written in YAML.

It stands in for a language model wherever determinism matters (tests, the
offline default agent): the last user message of the context is matched
against ordered regular expressions and the first rule that matches gives
the reply, or the fallback does. Replies stream token by token with a
configurable delay, so the TTS sees text arrive as it would from a real
model, and an interruption can land in the middle of a reply.
"""

import asyncio
import re
from dataclasses import dataclass

from pipecat.frames.frames import (
    Frame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings

# A token is a word with the whitespace before it, as chat models stream them.
_TOKEN = re.compile(r"\s*\S+")


@dataclass(frozen=True)
class Rule:
    """Reply ``reply`` when ``pattern`` is found in the user's last message.

    With ``recall``, the rule applies only when ``recall`` is also found in an
    earlier user message (the newest that matches); ``\\1``... in ``reply``
    are its groups. That lets a script answer a follow-up that needs the
    earlier turns (a resumed conversation's context).
    """

    pattern: re.Pattern
    reply: str
    recall: re.Pattern | None = None


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



class ScriptedLLMService(LLMService):
    """A pipecat LLM service whose answers come from ordered pattern rules.

    Toward the context aggregators it behaves like any pipecat LLM: it
    consumes ``LLMContextFrame`` and answers with ``LLMFullResponseStartFrame``,
    ``LLMTextFrame`` tokens and ``LLMFullResponseEndFrame``. An interruption
    cancels the reply where it is (pipecat cancels the frame being
    processed); no end frame follows a cancelled reply.
    """

    def __init__(self, *, rules: list[Rule], fallback: str, token_delay_s: float = 0.0, **kwargs):
        """Creates the service.

        Args:
            rules: Tried in order; the first whose pattern is found answers.
            fallback: The reply when no rule matches ("" for no reply at all).
            token_delay_s: Pause before each token, as a model's generation time.
            **kwargs: Passed to pipecat's ``LLMService`` (``name``...).
        """
        settings = LLMSettings(
            model="scripted",
            system_instruction=None,
            temperature=None,
            max_tokens=None,
            top_p=None,
            top_k=None,
            frequency_penalty=None,
            presence_penalty=None,
            seed=None,
            filter_incomplete_user_turns=False,
            user_turn_completion_config=None,
        )
        super().__init__(settings=settings, **kwargs)
        self._rules = rules
        self._fallback = fallback
        self._token_delay_s = token_delay_s

    def reply_to(self, text: str, earlier: list[str] = ()) -> str:
        """The reply the rules give to ``text``, after the ``earlier`` user texts (newest first)."""
        for rule in self._rules:
            if not rule.pattern.search(text):
                continue
            if rule.recall is None:
                return rule.reply
            found = next((m for m in map(rule.recall.search, earlier) if m), None)
            if found:
                return found.expand(rule.reply)
        return self._fallback

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        """Answers ``LLMContextFrame``; passes every other frame on."""
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            await self._answer(frame.context)
        else:
            await self.push_frame(frame, direction)

    async def _answer(self, context: LLMContext):
        texts = user_texts(context)
        reply = self.reply_to(texts[0] if texts else "", texts[1:])
        await self.push_frame(LLMFullResponseStartFrame())
        await self.start_ttfb_metrics()
        for token in tokens(reply):
            if self._token_delay_s:
                await asyncio.sleep(self._token_delay_s)
            await self.stop_ttfb_metrics()
            await self._push_llm_text(token)
        await self.push_frame(LLMFullResponseEndFrame())

"""The settings gate: runtime changes of LLM/TTS settings or the system prompt wait for the response to end.

A change that lands while the bot is generating or speaking would alter the
reply the user is hearing (a new voice mid-sentence, a prompt that the
assistant's half-finished answer no longer fits). The gate holds such a
change and applies it when that response ends or is interrupted; a second
change while one is held replaces it; each applied change is announced
through the ``on_settings_applied`` event (the server tells the client).

Place the gate after the LLM and before the TTS
(``[..., user_context, llm, settings_gate, tts, output, assistant_context]``),
where it sees the LLM's response frames going down and the output's
bot-speaking frames coming up. A response starts at
``LLMFullResponseStartFrame`` and ends when the LLM has finished *and*
(if the graph speaks) the bot has stopped speaking, or at any
``InterruptionFrame``.

How a change is applied: LLM settings go upstream to the LLM as an
``LLMUpdateSettingsFrame``; TTS settings go downstream to the TTS as a
``TTSUpdateSettingsFrame``; the system prompt replaces the system message of
the shared ``LLMContext`` (or, without a context, goes to the LLM as its
``system_instruction``).
"""

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMUpdateSettingsFrame,
    SystemFrame,
    TTSUpdateSettingsFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.settings import LLMSettings, TTSSettings
from pydantic import BaseModel, ConfigDict, model_validator


class SettingsChange(BaseModel):
    """One runtime change: any of LLM settings, TTS settings, system prompt (None: leave as is).

    ``llm`` and ``tts`` are pipecat settings by field name (``model``,
    ``temperature``, ``voice``...); names pipecat does not declare go to the
    service as its ``extra`` settings.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    llm: dict[str, Any] | None = None
    tts: dict[str, Any] | None = None
    system_prompt: str | None = None

    @model_validator(mode="after")
    def _not_empty(self):
        if self.llm is None and self.tts is None and self.system_prompt is None:
            raise ValueError("a settings change needs at least one of llm, tts, system_prompt")
        return self


@dataclass
class SettingsChangeFrame(SystemFrame):
    """Asks the gate to apply ``change`` (queue it into the worker; a system frame, so it passes a busy LLM)."""

    change: SettingsChange | None = None


@dataclass(frozen=True)
class AppliedChange:
    """What ``on_settings_applied`` reports: the change, when it was asked for and when it took effect."""

    change: SettingsChange
    requested_at: float
    applied_at: float
    held: bool
    """Whether it waited for a response to end."""


class SettingsGate(FrameProcessor):
    """Holds runtime settings changes while a response is active; applies them when it ends.

    Events:
        on_settings_applied(gate, applied: AppliedChange): a change took effect.
        on_settings_held(gate, change: SettingsChange): a change waits for the
            response to end (it replaced any change already waiting).
    """

    def __init__(
        self,
        *,
        context: LLMContext | None = None,
        speaks: bool = True,
        speech_start_timeout_s: float = 3.0,
        llm_settings: type[LLMSettings] = LLMSettings,
        tts_settings: type[TTSSettings] = TTSSettings,
        **kwargs,
    ):
        """Creates the gate.

        Args:
            context: The agent's shared LLM context (its system message is
                what a system prompt change replaces).
            speaks: Whether a TTS and an audio output follow, so a response
                ends only when the bot has stopped speaking. False for
                text-only graphs (the response ends with the LLM's).
            speech_start_timeout_s: After the LLM has finished, how long to
                wait for the bot to start speaking before deciding the
                response made no sound (an empty reply) and ending it.
            llm_settings: The LLM service's settings class (its ``Settings``),
                so its own fields are set by name rather than as ``extra``.
            tts_settings: The TTS service's settings class, likewise (e.g.
                ``EspeakTTSService.Settings`` for ``rate`` and ``pitch``).
            **kwargs: Passed to pipecat's ``FrameProcessor`` (``name``...).
        """
        super().__init__(**kwargs)
        self._context = context
        self._speaks = speaks
        self._speech_start_timeout_s = speech_start_timeout_s
        self._llm_settings = llm_settings
        self._tts_settings = tts_settings
        self._generating = False
        self._speaking = False
        self._spoke_this_response = False
        self._held: tuple[SettingsChange, float] | None = None
        self._silence_timer: asyncio.TimerHandle | None = None
        self._register_event_handler("on_settings_applied")
        self._register_event_handler("on_settings_held")

    @property
    def response_active(self) -> bool:
        """Whether a response is being generated or spoken now (a change would be held)."""
        return self._generating or self._speaking or (self._speaks and self._awaiting_speech)

    @property
    def held(self) -> SettingsChange | None:
        """The change waiting for the response to end, if any."""
        return self._held[0] if self._held else None

    @property
    def _awaiting_speech(self) -> bool:
        return self._silence_timer is not None

    async def submit(self, change: SettingsChange) -> bool:
        """Applies ``change`` now if no response is active, else holds it (replacing any held one).

        Returns:
            True when it was applied at once, False when it is held.
        """
        requested = time.time()
        if self.response_active:
            self._held = (change, requested)
            await self._call_event_handler("on_settings_held", change)
            return False
        await self._apply(change, requested, held=False)
        return True

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        """Tracks the response; takes ``SettingsChangeFrame``; passes every other frame on."""
        await super().process_frame(frame, direction)
        if isinstance(frame, SettingsChangeFrame):
            if frame.change is not None:
                await self.submit(frame.change)
            return
        await self.push_frame(frame, direction)
        if isinstance(frame, LLMFullResponseStartFrame):
            self._generating, self._spoke_this_response = True, False
            self._cancel_silence_timer()
        elif isinstance(frame, LLMFullResponseEndFrame):
            self._generating = False
            if self._speaks and not self._speaking and not self._spoke_this_response:
                self._silence_timer = self.get_event_loop().call_later(
                    self._speech_start_timeout_s, lambda: self.create_task(self._no_speech_came())
                )
            await self._release_if_done()
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._speaking, self._spoke_this_response = True, True
            self._cancel_silence_timer()
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._speaking = False
            await self._release_if_done()
        elif isinstance(frame, InterruptionFrame):
            self._generating = self._speaking = False
            self._cancel_silence_timer()
            await self._release_if_done()

    async def cleanup(self):
        """Stops the silence timer with the processor."""
        self._cancel_silence_timer()
        await super().cleanup()

    def _cancel_silence_timer(self) -> None:
        if self._silence_timer is not None:
            self._silence_timer.cancel()
            self._silence_timer = None

    async def _no_speech_came(self) -> None:
        self._silence_timer = None
        await self._release_if_done()

    async def _release_if_done(self) -> None:
        if self._held is None or self.response_active:
            return
        (change, requested), self._held = self._held, None
        await self._apply(change, requested, held=True)

    async def _apply(self, change: SettingsChange, requested: float, *, held: bool) -> None:
        if change.llm is not None:
            await self.push_frame(
                LLMUpdateSettingsFrame(delta=self._llm_settings.from_mapping(change.llm)), FrameDirection.UPSTREAM
            )
        if change.tts is not None:
            await self.push_frame(TTSUpdateSettingsFrame(delta=self._tts_settings.from_mapping(change.tts)))
        if change.system_prompt is not None:
            if self._context is not None:
                replace_system_prompt(self._context, change.system_prompt)
            else:
                delta = self._llm_settings.from_mapping({"system_instruction": change.system_prompt})
                await self.push_frame(LLMUpdateSettingsFrame(delta=delta), FrameDirection.UPSTREAM)
        applied = AppliedChange(change=change, requested_at=requested, applied_at=time.time(), held=held)
        await self._call_event_handler("on_settings_applied", applied)


def replace_system_prompt(context: LLMContext, prompt: str) -> None:
    """Makes ``prompt`` the context's system message (replacing the first one, or put first)."""
    messages = list(context.get_messages())
    for i, message in enumerate(messages):
        if isinstance(message, dict) and message.get("role") == "system":
            messages[i] = {**message, "content": prompt}
            break
    else:
        messages.insert(0, {"role": "system", "content": prompt})
    context.set_messages(messages)

"""The settings gate: runtime changes of LLM/TTS settings or the system prompt wait for the response to end.

A change that lands while the bot is generating or speaking would alter the
reply the user is hearing (a new voice mid-sentence, a prompt that the
assistant's half-finished answer no longer fits, new settings in the middle
of a tool call). The gate holds such a change and applies it when that
response ends or is interrupted.

A response is active from the user's turn end (``UserStoppedSpeakingFrame``)
until the bot's last audio of the reply: the LLM's responses, the tool calls
they make (``FunctionCallInProgressFrame`` until its result or cancel) and
the follow-up LLM run a tool result starts are all part of it. Each wait for
something to start (a reply after the turn end or a tool result, speech
after the LLM finished) is bounded, so a turn that brings no reply never
holds a change for long; any ``InterruptionFrame`` ends the response at once.

Changes held during one response queue up; when it ends they are merged
field by field in the order they came (a later value of the same field
wins) and applied as one, and every one of them is reported applied
(``on_settings_applied`` with all their ids).

Applying is all or nothing: the change is checked against the services'
settings (``SettingsModel``) and every update frame is prepared before the
first is pushed; if any step fails nothing is pushed, the old settings stay
and ``on_settings_failed`` (or, for a change applied at once, the exception)
says why.

Place the gate after the LLM and before the TTS
(``[..., user_context, llm, settings_gate, tts, output, assistant_context]``),
where it sees the LLM's response and tool-call frames going down and the
output's bot-speaking frames coming up. LLM settings go upstream to the LLM
as an ``LLMUpdateSettingsFrame``; TTS settings go downstream to the TTS as a
``TTSUpdateSettingsFrame``; the system prompt replaces the system message of
the shared ``LLMContext`` (or, without a context, goes to the LLM as its
``system_instruction``).
"""

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    FunctionCallCancelFrame,
    FunctionCallInProgressFrame,
    FunctionCallResultFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMUpdateSettingsFrame,
    SystemFrame,
    TTSUpdateSettingsFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.settings import LLMSettings, TTSSettings
from pydantic import BaseModel, ConfigDict, model_validator

from pipelines.sessions.settings_model import BadSettings, SettingsModel


class SettingsChange(BaseModel):
    """One runtime change: any of LLM settings, TTS settings, system prompt (None: leave as is).

    ``llm`` and ``tts`` are the services' pipecat settings by field name
    (``model``, ``temperature``, ``voice``, ``rate``...); the server checks
    them against the agent's services (``SettingsModel``) before accepting.
    Other keys are kept (``unknown``) only so that the check can name them
    with the fields allowed; no change with one is ever applied.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    llm: dict[str, Any] | None = None
    tts: dict[str, Any] | None = None
    system_prompt: str | None = None

    @model_validator(mode="after")
    def _not_empty(self):
        if self.llm is None and self.tts is None and self.system_prompt is None and not self.model_extra:
            raise ValueError("a settings change needs at least one of llm, tts, system_prompt")
        return self

    @property
    def unknown(self) -> list[str]:
        """Keys given that are none of ``llm``, ``tts``, ``system_prompt``."""
        return sorted(self.model_extra or {})

    def then(self, later: "SettingsChange") -> "SettingsChange":
        """This change with ``later`` laid over it field by field (``later``'s value of a field wins)."""
        merged: dict[str, Any] = {}
        for key in ("llm", "tts"):
            mine, theirs = getattr(self, key), getattr(later, key)
            if mine is not None or theirs is not None:
                merged[key] = {**(mine or {}), **(theirs or {})}
        prompt = later.system_prompt if later.system_prompt is not None else self.system_prompt
        return SettingsChange(**merged, system_prompt=prompt)


def new_change_id() -> str:
    """A fresh id for a settings change (what its caller is told, and what ``settings-applied`` lists)."""
    return uuid.uuid4().hex[:16]


@dataclass
class SettingsChangeFrame(SystemFrame):
    """Asks the gate to apply ``change`` (queue it into the worker; a system frame, so it passes a busy LLM)."""

    change: SettingsChange | None = None
    change_id: str | None = None


@dataclass(frozen=True)
class PendingChange:
    """A change waiting for the response to end: its id, the change and when it was asked for."""

    id: str
    change: SettingsChange
    requested_at: float


@dataclass(frozen=True)
class AppliedChange:
    """What ``on_settings_applied`` reports: the (merged) change, whose it was, when asked for and applied."""

    change: SettingsChange
    requested_at: float
    applied_at: float
    held: bool
    """Whether it waited for a response to end."""
    change_ids: tuple[str, ...] = ()
    """The ids of the changes applied together (one, or every change held during the response)."""


@dataclass(frozen=True)
class FailedChange:
    """What ``on_settings_failed`` reports: held changes that could not be applied (nothing of them was)."""

    change: SettingsChange
    change_ids: tuple[str, ...]
    error: str


class SettingsNotApplied(Exception):
    """Applying a change failed; nothing of it was applied and the old settings stay."""


class SettingsGate(FrameProcessor):
    """Holds runtime settings changes while a response is active; applies them when it ends.

    Events:
        on_settings_applied(gate, applied: AppliedChange): a change (or the
            merged changes held during a response) took effect.
        on_settings_held(gate, pending: PendingChange): a change waits for the response to end.
        on_settings_failed(gate, failed: FailedChange): held changes could not be
            applied; the old settings stay.
    """

    def __init__(
        self,
        *,
        context: LLMContext | None = None,
        speaks: bool = True,
        speech_start_timeout_s: float = 3.0,
        reply_start_timeout_s: float = 5.0,
        llm_settings: type[LLMSettings] = LLMSettings,
        tts_settings: type[TTSSettings] = TTSSettings,
        model: SettingsModel | None = None,
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
            reply_start_timeout_s: After the user's turn ended or a tool's
                result came, how long to wait for the LLM to start its reply
                before deciding none comes.
            llm_settings: The LLM service's settings class (its ``Settings``),
                so its own fields are set by name rather than as ``extra``.
            tts_settings: The TTS service's settings class, likewise (e.g.
                ``EspeakTTSService.Settings`` for ``rate`` and ``pitch``).
            model: What settings the agent's services take; every change is
                checked against it (None: only the change's own keys are).
            **kwargs: Passed to pipecat's ``FrameProcessor`` (``name``...).
        """
        super().__init__(**kwargs)
        self._context = context
        self._speaks = speaks
        self._speech_start_timeout_s = speech_start_timeout_s
        self._reply_start_timeout_s = reply_start_timeout_s
        self._llm_settings = llm_settings
        self._tts_settings = tts_settings
        self.model = model
        self._generating = False
        self._speaking = False
        self._spoke_this_response = False
        self._calls: set[str] = set()
        self._pending: list[PendingChange] = []
        self._speech_timer: asyncio.TimerHandle | None = None
        self._reply_timer: asyncio.TimerHandle | None = None
        self._register_event_handler("on_settings_applied")
        self._register_event_handler("on_settings_held")
        self._register_event_handler("on_settings_failed")

    @property
    def response_active(self) -> bool:
        """Whether a response is being generated, spoken or waited for now (a change would be held)."""
        awaiting_speech = self._speaks and self._speech_timer is not None
        return self._generating or self._speaking or bool(self._calls) or awaiting_speech or self._reply_timer is not None

    @property
    def pending(self) -> list[PendingChange]:
        """The changes waiting for the response to end, oldest first."""
        return list(self._pending)

    @property
    def held(self) -> SettingsChange | None:
        """What the waiting changes come to, merged field by field (None: nothing waits)."""
        if not self._pending:
            return None
        merged = self._pending[0].change
        for later in self._pending[1:]:
            merged = merged.then(later.change)
        return merged

    def check(self, change: SettingsChange) -> None:
        """Raises ``BadSettings`` when the agent's services cannot take ``change``."""
        if self.model is not None:
            self.model.check(change)
        elif change.unknown:
            raise BadSettings(change.unknown[0], f"{change.unknown[0]}: not a setting; a change takes llm, tts, system_prompt")

    async def submit(self, change: SettingsChange, change_id: str | None = None) -> bool:
        """Applies ``change`` now if no response is active, else queues it behind any held ones.

        Returns:
            True when it was applied at once, False when it is held.

        Raises:
            BadSettings: The agent's services cannot take it (nothing is held or applied).
            SettingsNotApplied: Applying it at once failed; the old settings stay.
        """
        self.check(change)
        pending = PendingChange(change_id or new_change_id(), change, time.time())
        if self.response_active:
            self._pending.append(pending)
            await self._call_event_handler("on_settings_held", pending)
            return False
        await self._apply([pending], held=False)
        return True

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        """Tracks the response; takes ``SettingsChangeFrame``; passes every other frame on."""
        await super().process_frame(frame, direction)
        if isinstance(frame, SettingsChangeFrame):
            if frame.change is not None:
                await self._submit_quietly(frame.change, frame.change_id)
            return
        await self.push_frame(frame, direction)
        if isinstance(frame, UserStoppedSpeakingFrame):
            self._await_reply()
        elif isinstance(frame, LLMFullResponseStartFrame):
            self._generating, self._spoke_this_response = True, False
            self._cancel_timers()
        elif isinstance(frame, LLMFullResponseEndFrame):
            self._generating = False
            if self._speaks and not self._speaking and not self._spoke_this_response:
                self._speech_timer = self._later(self._speech_start_timeout_s, self._no_speech_came)
            await self._release_if_done()
        elif isinstance(frame, FunctionCallInProgressFrame) and direction is FrameDirection.DOWNSTREAM:
            self._calls.add(frame.tool_call_id)
        elif isinstance(frame, FunctionCallResultFrame) and direction is FrameDirection.DOWNSTREAM:
            self._calls.discard(frame.tool_call_id)
            if not self._calls and _runs_llm(frame):
                self._await_reply()
            await self._release_if_done()
        elif isinstance(frame, FunctionCallCancelFrame) and direction is FrameDirection.DOWNSTREAM:
            self._calls.discard(frame.tool_call_id)
            await self._release_if_done()
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._speaking, self._spoke_this_response = True, True
            self._cancel_timer("_speech_timer")
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._speaking = False
            await self._release_if_done()
        elif isinstance(frame, InterruptionFrame):
            self._generating = self._speaking = False
            self._calls.clear()
            self._cancel_timers()
            await self._release_if_done()

    async def cleanup(self):
        """Stops the timers with the processor."""
        self._cancel_timers()
        await super().cleanup()

    def _await_reply(self) -> None:
        self._cancel_timer("_reply_timer")
        self._reply_timer = self._later(self._reply_start_timeout_s, self._no_reply_came)

    def _later(self, delay: float, callback) -> asyncio.TimerHandle:
        return self.get_event_loop().call_later(delay, lambda: self.create_task(callback()))

    def _cancel_timer(self, name: str) -> None:
        timer = getattr(self, name)
        if timer is not None:
            timer.cancel()
            setattr(self, name, None)

    def _cancel_timers(self) -> None:
        self._cancel_timer("_speech_timer")
        self._cancel_timer("_reply_timer")

    async def _no_speech_came(self) -> None:
        self._speech_timer = None
        await self._release_if_done()

    async def _no_reply_came(self) -> None:
        self._reply_timer = None
        await self._release_if_done()

    async def _submit_quietly(self, change: SettingsChange, change_id: str | None) -> None:
        """A change queued as a frame: a failure is reported by ``on_settings_failed``, never raised into the worker."""
        try:
            await self.submit(change, change_id)
        except (BadSettings, SettingsNotApplied) as e:
            await self._call_event_handler(
                "on_settings_failed", FailedChange(change, (change_id or "",), str(e)))

    async def _release_if_done(self) -> None:
        if not self._pending or self.response_active:
            return
        pending, self._pending = self._pending, []
        try:
            await self._apply(pending, held=True)
        except SettingsNotApplied as e:
            merged = pending[0].change
            for later in pending[1:]:
                merged = merged.then(later.change)
            await self._call_event_handler(
                "on_settings_failed", FailedChange(merged, tuple(p.id for p in pending), str(e)))

    async def _apply(self, pending: list[PendingChange], *, held: bool) -> None:
        """Applies ``pending`` merged in order, all or nothing (``SettingsNotApplied`` when nothing was)."""
        change = pending[0].change
        for later in pending[1:]:
            change = change.then(later.change)
        try:
            self.check(change)
            frames = self._update_frames(change)
        except Exception as e:
            raise SettingsNotApplied(f"{e.__class__.__name__}: {e}") from e
        for frame, direction in frames:
            await self.push_frame(frame, direction)
        if change.system_prompt is not None and self._context is not None:
            replace_system_prompt(self._context, change.system_prompt)
        applied = AppliedChange(change=change, requested_at=pending[0].requested_at, applied_at=time.time(),
                                held=held, change_ids=tuple(p.id for p in pending))
        await self._call_event_handler("on_settings_applied", applied)

    def _update_frames(self, change: SettingsChange) -> list[tuple[Frame, FrameDirection]]:
        """Every update frame ``change`` needs, made before any is pushed (so a failure pushes none)."""
        frames: list[tuple[Frame, FrameDirection]] = []
        llm = dict(change.llm or {})
        if change.system_prompt is not None and self._context is None:
            llm["system_instruction"] = change.system_prompt
        if llm:
            frames.append((LLMUpdateSettingsFrame(delta=self._llm_settings.from_mapping(llm)), FrameDirection.UPSTREAM))
        if change.tts:
            frames.append((TTSUpdateSettingsFrame(delta=self._tts_settings.from_mapping(change.tts)),
                           FrameDirection.DOWNSTREAM))
        return frames


def _runs_llm(result: FunctionCallResultFrame) -> bool:
    """Whether a tool's result starts a follow-up LLM run (pipecat's default: yes)."""
    properties = getattr(result, "properties", None)
    run_llm = getattr(properties, "run_llm", None) if properties is not None else None
    if run_llm is None:
        run_llm = result.run_llm
    return run_llm is not False


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

"""Resume after a false interruption: the ``interruptions:`` block's ``resume_after_secs``.

The user's speech interrupts the bot at once (VAD), before anyone knows
whether it was words. When it turns out to be a cough or a backchannel
("uh-huh"), ``resume_after_secs`` after the user stopped with no words (or
only ``backchannel_words``) the bot resumes the cut reply from the first word
the user did not hear, and the context is left as it was: one assistant
message with the whole reply, no user turn.

How (docs/interruptions.md, "Resume after a false interruption"):

- the reply is the text the TTS was given since the latest
  ``LLMFullResponseStartFrame`` (or a ``TTSSpeakFrame``'s text);
- what was heard is the interrupted assistant message the assistant
  aggregator wrote (word by word with a word-timed TTS, whole sentences
  otherwise: the resumed speech then starts at the cut sentence);
- the rest is pushed by the user context aggregator as a ``TTSSpeakFrame``
  that answers no earlier input (``guard.turn_free``: the interruption that
  cut the reply does not cut it), and the assistant message it makes is
  appended to the interrupted one.

Everything goes through pipecat's public event handlers
(``on_before_process_frame``, ``on_assistant_turn_stopped``).
"""

import asyncio
import re
import time

from loguru import logger
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    StartFrame,
    STTMetadataFrame,
    TranscriptionFrame,
    TTSSpeakFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.services.stt_latency import DEFAULT_TTFS_P99
from pipecat.services.tts_service import TTSService
from pipecat.turns.empty_user_turn import EmptyUserTurnConfig
from pipecat.turns.types import ProcessFrameResult
from pipecat.turns.user_start.base_user_turn_start_strategy import BaseUserTurnStartStrategy
from pipecat.turns.user_stop.base_user_turn_stop_strategy import BaseUserTurnStopStrategy

from pipelines.interruptions.guard import turn_free
from pipelines.spec import InterruptionSettings


def words_of(text: str) -> list[str]:
    """Lower-case words of ``text``, hyphenated words split, punctuation dropped ("Uh-huh." -> uh, huh)."""
    return re.findall(r"[\w']+", text.lower())


class EmptyTurnEnd(BaseUserTurnStopStrategy):
    """A user turn stop strategy that stops no turn by itself: the resume ends the empty turn through it.

    The user's turn that the false interruption started has no transcript, and
    pipecat would end it only after ``user_turn_stop_timeout``; while it is
    open, the user's next speech starts no turn and so could not interrupt
    the resumed speech.
    """


class BackchannelGate(BaseUserTurnStartStrategy):
    """A user turn start strategy, first of them all, that keeps a backchannel the resume swallowed from starting a turn.

    A backchannel's transcript can land after the bot resumed (the STT's
    latency is longer than ``resume_after_secs``): the user's turn is over by
    then, and pipecat's transcription strategy would start a new one with it,
    cutting the resumed speech. The resume empties such a transcript; this
    stops the strategies after it from seeing it.
    """

    def __init__(self):
        super().__init__()
        self.swallowed: set[int] = set()  # ids of the transcripts the resume swallowed, until they pass here

    async def process_frame(self, frame: Frame) -> ProcessFrameResult:
        if frame.id in self.swallowed:
            self.swallowed.discard(frame.id)
            return ProcessFrameResult.STOP
        return ProcessFrameResult.CONTINUE


class EmptyTurnRecovery:
    """pipecat's empty-turn recovery (an ``EmptyUserTurnConfig``), but not for the empty turn the resume answers.

    pipecat runs the LLM once for a user turn that interrupted the bot and
    brought no transcript (a cough while the bot thinks leaves the question
    unanswered otherwise). When the resume is about to say the rest of the
    reply, that turn is answered already: ``interrupted_prompt`` is None then.
    The user aggregator reads these attributes and nothing else.
    """

    def __init__(self, base: EmptyUserTurnConfig | None):
        self.base = base or EmptyUserTurnConfig()
        self.idle_prompt = self.base.idle_prompt
        self.max_consecutive_recoveries = self.base.max_consecutive_recoveries
        self.resume: FalseInterruptionResume | None = None

    @property
    def interrupted_prompt(self) -> str | None:
        if self.resume is not None and self.resume.answers_the_empty_turn:
            return None
        return self.base.interrupted_prompt


class ResumeHooks:
    """What the resume adds to the user aggregator's params: a stop strategy, a start gate, the empty-turn recovery."""

    def __init__(self, empty_turn: EmptyUserTurnConfig | None):
        self.turn_end = EmptyTurnEnd()
        self.gate = BackchannelGate()
        self.recovery = EmptyTurnRecovery(empty_turn)


class FalseInterruptionResume:
    """Watches the user context aggregator, the TTS and the assistant aggregator; resumes a falsely cut reply.

    Args:
        settings: the agent's ``interruptions`` block (``resume_after_secs`` set).
        user: the user context aggregator (it pushes the resumed speech).
        assistant: the assistant context aggregator (it writes what was heard).
        context: the ``LLMContext`` both share.
        hooks: the strategies and recovery installed in the user aggregator's params.
    """

    def __init__(self, settings: InterruptionSettings, user, assistant, context, hooks: ResumeHooks):
        self.wait = settings.resume_after_secs
        self.backchannel = {w for entry in settings.backchannel_words for w in words_of(entry)}
        self.user, self.assistant, self.context = user, assistant, context
        self.turn_end, self.gate = hooks.turn_end, hooks.gate
        hooks.recovery.resume = self
        #: How long after the user stops a final transcript may still come (the STT's p99 latency).
        self.stt_latency = DEFAULT_TTFS_P99
        self.stopped_at = 0.0  # when the user last stopped speaking
        self.late_until = 0.0  # until then, a backchannel transcript of the speech the bot resumed over is swallowed
        self.resuming = False
        self.reply = ""  # the text the TTS was given for the latest reply
        self.heard: str | None = None  # what the context kept of the latest interrupted reply
        self.bot_speaking = False
        self.user_speaking = False
        self.armed = False  # an interruption cut the bot's speech, and no words came since
        self.timer: asyncio.Task | None = None
        self.resumed: TTSSpeakFrame | None = None  # the latest resumed speech
        self.continues: dict | None = None  # the assistant message the resumed speech continues
        user.add_event_handler("on_before_process_frame", self.on_user_frame)
        assistant.add_event_handler("on_assistant_turn_stopped", self.on_assistant_turn_stopped)

    def is_backchannel(self, text: str) -> bool:
        """Whether ``text`` holds words, all of them backchannel words."""
        words = words_of(text)
        return bool(words) and all(w in self.backchannel for w in words)

    @property
    def answers_the_empty_turn(self) -> bool:
        """Whether the resume answers the user's empty turn (by resuming): pipecat's recovery must not too."""
        return self.armed or self.resuming

    async def on_user_frame(self, user, frame: Frame) -> None:
        """What the user aggregator is about to process: the bot's and the user's speech, transcripts."""
        if isinstance(frame, StartFrame):
            self.watch_tts()
        elif isinstance(frame, STTMetadataFrame):
            self.stt_latency = frame.ttfs_p99_latency or DEFAULT_TTFS_P99
        elif isinstance(frame, BotStartedSpeakingFrame):
            self.bot_speaking = True
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self.bot_speaking = False
        elif isinstance(frame, InterruptionFrame):
            self.armed = self.bot_speaking and bool(self.reply.strip())
            await self.cancel_timer()
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self.user_speaking = True
            await self.cancel_timer()
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self.user_speaking = False
            self.stopped_at = time.monotonic()
            if self.armed:
                await self.cancel_timer()
                self.timer = self.user.create_task(self.resume_later(), "framegraph_resume")
        elif isinstance(frame, TranscriptionFrame) and self.armed:
            if self.is_backchannel(frame.text):
                # Not a turn: emptied, the aggregator records nothing and runs no LLM for it.
                logger.debug(f"backchannel {frame.text!r} after an interruption: not a user turn")
                frame.text = ""
            else:
                self.armed = False
                await self.cancel_timer()
        elif isinstance(frame, (TranscriptionFrame, InterimTranscriptionFrame)) and time.monotonic() < self.late_until:
            if self.is_backchannel(frame.text):
                # The backchannel's words came after the bot resumed: neither a turn nor an interruption.
                logger.debug(f"backchannel {frame.text!r} after the bot resumed: not a user turn")
                frame.text = ""
                self.gate.swallowed.add(frame.id)
                if isinstance(frame, InterimTranscriptionFrame):  # its final transcript follows, as late again
                    self.late_until = max(self.late_until, time.monotonic() + self.stt_latency)

    def watch_tts(self) -> None:
        """Finds the first TTS downstream of the user aggregator and records the text it is given."""
        processor = self.user.next
        while processor is not None and not isinstance(processor, TTSService):
            processor = processor.next
        if processor is None:
            logger.warning("interruptions.resume_after_secs: no TTS after the user context; the bot never resumes")
            return
        processor.add_event_handler("on_before_process_frame", self.on_tts_frame)

    async def on_tts_frame(self, tts, frame: Frame) -> None:
        """A reply starts with ``LLMFullResponseStartFrame`` (or is one ``TTSSpeakFrame``); its text follows."""
        if isinstance(frame, LLMFullResponseStartFrame) and not frame.skip_tts:
            self.reply, self.heard = "", None
        elif isinstance(frame, LLMTextFrame) and not frame.skip_tts:
            self.reply += frame.text
        elif isinstance(frame, TTSSpeakFrame) and frame is not self.resumed:
            self.reply = frame.text

    async def cancel_timer(self) -> None:
        if self.timer is not None:
            timer, self.timer = self.timer, None
            if timer is not asyncio.current_task():
                await self.user.cancel_task(timer)

    async def resume_later(self) -> None:
        await asyncio.sleep(self.wait)
        self.timer = None
        if self.armed and not self.user_speaking:
            await self.resume()

    async def resume(self) -> None:
        """Speaks the reply from the first word the context does not hold."""
        self.armed = False
        heard = (self.heard or "").split()
        rest = self.reply.split()[len(heard):]
        if not rest:
            return
        messages = self.context.messages
        last = messages[-1] if messages else None
        self.continues = last if heard and last and last.get("role") == "assistant" else None
        self.resuming = True
        try:
            await self.turn_end.trigger_user_turn_stopped()  # the empty turn writes nothing and runs no LLM
        finally:
            self.resuming = False
        # The transcript of what the user said may still come, within the STT's latency.
        self.late_until = self.stopped_at + self.stt_latency
        self.resumed = turn_free(TTSSpeakFrame(" ".join(rest)))
        logger.debug(f"false interruption: resuming after {len(heard)} words heard: {self.resumed.text!r}")
        await self.user.push_frame(self.resumed)

    async def on_assistant_turn_stopped(self, assistant, message) -> None:
        """Notes what an interrupted reply left in the context; joins resumed speech to the message it continues."""
        continued = self.continues
        self.continues = None
        messages = self.context.messages
        if continued is not None and len(messages) >= 2 and messages[-2] is continued and message.content:
            continued["content"] = f"{continued['content']} {messages[-1]['content']}"
            self.context.set_messages(messages[:-1])
            content = continued["content"]
        else:
            content = continued["content"] if continued is not None else message.content
        self.heard = content if message.interrupted else None

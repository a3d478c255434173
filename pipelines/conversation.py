"""The bot's own turns: an opening line when a participant connects, check-ins on a silent user.

``ConversationKeeper`` sits at the top of a graph (after the RTVI processor of
a served one) and says what the YAML's ``conversation:`` block asks:

- ``greeting``: when the participant is ready (RTVI ``client-ready``; at the
  start for graphs that serve no client), fixed ``text`` or what the LLM
  answers to an ``instruction``;
- ``idle``: pipecat's user aggregator reports the user silent for
  ``after_secs`` after the bot spoke (``on_user_turn_idle``); each report is
  a check-in, until ``end_after`` check-ins in a row went unanswered, when
  the session ends. While the server sheds load (``pipelines.pressure``:
  SHEDDING and above), a check-in waits another ``after_secs`` instead, and
  is not counted: a silent user costs the loaded server no speech.

Fixed text goes out as an LLM response (``LLMFullResponseStartFrame``, an
``LLMTextFrame``, ``LLMFullResponseEndFrame``), so it is spoken by the TTS,
added to the context by the assistant aggregator, reported to clients as
``bot-llm-*`` like any reply, and silent when a client asked to skip TTS.
"""

from loguru import logger
from pipecat.frames.frames import (
    EndWorkerFrame,
    Frame,
    LLMConfigureOutputFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMMessagesAppendFrame,
    LLMTextFrame,
    StartFrame,
    UserIdleTimeoutUpdateFrame,
    UserStartedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from pipelines.pressure import PRESSURE
from pipelines.spec import ConversationSettings, Utterance


class ConversationKeeper(FrameProcessor):
    """Says the greeting and the idle check-ins of ``settings`` (see the module docstring).

    Args:
        settings: the agent's ``conversation:`` block.
        greet_on_start: greet when the pipeline starts (no client will say it is ready).
    """

    def __init__(self, settings: ConversationSettings, *, greet_on_start: bool, **kwargs):
        super().__init__(name="conversation", **kwargs)
        self.settings = settings
        self.greet_on_start = greet_on_start
        self.skip_tts = False
        self.check_ins = 0
        self.greeted = False

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMConfigureOutputFrame):
            self.skip_tts = frame.skip_tts
        elif isinstance(frame, UserStartedSpeakingFrame):
            self.check_ins = 0
        await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame):
            if self.settings.idle:
                await self.push_frame(UserIdleTimeoutUpdateFrame(timeout=self.settings.idle.after_secs))
            if self.greet_on_start:
                await self.greet()

    async def on_client_ready(self, rtvi) -> None:
        """pipecat's ``RTVIProcessor`` event: the client listens, so greet it."""
        await self.greet()

    async def on_user_turn_idle(self, aggregator) -> None:
        """pipecat's user aggregator event: the user has been silent for ``idle.after_secs``."""
        await self.user_idle()

    async def greet(self) -> None:
        """Says the greeting, once per session (a page that reconnects is not greeted again)."""
        if self.settings.greeting and not self.greeted:
            self.greeted = True
            await self.say(self.settings.greeting)

    async def user_idle(self) -> None:
        """The user has been silent: check in, or end the session after ``end_after`` unanswered check-ins."""
        idle = self.settings.idle
        if idle is None:
            return
        if PRESSURE.defer_check_ins:
            logger.debug(f"{self}: the server sheds load; the check-in waits {idle.after_secs:g} s more")
            await self.push_frame(UserIdleTimeoutUpdateFrame(timeout=idle.after_secs))  # arms the idle timer again
            return
        if self.check_ins >= idle.end_after:
            logger.info(f"{self}: the user stayed silent after {self.check_ins} check-ins; ending the session")
            await self.push_frame(EndWorkerFrame(reason="the user stayed silent"))
            return
        self.check_ins += 1
        await self.say(idle)

    async def say(self, utterance: Utterance) -> None:
        """Says ``utterance``: its text as an LLM response, or the LLM's answer to its instruction."""
        if utterance.text:
            text = LLMTextFrame(utterance.text)
            text.skip_tts = self.skip_tts
            for frame in (LLMFullResponseStartFrame(), text, LLMFullResponseEndFrame()):
                await self.push_frame(frame)
        else:
            await self.push_frame(LLMMessagesAppendFrame(
                messages=[{"role": "system", "content": utterance.instruction}], run_llm=True))

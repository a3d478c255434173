"""When the user may interrupt: the YAML's ``interruptions`` block on the user aggregator.

``enabled`` and ``min_words`` map onto pipecat's own turn start strategies
(``enable_interruptions`` and ``MinWordsUserTurnStartStrategy``):
``start_strategies`` builds them for the context block (``processors.context``). The other two settings have no
pipecat counterpart; ``apply_interruption_settings`` adds them by putting an
``InterruptionPolicy`` in front of the aggregator's start strategies:

- ``min_speech_secs``: while the bot speaks (or thinks), a turn start that
  would interrupt it waits until the user has spoken that long; speech that
  stops sooner never becomes a turn (a backchannel such as "uh-huh").
- ``while_thinking: false``: once the user's turn has ended and until the bot
  starts speaking, a new turn starts without interrupting the reply being
  prepared.
"""

import time

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.turns.types import ProcessFrameResult
from pipecat.turns.user_start.base_user_turn_start_strategy import BaseUserTurnStartStrategy

from pipelines import pipecat_compat as compat
from pipelines.spec import InterruptionSettings


def start_strategies(kinds: list[str], settings: InterruptionSettings) -> list[BaseUserTurnStartStrategy]:
    """pipecat's turn start strategies for the ``turn.start`` kinds and the interruption settings.

    Args:
        kinds: what starts a user turn, from the context's ``turn.start`` ("vad", "transcription").
        settings: the agent's ``interruptions`` block: ``enabled`` becomes each
            strategy's ``enable_interruptions``; ``min_words`` > 0 replaces the
            kinds with pipecat's ``MinWordsUserTurnStartStrategy``.
    """
    from pipecat.turns.user_start import (
        MinWordsUserTurnStartStrategy,
        TranscriptionUserTurnStartStrategy,
        VADUserTurnStartStrategy,
    )

    enabled = settings.enabled
    if settings.min_words > 0:
        return [MinWordsUserTurnStartStrategy(min_words=settings.min_words, enable_interruptions=enabled)]
    by_kind = {"vad": VADUserTurnStartStrategy, "transcription": TranscriptionUserTurnStartStrategy}
    return [by_kind[kind](enable_interruptions=enabled) for kind in kinds]


class InterruptionPolicy(BaseUserTurnStartStrategy):
    """Watches the bot and the user's speech; gates the start strategies after it.

    It never starts a turn itself: it wraps each gated strategy's
    ``trigger_user_turn_started`` so that the decision to interrupt follows
    the settings, and holds a too-early start until the user has spoken
    ``min_speech_secs``.
    """

    def __init__(self, settings: InterruptionSettings, gated: list[BaseUserTurnStartStrategy]):
        super().__init__()
        self._min_speech = settings.min_speech_secs
        self._while_thinking = settings.while_thinking
        self._speaking = False  # the bot is speaking
        self._thinking = False  # the user's turn ended and the bot has not spoken yet
        self._speech_started: float | None = None  # when the user's current speech began
        self._held = None  # a start strategy's trigger waiting for enough speech
        for strategy in gated:
            strategy.trigger_user_turn_started = self._gate(strategy.trigger_user_turn_started)

    def _gate(self, trigger):
        async def gated(*, enable_interruptions: bool | None = None, enable_user_speaking_frames: bool | None = None):
            if enable_interruptions is not False:
                if self._thinking and not self._while_thinking:
                    enable_interruptions = False
                elif (self._speaking or self._thinking) and self._spoken() < self._min_speech:
                    self._held = lambda: trigger(enable_interruptions=enable_interruptions,
                                                 enable_user_speaking_frames=enable_user_speaking_frames)
                    return
            await trigger(enable_interruptions=enable_interruptions,
                          enable_user_speaking_frames=enable_user_speaking_frames)

        return gated

    def _spoken(self) -> float:
        """Seconds the user has been speaking (0 when not speaking)."""
        return time.monotonic() - self._speech_started if self._speech_started is not None else 0.0

    async def handle_user_turn_started(self):
        self._held = None
        self._thinking = False

    async def handle_user_turn_stopped(self):
        self._thinking = True

    async def process_frame(self, frame: Frame) -> ProcessFrameResult:
        if isinstance(frame, BotStartedSpeakingFrame):
            self._speaking, self._thinking = True, False
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._speaking = False
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._speech_started = time.monotonic() - frame.start_secs
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._speech_started = None
            if self._held is not None:
                self._held = None
                await self.trigger_reset_aggregation()
        if self._held is not None and self._spoken() >= self._min_speech:
            held, self._held = self._held, None
            await held()
        return ProcessFrameResult.CONTINUE


def apply_interruption_settings(user_aggregator, settings: InterruptionSettings) -> None:
    """Puts an ``InterruptionPolicy`` in front of the aggregator's start strategies when the settings need one.

    The strategies are reached through the seam (``pipelines.pipecat_compat``:
    pipecat has no public accessor) and marked as the user's own, so a
    service's recommended strategies do not replace them.
    """
    if settings.min_speech_secs == 0 and settings.while_thinking:
        return
    strategies = compat.user_turn_strategies(user_aggregator)
    strategies.start = [InterruptionPolicy(settings, list(strategies.start or [])), *(strategies.start or [])]
    compat.set_user_turn_strategies(user_aggregator, strategies)

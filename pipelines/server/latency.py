"""Per-session latencies, measured from the frames a session's worker pushes.

- reply: from the end of the user's speech (``VADUserStoppedSpeakingFrame``,
  or ``UserStoppedSpeakingFrame`` without VAD) to the bot's next
  ``BotStartedSpeakingFrame``;
- interruption: from the user starting to speak while the bot speaks
  (``UserStartedSpeakingFrame``) to the bot's ``BotStoppedSpeakingFrame``.

Each frame is counted once: the observer asks pipecat for a frame's first push only. The server
records them as the session's latest latencies and in the metrics'
histograms.
"""

import time
from collections.abc import Callable

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed


class TurnLatency(BaseObserver):
    """Calls ``on_reply(seconds)`` and ``on_interruption(seconds)`` as a session's turns go."""

    def __init__(self, on_reply: Callable[[float], None], on_interruption: Callable[[float], None]):
        super().__init__(observe_every_push=False)
        self._on_reply = on_reply
        self._on_interruption = on_interruption
        self._user_stopped: float | None = None
        self._bot_speaking = False
        self._barged: float | None = None

    async def on_push_frame(self, data: FramePushed):
        """Times the turn from the first hop of each speaking frame."""
        frame = data.frame
        if not isinstance(frame, (BotStartedSpeakingFrame, BotStoppedSpeakingFrame, UserStartedSpeakingFrame,
                                  UserStoppedSpeakingFrame, VADUserStoppedSpeakingFrame)):
            return
        now = time.monotonic()
        if isinstance(frame, VADUserStoppedSpeakingFrame) or (
            isinstance(frame, UserStoppedSpeakingFrame) and self._user_stopped is None
        ):
            self._user_stopped = now
        elif isinstance(frame, UserStartedSpeakingFrame):
            self._user_stopped = None
            if self._bot_speaking:
                self._barged = now
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking = True
            if self._user_stopped is not None:
                self._on_reply(now - self._user_stopped)
                self._user_stopped = None
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
            if self._barged is not None:
                self._on_interruption(now - self._barged)
                self._barged = None

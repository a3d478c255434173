"""Per-session latencies, measured from the frames a session's worker pushes.

- reply: from the real end of the user's speech to the bot's next
  ``BotStartedSpeakingFrame`` (the output transport's first chunk of the
  answer, as it sends it). The real end is VAD's stop decision minus its
  ``stop_secs`` (``VADUserStoppedSpeakingFrame``: the silence VAD waited
  for is part of what the user waits for), or the turn's end
  (``UserStoppedSpeakingFrame``) without VAD;
- interruption: from the user starting to speak while the bot speaks
  (``UserStartedSpeakingFrame``) to the bot's ``BotStoppedSpeakingFrame``;
- heard: what a client measured at its ear, from the user's speech end to
  the bot's first audio it played, reported as an RTVI ``client-message``
  ``{"t": HEARD_MESSAGE, "d": {"speech_end_to_heard_ms": N}}`` (the web
  page sends one per answer). Between reply and heard lie the network and
  the client's jitter buffer.

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
from pipecat.processors.frameworks.rtvi.frames import RTVIClientMessageFrame

#: The ``t`` of the client message in which a client reports what it heard.
HEARD_MESSAGE = "speech-end-to-heard"
#: Reports outside this range (seconds) are not latencies; they are ignored.
HEARD_RANGE = (0.0, 30.0)


class TurnLatency(BaseObserver):
    """Calls ``on_reply``, ``on_interruption`` and ``on_heard`` (seconds) as a session's turns go."""

    def __init__(self, on_reply: Callable[[float], None], on_interruption: Callable[[float], None],
                 on_heard: Callable[[float], None] | None = None):
        super().__init__(observe_every_push=False)
        self._on_reply = on_reply
        self._on_interruption = on_interruption
        self._on_heard = on_heard
        self._user_stopped: float | None = None
        self._bot_speaking = False
        self._barged: float | None = None

    async def on_push_frame(self, data: FramePushed):
        """Times the turn from the first hop of each speaking frame."""
        frame = data.frame
        if isinstance(frame, RTVIClientMessageFrame):
            self._client_report(frame)
            return
        if not isinstance(frame, (BotStartedSpeakingFrame, BotStoppedSpeakingFrame, UserStartedSpeakingFrame,
                                  UserStoppedSpeakingFrame, VADUserStoppedSpeakingFrame)):
            return
        now = time.monotonic()
        if isinstance(frame, VADUserStoppedSpeakingFrame):
            # VAD decided at frame.timestamp (wall clock), after frame.stop_secs of silence.
            self._user_stopped = now - max(0.0, time.time() - frame.timestamp) - frame.stop_secs
        elif isinstance(frame, UserStoppedSpeakingFrame) and self._user_stopped is None:
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

    def _client_report(self, frame: RTVIClientMessageFrame) -> None:
        """A client's ``speech-end-to-heard`` report; anything else, or a report out of range, is ignored."""
        if self._on_heard is None or frame.type != HEARD_MESSAGE or not isinstance(frame.data, dict):
            return
        value = frame.data.get("speech_end_to_heard_ms")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = value / 1000
            if HEARD_RANGE[0] < seconds < HEARD_RANGE[1]:
                self._on_heard(seconds)

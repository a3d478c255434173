"""The file transport's clock: the timeline its input and output share.

Two clocks, chosen by ``realtime``:

- ``realtime: true`` plays the input at its real pace and the output like a
  sound card; the timeline is the wall clock since the input started.
- Otherwise the timeline is virtual: the seconds of input pushed so far, and
  the output plays the bot's audio against that clock (the input,
  ``transports.file.input``, decides how fast it runs).

Either way the input starts once the pipeline has started (the StartFrame
reached the output), as a caller speaks once the call is up.
"""

import asyncio
import time
from dataclasses import dataclass

CHUNK_SECS = 0.02
#: If no input audio reaches the output within this long (real seconds), the
#: graph does not carry it there, and fast mode runs without that brake.
UNROUTED_SECS = 2.0


@dataclass
class Span:
    """When something started and stopped on the timeline (None: not yet)."""

    start: float | None = None
    end: float | None = None


class Timeline:
    """The clock both ends of a file session share; see the module docstring."""

    def __init__(self, *, realtime: bool):
        self.realtime = realtime
        self.input_secs = 0.0  # audio pushed so far: the virtual clock
        self._wall_start: float | None = None
        self._advanced = asyncio.Event()
        self._stopped = False
        self.consumed_secs = 0.0  # input audio that came through to the output
        self._consumed = asyncio.Event()
        self.ready = asyncio.Event()  # the pipeline has started
        self.bot_audio = Span()  # the bot's audio since the last assistant turn, as written

    def start(self) -> None:
        """Starts the clock (when the first input chunk is about to go)."""
        self._wall_start = time.monotonic()

    def stop(self) -> None:
        """The input stopped for good: nothing waits on the clock any more."""
        self._stopped = True
        self._advanced.set()

    def advance(self, secs: float) -> None:
        """The input pushed ``secs`` more audio."""
        self.input_secs += secs
        self._advanced.set()

    def consume(self, secs: float) -> None:
        """``secs`` more input audio came through the pipeline to the output."""
        self.consumed_secs += secs
        self._consumed.set()

    async def wait_for_pipeline(self, max_lag: float) -> None:
        """Waits while the pipeline is more than ``max_lag`` behind the input.

        Does not wait if no input audio ever reached the output within
        ``UNROUTED_SECS``: the graph does not route it there.
        """
        deadline = time.monotonic() + UNROUTED_SECS
        while self.input_secs - self.consumed_secs > max_lag and not self._stopped:
            if not self.consumed_secs and time.monotonic() > deadline:
                return
            self._consumed.clear()
            try:
                await asyncio.wait_for(self._consumed.wait(), 0.05)
            except TimeoutError:
                pass

    def now(self) -> float:
        """Seconds since the conversation started."""
        if not self.realtime:
            return self.input_secs
        if self._wall_start is None:
            return 0.0
        return time.monotonic() - self._wall_start

    async def wait_until(self, secs: float) -> None:
        """Returns once the timeline has reached ``secs`` (at once when it has stopped)."""
        if self.realtime and not self._stopped:
            await asyncio.sleep(max(0.0, secs - self.now()))
            return
        while not self._stopped and self.input_secs < secs:
            self._advanced.clear()
            await self._advanced.wait()

"""Where a process's running graphs and its load level meet (docs/backpressure.md).

The server's load level (``pipelines.server.load_level``) sits above the
graphs; the outputs and processors that feel the load cannot import it
(``transports/`` and ``processors/`` never import the server), so both sides
use this module's one object per process (each worker of
``serve --workers N`` is a process of its own, with its own level):

- ``PRESSURE.count_chunk(late)``: every audio-clocked output
  (``pipelines.av_sync.AudioClockedOutput``: framegraph's WebSocket, WebRTC,
  file and synthetic outputs) counts each audio chunk it writes, and whether
  it was late: its first sample plays more than ``LATE_SECS`` after the audio
  before it ended although it was in the output before then (a gap the
  listener hears, not a pause between replies). The load level reads the
  counts and makes the share of late chunks one of its signals.
- ``PRESSURE.defer_check_ins``: set by the load level at SHEDDING and above;
  an idle user's check-in (``pipelines.conversation``) waits while it is set.
- ``Retunable``: a processor that takes new params while it runs (the
  avatar, the pocketsphinx STT); the load level lays the agent's ``backpressure.degraded`` params
  over a running session's processors at DEGRADED and puts its own back
  when the level leaves it.
"""

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

#: A chunk that starts playing this long (seconds) after the audio before it ended is late.
LATE_SECS = 0.01


@dataclass
class Pressure:
    """This process's audio chunk counts and what its load level asks of the running graphs."""

    chunks: int = 0
    late_chunks: int = 0
    defer_check_ins: bool = False

    def count_chunk(self, late: bool) -> None:
        """One audio chunk written by an output; ``late``: the listener heard a gap before it."""
        self.chunks += 1
        self.late_chunks += late


#: The process's one ``Pressure``.
PRESSURE = Pressure()


@runtime_checkable
class Retunable(Protocol):
    """A processor that takes new params (its type's params model) while it runs."""

    def retune(self, params: Any) -> None:
        """From now on, runs with ``params`` (those it does not change live stay as built)."""
        ...

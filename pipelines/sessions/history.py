"""History by hour: sessions created, turns stored and reply latencies, kept by the store for 14 days.

The store counts into one bucket per UTC hour when a session is created and
when a turn is appended, in the same transaction as that write (docs/sessions.md):

- ``sessions``: sessions created in the hour;
- ``turns``: turns stored in the hour;
- ``latency:{i}``: how many of the hour's speech-end-to-first-audio latencies
  (``REPLY_LATENCY``) fell in histogram bucket ``i`` of ``LATENCY_EDGES_S``.

A fixed histogram keeps storage bounded (at most ``len(LATENCY_EDGES_S) + 3``
counters an hour, whatever the traffic) and merges by plain addition, so
concurrent servers on one Redis never lose a count. Percentiles come back as
the upper edge of the bucket holding the nearest-rank sample: never below the
true value and at most one bucket width above it (50 ms up to 3 s, 500 ms up
to 10 s; a latency over 10 s counts as 10 s).
"""

import bisect
import itertools
import math
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from pipelines.sessions.model import REPLY_LATENCY

HISTORY_HOURS = 14 * 24
"""How many hours of history the store keeps (the current one included); older buckets expire."""

HOUR_S = 3600

LATENCY_EDGES_S: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 61)) + tuple(
    3.0 + 0.5 * i for i in range(1, 15)
)
"""Upper edges (seconds) of the latency histogram: 50 ms wide to 3 s, then 500 ms wide to 10 s; one overflow bucket."""

SESSIONS, TURNS, LATENCY = "sessions", "turns", "latency:"
"""The counters of one hour's bucket (``LATENCY`` is followed by the histogram bucket's index)."""


def hour_of(at: float) -> int:
    """The start (Unix seconds) of the UTC hour holding ``at``."""
    return int(at // HOUR_S) * HOUR_S


def expires_at(hour: int) -> int:
    """When the bucket of ``hour`` leaves the history (Unix seconds): ``HISTORY_HOURS`` after the hour began."""
    return hour + HISTORY_HOURS * HOUR_S


def latency_counter(latencies: dict[str, float] | None) -> str | None:
    """The counter a turn's reply latency adds one to, or None when the turn has none (or not a number)."""
    seconds = (latencies or {}).get(REPLY_LATENCY)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds < 0:
        return None
    return f"{LATENCY}{bisect.bisect_left(LATENCY_EDGES_S, seconds)}"


def percentile(histogram: dict[int, int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of the latencies counted in ``histogram`` (bucket index -> count); None when empty.

    Nearest rank: the upper edge of the bucket that holds the ``ceil(q * n)``-th smallest sample.
    """
    indexes = sorted(i for i, n in histogram.items() if n > 0)
    running = list(itertools.accumulate(histogram[i] for i in indexes))
    if not running:
        return None
    index = indexes[bisect.bisect_left(running, max(1, math.ceil(q * running[-1])))]
    return LATENCY_EDGES_S[min(index, len(LATENCY_EDGES_S) - 1)]


class HourRow(BaseModel):
    """One UTC hour of history."""

    hour: str = Field(description="The hour's start, ISO 8601 UTC (2026-12-07T20:00:00Z)")
    sessions: int = Field(0, description="Sessions created in the hour")
    turns: int = Field(0, description="Turns stored in the hour")
    latency_samples: int = Field(0, description="Turns of the hour with a speech-end-to-first-audio latency")
    latency_p50_s: float | None = Field(None, description="Median of those latencies (histogram bucket's upper edge)")
    latency_p95_s: float | None = Field(None, description="95th percentile of those latencies (likewise)")


def hour_row(hour: int, counts: dict[str, int]) -> HourRow:
    """The row of ``hour`` from its stored counters (any the store does not know are ignored)."""
    histogram: dict[int, int] = {}
    for key, value in counts.items():
        if key.startswith(LATENCY) and key[len(LATENCY):].isdigit() and int(value) > 0:
            histogram[int(key[len(LATENCY):])] = int(value)
    return HourRow(
        hour=datetime.fromtimestamp(hour, tz=UTC).strftime("%Y-%m-%dT%H:00:00Z"),
        sessions=int(counts.get(SESSIONS, 0)),
        turns=int(counts.get(TURNS, 0)),
        latency_samples=sum(histogram.values()),
        latency_p50_s=percentile(histogram, 0.50),
        latency_p95_s=percentile(histogram, 0.95),
    )


def oldest_kept(at: float) -> int:
    """The start of the oldest hour the history holds at ``at``: buckets of earlier hours are deleted."""
    return hour_of(at) - (HISTORY_HOURS - 1) * HOUR_S


def hours_back(hours: int, at: float) -> list[int]:
    """The starts of the last ``hours`` hours up to the one holding ``at`` (clamped to 1..HISTORY_HOURS), oldest first."""
    last, n = hour_of(at), max(1, min(int(hours), HISTORY_HOURS))
    return [last - HOUR_S * i for i in range(n - 1, -1, -1)]

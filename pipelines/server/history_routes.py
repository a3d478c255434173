"""``GET /history``: sessions and turns per hour and reply latency percentiles, read from the store.

The store keeps one bucket per UTC hour for ``HISTORY_HOURS`` (14 days;
``pipelines.sessions.history``); every server sharing a Redis reads the same
history. Behind the server's API key like the other REST routes; a key bound
to a user gets 403 (history is the whole service's, not one user's).
"""

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from pipelines.sessions.history import HISTORY_HOURS, HourRow


class History(BaseModel):
    """``GET /history``: the last ``hours`` hours, oldest first, the current (partial) hour last."""

    hours: int = Field(description="How many hours were asked for (rows has one per hour, zeros included)")
    kept_hours: int = Field(HISTORY_HOURS, description="How many hours the store keeps")
    rows: list[HourRow]


def history_router(manager, dependencies: list) -> APIRouter:
    """The ``/history`` route of ``manager``'s server."""
    api = APIRouter(dependencies=dependencies, tags=["history"])

    @api.get("/history", response_model=History)
    async def history(hours: Annotated[int, Query(ge=1, le=HISTORY_HOURS, description="Hours back, 1..336")] = 24
                      ) -> History:
        """Per UTC hour: sessions created, turns stored, speech-end-to-first-audio p50/p95 (seconds)."""
        return History(hours=hours, rows=await manager.store.history(hours))

    return api

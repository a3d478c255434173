"""The server's periodic session chores: grace-period expiry, the sessions gauge, the heartbeat.

One background task per server runs every few seconds: it ends the sessions
DISCONNECTED past the grace period, refreshes the ``framegraph_sessions``
gauge from the store's counts, and (on a shared store) sends the server's
heartbeat. A round that fails (the store is down) is logged and counted as a
``store`` error, and the next round tries again: a store outage must not end
the server.
"""

import asyncio
from collections.abc import Awaitable, Callable

from loguru import logger

from pipelines.sessions.metrics import SessionMetrics
from pipelines.sessions.store import DEFAULT_GRACE_S, SessionStore


class Housekeeper:
    """Runs the periodic chores of one server on its session store."""

    def __init__(
        self,
        store: SessionStore,
        *,
        server_id: str,
        metrics: SessionMetrics | None = None,
        every_s: float = 5.0,
        grace_s: float = DEFAULT_GRACE_S,
        server_info: Callable[[], dict[str, str]] | None = None,
        on_expired: Callable[[list[str]], Awaitable[None]] | None = None,
    ):
        """Creates the housekeeper; ``start()`` runs it.

        Args:
            store: The server's (opened) store.
            server_id: This server's id (the owner of its sessions).
            metrics: Where the sessions gauge lives, if anywhere.
            every_s: Seconds between rounds. The heartbeat's TTL is three rounds.
            grace_s: How long a DISCONNECTED session stays resumable.
            server_info: What the heartbeat publishes (address, capacity...), asked each round.
            on_expired: Called with the ids of the sessions a round ended.
        """
        self.store = store
        self.server_id = server_id
        self.metrics = metrics
        self.every_s = every_s
        self.grace_s = grace_s
        self._server_info = server_info or dict
        self._on_expired = on_expired
        self._task: asyncio.Task | None = None

    async def run_once(self) -> list[str]:
        """One round of chores; returns the ids of the sessions it ended."""
        await self.store.heartbeat(self.server_id, self._server_info(), ttl_s=3 * self.every_s)
        expired = await self.store.expire_disconnected(self.grace_s)
        if self.metrics is not None:
            self.metrics.set_session_counts(await self.store.count_by_state())
        if expired and self._on_expired is not None:
            await self._on_expired(expired)
        return expired

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception as e:  # any failure of one round: the next round must still run
                logger.warning(f"sessions housekeeping: {type(e).__name__}: {e}")
                if self.metrics is not None:
                    self.metrics.error("store")
            await asyncio.sleep(self.every_s)

    @property
    def running(self) -> bool:
        """Whether the rounds go on (started, not stopped, not crashed)."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Starts the rounds in a background task (the first one at once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"sessions-housekeeping-{self.server_id}")

    async def stop(self) -> None:
        """Stops the rounds and waits for the task to end."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

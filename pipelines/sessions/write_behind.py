"""Session writes that outlive a store outage: one ordered queue per session, retried with backoff.

A completed turn is acknowledged to the user when the bot answers it, so its
write to the store must not be lost because Redis is stopped or frozen or the
SQLite file is locked, read-only or full at that moment. A write is tried at
once; when the store is unavailable (``StoreUnavailable``) it waits in its
session's queue, and every later write of that session queues behind it, so
the store sees them in the order they were made (turns in order, and a
session's ACTIVE before its DISCONNECTED). The queue is retried with
exponential backoff and flushed in order when the store answers again.

A queue is bounded (``per_session`` writes): past it the oldest write is
dropped, logged and counted, so a store that never returns cannot grow the
server without limit. The total depth is the ``framegraph_store_backlog``
gauge of ``/metrics``.
"""

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from loguru import logger

from pipelines.sessions.store import SessionNotFound, StoreUnavailable

#: Writes one session may hold while the store is away (at one turn every few seconds, hours of talk).
PER_SESSION = 1000


class WriteBehind:
    """Ordered, retried store writes per session (see the module docstring).

    Args:
        metrics: A ``SessionMetrics`` (the backlog gauge and the dropped-writes counter), or None.
        per_session: The most writes one session's queue holds.
        first_retry_s: The first wait before a retry; doubled after each failure...
        max_retry_s: ...up to this.
    """

    def __init__(self, metrics=None, *, per_session: int = PER_SESSION, first_retry_s: float = 0.25,
                 max_retry_s: float = 5.0):
        self.metrics = metrics
        self.per_session = per_session
        self.first_retry_s = first_retry_s
        self.max_retry_s = max_retry_s
        self._queues: dict[str, deque[tuple[str, Callable[[], Awaitable]]]] = {}
        self._flushers: dict[str, asyncio.Task] = {}
        self._tails: dict[str, asyncio.Future] = {}
        self._pending: set[asyncio.Task] = set()

    @property
    def depth(self) -> int:
        """Writes waiting for the store, all sessions together."""
        return sum(len(q) for q in self._queues.values())

    def waiting(self, session_id: str) -> int:
        """Writes of ``session_id`` waiting for the store."""
        return len(self._queues.get(session_id, ()))

    async def write(self, session_id: str, what: str, make: Callable[[], Awaitable]) -> None:
        """Writes now, or queues the write behind the session's earlier ones while the store is away.

        Args:
            session_id: The session the write is about (its queue keeps them in order).
            what: A few words for the log ("turn", "state ACTIVE").
            make: Makes the store call's coroutine; called again for each retry.

        Returns once written or queued; the write is owned here from the call on,
        so cancelling the caller (a worker that ends) does not lose it.
        """
        previous = self._tails.get(session_id)
        mine = asyncio.get_running_loop().create_future()
        self._tails[session_id] = mine
        task = asyncio.create_task(self._write(session_id, what, make, previous, mine))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        await asyncio.shield(task)

    async def _write(self, session_id, what, make, previous: asyncio.Future | None, mine: asyncio.Future) -> None:
        try:
            if previous is not None:
                await previous
            if session_id not in self._queues:
                try:
                    await make()
                    return
                except StoreUnavailable as e:
                    logger.warning(f"session {session_id}: the store is unavailable; its writes wait and are "
                                   f"retried ({e})")
                    if self.metrics is not None:
                        self.metrics.error("store")
                except SessionNotFound:
                    return
                self._queues[session_id] = deque()
                self._flushers[session_id] = asyncio.create_task(self._flush(session_id))
            self._enqueue(session_id, what, make)
        except Exception as e:  # a failing write must never fail the caller (a worker's event handler)
            logger.error(f"session {session_id}: store write ({what}) failed: {e.__class__.__name__}: {e}")
            if self.metrics is not None:
                self.metrics.error("store")
        finally:
            mine.set_result(None)
            if self._tails.get(session_id) is mine:
                del self._tails[session_id]

    def _enqueue(self, session_id: str, what: str, make) -> None:
        queue = self._queues[session_id]
        if len(queue) >= self.per_session:
            lost, _ = queue.popleft()
            logger.error(f"session {session_id}: dropped a queued store write ({lost}): {self.per_session} "
                         "writes already wait for the store")
            if self.metrics is not None:
                self.metrics.store_write_dropped()
        queue.append((what, make))
        self._gauge()

    async def _flush(self, session_id: str) -> None:
        """Retries the session's queue, oldest first, until it is empty."""
        queue = self._queues[session_id]
        delay, flushed = self.first_retry_s, 0
        try:
            while queue:
                await asyncio.sleep(delay)
                try:
                    while queue:
                        what, make = queue[0]
                        try:
                            await make()
                        except SessionNotFound:  # deleted meanwhile: nothing left to write it to
                            pass
                        except StoreUnavailable:
                            raise
                        except Exception as e:  # a bad write must not hold the ones behind it
                            logger.error(f"session {session_id}: store write ({what}) failed: "
                                         f"{e.__class__.__name__}: {e}")
                        queue.popleft()
                        flushed += 1
                        self._gauge()
                except StoreUnavailable:
                    delay = min(delay * 2, self.max_retry_s)
            logger.info(f"session {session_id}: the store is back; {flushed} queued write(s) stored in order")
        finally:
            del self._queues[session_id]
            del self._flushers[session_id]
            self._gauge()

    async def close(self, timeout_s: float = 5.0) -> None:
        """Waits up to ``timeout_s`` for the queued writes to reach the store; logs any left unwritten."""
        waiting = [*self._pending, *self._flushers.values()]
        if waiting:
            await asyncio.wait(waiting, timeout=timeout_s)
        left = self.depth
        for task in [*self._pending, *self._flushers.values()]:
            task.cancel()
        await asyncio.gather(*self._pending, *self._flushers.values(), return_exceptions=True)
        if left:
            logger.error(f"session store: {left} queued write(s) were never stored (the store stayed away)")

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.set_store_backlog(self.depth)

"""Admission: one atomic count of a server's live sessions, over all its worker processes.

``--max-sessions N`` is the server's promise: exactly N live sessions, then
503 + ``Retry-After``. With worker processes (``--workers``) each worker
admits its own sessions, so a per-worker share (``ceil(N / workers)``)
would admit more than N. Instead every worker counts in one table in
shared memory (one row per worker, one column per agent, for the agents'
``max_participants``), and the check and the reservation happen under one
lock held across processes:

- the lock is an ``flock`` on a file of the server's: the kernel releases
  it when its holder dies, so a worker killed with SIGKILL in the middle of
  an admission never blocks the others;
- each worker writes only its own row; a worker that died has its row
  cleared by the front before its replacement starts (its sessions became
  DISCONNECTED: they hold no slot).

With one process (``--workers 1``) the same table lives in the process and
needs no lock: admission runs on one event loop with no ``await`` between
the check and the reservation. Several servers on one Redis each keep their
own table: each server's limit holds exactly, and a full server sends new
sessions to one with room (docs/scale.md).
"""

import fcntl
import os
from contextlib import contextmanager
from typing import Any


class Full(Exception):
    """No slot for a new live session; the message says whose limit."""


class Slots:
    """A server's live-session count: a table of workers x agents, shared by its worker processes or not.

    Create it with ``local(agents)`` for one process, or ``shared(context,
    workers, agents, lock_path)`` in the front before its workers start,
    and give each worker ``for_worker(slot)``.
    """

    def __init__(self, agents: list[str], counts: Any, workers: int = 1, lock_path: str | None = None, row: int = 0):
        self._agents = list(agents)
        self._counts = counts
        self._workers = workers
        self._lock_path = lock_path
        self._row = row
        self._lock_fd: int | None = None

    @classmethod
    def local(cls, agents: list[str]) -> "Slots":
        """The count of a server that runs its sessions in its own process."""
        return cls(agents, [0] * len(agents))

    @classmethod
    def shared(cls, context: Any, workers: int, agents: list[str], lock_path: str) -> "Slots":
        """The count of ``workers`` processes started with the multiprocessing ``context``."""
        return cls(agents, context.Array("i", workers * len(agents), lock=False), workers, lock_path)

    def for_worker(self, row: int) -> "Slots":
        """The same table, counting into worker ``row``'s row (passed to that worker at its start)."""
        return Slots(self._agents, self._counts, self._workers, self._lock_path, row)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_lock_fd": None}  # a lock file descriptor is this process's own

    def take(self, agent: str, max_sessions: int, agent_limit: int | None = None) -> None:
        """Reserves a slot for a session of ``agent``, or raises ``Full`` (nothing reserved)."""
        with self._locked():
            refusal = self._refusal(agent, max_sessions, agent_limit)
            if refusal:
                raise Full(refusal)
            self._counts[self._index(self._row, agent)] += 1

    def would_take(self, agent: str, max_sessions: int, agent_limit: int | None = None) -> str | None:
        """Why ``take`` would refuse a session of ``agent`` now, or None (nothing reserved)."""
        with self._locked():
            return self._refusal(agent, max_sessions, agent_limit)

    def give_back(self, agent: str) -> None:
        """Frees a slot ``take`` reserved in this worker's row."""
        with self._locked():
            index = self._index(self._row, agent)
            self._counts[index] = max(0, self._counts[index] - 1)

    def clear(self, row: int) -> None:
        """Frees every slot of worker ``row`` (the front, when that worker died)."""
        with self._locked():
            for agent in self._agents:
                self._counts[self._index(row, agent)] = 0

    def total(self) -> int:
        """Live sessions of the whole server."""
        return sum(self._counts)

    def _refusal(self, agent: str, max_sessions: int, agent_limit: int | None) -> str | None:
        total = sum(self._counts)
        if total >= max_sessions:
            return f"the server runs {total} sessions, its limit; try again later"
        of_agent = sum(self._counts[self._index(row, agent)] for row in range(self._workers))
        if agent_limit is not None and of_agent >= agent_limit:
            return f"agent {agent!r} is talking to {of_agent} participants, its limit; try again later"
        return None

    def _index(self, row: int, agent: str) -> int:
        return row * len(self._agents) + self._agents.index(agent)

    @contextmanager
    def _locked(self):
        if self._lock_path is None:
            yield
            return
        if self._lock_fd is None:
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

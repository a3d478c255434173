"""The session store interface every backend (SQLite, Redis) implements, and its errors.

Every method is a coroutine that returns only once the write is durable in the
backend (committed in SQLite, executed by Redis), so a caller may acknowledge
it to a client. Listing never reads conversations and returns pages of at
most ``MAX_PAGE`` sessions in creation order (oldest first), with an opaque
cursor for the next page.
"""

from __future__ import annotations  # the stores have a method named "list"

import base64
import functools
import inspect
import json
from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Any

from loguru import logger

from pipelines.sessions.history import HourRow
from pipelines.sessions.model import Page, Session, SessionState, SessionSummary, strict_loads
from pipelines.sessions.users import MEMORY_HISTORY, MemoryVersion, User

MAX_PAGE = 100
"""The most sessions one ``list`` call returns."""

DEFAULT_GRACE_S = 300.0
"""How long a DISCONNECTED session stays resumable by default (5 minutes)."""


class SessionNotFound(KeyError):
    """No session has this id (or it has expired)."""


class UserNotFound(KeyError):
    """No session was ever opened as this user (or their record was removed)."""


class BadCursor(ValueError):
    """A listing cursor that no listing of this store produced."""


class StoreUnavailable(Exception):
    """The backend cannot serve the call now (Redis unreachable or frozen; SQLite locked, read-only, full).

    Nothing was written. The server answers 503 with ``Retry-After`` to an API
    call, and queues a session's writes until the store is back
    (``pipelines.sessions.write_behind``).
    """


class BadRecord(SessionNotFound):
    """A stored session that cannot be read back (written by an older version, or damaged); it is skipped."""


def outages_raise_unavailable(is_outage):
    """Class decorator: every public coroutine method raises ``StoreUnavailable`` for an error ``is_outage`` accepts.

    A store names what an outage of its backend looks like (a refused or timed
    out connection, a locked file); callers then catch one exception whatever
    the backend. ``ping`` keeps answering False instead.
    """

    def wrap(method):
        @functools.wraps(method)
        async def translated(self, *args, **kwargs):
            try:
                return await method(self, *args, **kwargs)
            except StoreUnavailable:
                raise
            except Exception as e:
                if not is_outage(e):
                    raise
                raise StoreUnavailable(f"session store {self.describe()}: {e.__class__.__name__}: {e}") from e

        return translated

    def decorate(cls):
        for name, member in list(vars(cls).items()):
            if not name.startswith("_") and name != "ping" and inspect.iscoroutinefunction(member):
                setattr(cls, name, wrap(member))
        return cls

    return decorate


_REPORTED: OrderedDict[str, None] = OrderedDict()


def skip_unreadable(session_id: str, error: Exception) -> None:
    """Logs (once per session, for the last thousand) that a stored session was skipped as unreadable."""
    if session_id in _REPORTED:
        return
    _REPORTED[session_id] = None
    if len(_REPORTED) > 1000:
        _REPORTED.popitem(last=False)
    logger.error(f"session store: skipped session {session_id[:64]!r}: its record cannot be read "
                 f"({error.__class__.__name__}: {str(error)[:200]})")


def order_key(created_at: float, session_id: str) -> str:
    """The text by which sessions are listed: creation time (microseconds, fixed width), then id.

    Sorting these strings sorts by creation time, ties broken by id; both
    stores page by it (Redis keeps it as a sorted set's members).
    """
    return f"{round(created_at * 1_000_000):020d}:{session_id}"


def encode_cursor(key: str) -> str:
    """An opaque cursor for the listing position after ``key``."""
    return base64.urlsafe_b64encode(json.dumps({"after": key}).encode()).decode()


def decode_cursor(cursor: str) -> str:
    """The order key a cursor continues after.

    Raises:
        BadCursor: The cursor is not one this module made.
    """
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))["after"]
    except (ValueError, KeyError, TypeError) as e:
        raise BadCursor("cursor: not a cursor from a previous listing") from e
    if not isinstance(key, str) or ":" not in key:
        raise BadCursor("cursor: not a cursor from a previous listing")
    return key


def page_size(limit: int) -> int:
    """``limit`` clamped to 1..MAX_PAGE."""
    return max(1, min(int(limit), MAX_PAGE))


def readable_messages(session_id: str, bodies: list[str]) -> list[dict]:
    """The stored messages (JSON texts) that can be read back; an unreadable one is skipped and logged."""
    messages = []
    for body in bodies:
        try:
            messages.append(strict_loads(body))
        except ValueError as e:
            skip_unreadable(f"{session_id} (a message)", e)
    return messages


class SessionStore(ABC):
    """Durable sessions: what a server needs to create, list, resume and end them.

    Implementations: ``SQLiteSessionStore`` (one server, embedded) and
    ``RedisSessionStore`` (several servers sharing one Redis).
    """

    def describe(self) -> str:
        """Where the store is, for messages (a path or a URL without its password)."""
        return self.__class__.__name__

    @abstractmethod
    async def open(self) -> None:
        """Connects and prepares the backend (schema, scripts). Call once before anything else."""

    @abstractmethod
    async def close(self) -> None:
        """Releases the connection. Every acknowledged write is already durable."""

    async def __aenter__(self):
        await self.open()
        return self

    async def __aexit__(self, *exc):
        await self.close()

    @abstractmethod
    async def ping(self) -> bool:
        """Whether the backend answers (for ``GET /health``)."""

    @abstractmethod
    async def create(
        self,
        *,
        agent: str,
        owner: str,
        variables: dict[str, str] | None = None,
        messages: list[dict] | None = None,
        user: str | None = None,
    ) -> tuple[Session, str]:
        """Creates a STARTING session (and, for a ``user``, their record, in the same transaction).

        Args:
            agent: The agent (config) name the session runs.
            owner: The id of the server that will run it.
            user: The user it is opened as (a valid id, ``users.user_id_problem``), or None.
            variables: Persona variables.
            messages: The conversation so far, kept like any later messages. Keep
                the system prompt out of it: only the last ``MAX_MESSAGES`` are
                kept, so a resume rebuilds the prompt from the agent, the
                persona ``variables`` and ``settings["system_prompt"]``.

        Returns:
            The session and its resume token. The token is never stored nor
            returned again: hand it to the client now.
        """

    @abstractmethod
    async def get(self, session_id: str) -> Session:
        """The session with its conversation.

        Raises:
            SessionNotFound: No such session.
        """

    @abstractmethod
    async def list(self, *, limit: int = 50, cursor: str | None = None, state: SessionState | None = None) -> Page:
        """A page of sessions (without conversations), oldest first.

        Args:
            limit: Page size, clamped to 1..MAX_PAGE.
            cursor: ``next_cursor`` of the previous page, or None for the first.
            state: Only sessions in this state.

        Raises:
            BadCursor: The cursor is not one this store gave.
        """

    @abstractmethod
    async def count_by_state(self) -> dict[SessionState, int]:
        """How many sessions are in each state (every state present, zeros included)."""

    @abstractmethod
    async def set_state(self, session_id: str, state: SessionState, *, owner: str | None = None) -> Session:
        """Moves a session to ``state``; stamps ``disconnected_at`` on DISCONNECTED.

        Args:
            session_id: The session.
            state: Its new state.
            owner: When given, the server that runs the session from now on
                (a resume on another server takes it over).

        Returns:
            The session after the change (without its messages).

        Raises:
            SessionNotFound: No such session.
        """

    @abstractmethod
    async def append(
        self,
        session_id: str,
        messages: list[dict],
        *,
        turn: bool = True,
        latencies: dict[str, float] | None = None,
        write_id: str | None = None,
    ) -> SessionSummary:
        """Adds messages to the conversation atomically, keeping the last ``MAX_MESSAGES``.

        Args:
            session_id: The session.
            messages: LLM messages (role/content dicts) to append, in order.
            turn: Whether this completes a turn (adds one to the turn count).
            latencies: Latest latencies to record, by name (merged over the previous ones).
            write_id: A unique id of this write: retrying it after a failure that may have
                been applied anyway (a timed-out call to a frozen Redis) applies it once.

        Raises:
            SessionNotFound: No such session.
        """

    @abstractmethod
    async def set_settings(self, session_id: str, settings: dict) -> None:
        """Replaces the session's runtime settings (what a resumed session must apply again).

        The server stores the settings gate's changes here, merged
        (``{"llm": {...}, "tts": {...}, "system_prompt": "..."}``), once they took effect.

        Raises:
            SessionNotFound: No such session.
        """

    @abstractmethod
    async def record_error(self, session_id: str, message: str) -> None:
        """Adds an error to the session's recent errors (the last ``MAX_ERRORS`` are kept).

        Raises:
            SessionNotFound: No such session.
        """

    @abstractmethod
    async def verify_token(self, session_id: str, token: str) -> bool:
        """Whether ``token`` is the session's resume token.

        An unknown id and a wrong token both give False, in the same time:
        the answer reveals nothing about whether the session exists.
        """

    @abstractmethod
    async def expire_disconnected(self, grace_s: float = DEFAULT_GRACE_S) -> list[str]:
        """Ends every session DISCONNECTED for longer than ``grace_s``; returns their ids.

        The server calls it periodically (every few seconds). It is also when
        the SQLite store deletes sessions ENDED longer ago than its
        ``ended_ttl_s``; Redis drops those by itself (key TTLs).
        """

    @abstractmethod
    async def recover(self, owner: str | None = None) -> list[str]:
        """Marks every live (STARTING or ACTIVE) session DISCONNECTED, after a crash or restart.

        Args:
            owner: Only the sessions of this server (several servers share a
                Redis); None for every session.

        Returns:
            The ids of the sessions it marked.
        """

    @abstractmethod
    async def delete(self, session_id: str) -> bool:
        """Removes a session and its conversation; False when there was none."""

    @abstractmethod
    async def get_user(self, user: str) -> User:
        """The user's record.

        Raises:
            UserNotFound: No session was ever opened as this user.
        """

    @abstractmethod
    async def user_sessions(self, user: str, *, limit: int = 50, cursor: str | None = None) -> Page:
        """A page of the user's sessions (still stored), oldest first, like ``list``.

        Raises:
            BadCursor: The cursor is not one this store gave.
        """

    @abstractmethod
    async def read_memory(self, user: str) -> MemoryVersion:
        """The user's memory now (version 0 and no fields before the first write)."""

    @abstractmethod
    async def write_memory(
        self, user: str, expected_version: int, fields: dict[str, Any], *, by: str | None = None
    ) -> MemoryVersion | None:
        """Writes ``fields`` as the user's next version, only if the memory is still at ``expected_version``.

        The compare and the write are one atomic step (one SQLite transaction, one
        Lua script), and the version joins the bounded history in the same step.

        Returns:
            The version written, or None when another write came first (read again, retry).
        """

    @abstractmethod
    async def memory_history(self, user: str, limit: int = MEMORY_HISTORY) -> list[MemoryVersion]:
        """The user's last versions (at most ``MEMORY_HISTORY``), newest first."""

    @abstractmethod
    async def add_usage(self, session_id: str, user: str | None, counts: dict[str, float]) -> None:
        """Adds ``counts`` to the session's usage and, for a user, to the user's usage of today (UTC), atomically.

        Raises:
            SessionNotFound: No such session (nothing added).
        """

    @abstractmethod
    async def user_usage(self, user: str, since: float = 0.0) -> dict[str, float]:
        """The user's usage summed over the days (UTC) from the one holding ``since`` (Unix time) to today."""

    @abstractmethod
    async def history(self, hours: int = 24) -> list[HourRow]:
        """The last ``hours`` UTC hours (clamped to 1..HISTORY_HOURS, the current one last): sessions created,
        turns stored and reply latency percentiles, zeros for an hour with nothing (``pipelines.sessions.history``).

        ``create`` and ``append`` count into the hour's bucket in their own transaction, so a write that
        fails counts nothing and one that lands counts once.
        """

    async def heartbeat(self, server_id: str, info: dict[str, str] | None = None, ttl_s: float = 15.0) -> None:  # noqa: B027 (a no-op unless shared)
        """Says that ``server_id`` is alive, for stores shared by several servers.

        A store of one server (SQLite) has no registry: this does nothing.
        ``RedisSessionStore`` keeps the registry (issue 15's several servers).
        """

"""The session store interface every backend (SQLite, Redis) implements, and its errors.

Every method is a coroutine that returns only once the write is durable in the
backend (committed in SQLite, executed by Redis), so a caller may acknowledge
it to a client. Listing never reads conversations and returns pages of at
most ``MAX_PAGE`` sessions in creation order (oldest first), with an opaque
cursor for the next page.
"""

from __future__ import annotations  # the stores have a method named "list"

import base64
import json
from abc import ABC, abstractmethod

from pipelines.sessions.model import Page, Session, SessionState, SessionSummary

MAX_PAGE = 100
"""The most sessions one ``list`` call returns."""

DEFAULT_GRACE_S = 300.0
"""How long a DISCONNECTED session stays resumable by default (5 minutes)."""


class SessionNotFound(KeyError):
    """No session has this id (or it has expired)."""


class BadCursor(ValueError):
    """A listing cursor that no listing of this store produced."""


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


class SessionStore(ABC):
    """Durable sessions: what a server needs to create, list, resume and end them.

    Implementations: ``SQLiteSessionStore`` (one server, embedded) and
    ``RedisSessionStore`` (several servers sharing one Redis).
    """

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
        self, *, agent: str, owner: str, variables: dict[str, str] | None = None, messages: list[dict] | None = None
    ) -> tuple[Session, str]:
        """Creates a STARTING session.

        Args:
            agent: The agent (config) name the session runs.
            owner: The id of the server that will run it.
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
    ) -> SessionSummary:
        """Adds messages to the conversation atomically, keeping the last ``MAX_MESSAGES``.

        Args:
            session_id: The session.
            messages: LLM messages (role/content dicts) to append, in order.
            turn: Whether this completes a turn (adds one to the turn count).
            latencies: Latest latencies to record, by name (merged over the previous ones).

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

    async def heartbeat(self, server_id: str, info: dict[str, str] | None = None, ttl_s: float = 15.0) -> None:  # noqa: B027 (a no-op unless shared)
        """Says that ``server_id`` is alive, for stores shared by several servers.

        A store of one server (SQLite) has no registry: this does nothing.
        ``RedisSessionStore`` keeps the registry (issue 15's several servers).
        """


def store_for(location: str, **options) -> SessionStore:
    """The store a ``--store`` value names: a ``redis://``/``rediss://``/``unix://`` URL, else a SQLite file path.

    Args:
        location: ``redis://HOST:PORT/DB`` (Redis) or a path such as
            ``sessions.db`` or ``sqlite:///var/lib/framegraph/sessions.db``.
        **options: Passed to the store (``ended_ttl_s``; ``prefix`` for Redis).

    Raises:
        ValueError: Empty location, or Redis asked for without the ``redis`` extra installed.
    """
    if not location.strip():
        raise ValueError("session store: give a SQLite file path or a redis:// URL")
    if location.startswith(("redis://", "rediss://", "unix://")):
        try:
            from pipelines.sessions.redis_store import RedisSessionStore
        except ImportError as e:
            raise ValueError(
                f"session store {location}: Redis needs the 'redis' extra (pip install 'framegraph[redis]')"
            ) from e
        return RedisSessionStore(location, **options)
    from pipelines.sessions.sqlite_store import SQLiteSessionStore

    return SQLiteSessionStore(location.removeprefix("sqlite://"), **options)

"""The session record: what a conversation keeps between connections, restarts and servers.

A session is one participant's conversation with one agent. Its durable part
(this model) outlives the connection and the server process: the store keeps
it so that a client can come back with the session id and its resume token
within the grace period and go on where it left off.

The resume token is shown to the client once, at creation; stores keep only
its SHA-256 digest (the token is 32 random bytes, so a plain digest suffices:
there is nothing to brute-force) and compare digests in constant time.
"""

import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_MESSAGES = 100
"""How many LLM messages a session keeps (the newest ones)."""

MAX_ERRORS = 20
"""How many recent errors a session keeps (the newest ones)."""


REPLY_LATENCY = "speech_end_to_first_audio_s"
"""The latency name (in ``latencies``) of the time from the user's speech end to the bot's first audio."""

HEARD_LATENCY = "page_speech_end_to_heard_s"
"""The latency name of the same step as the client reported hearing it (``pipelines.server.latency``)."""

INTERRUPTION_LATENCY = "interruption_s"
"""The latency name of the time from a barge-in to the bot's audio stopping."""


class SessionState(StrEnum):
    """Where a session is in its life.

    STARTING: created, no connection yet. ACTIVE: a client is connected and the
    graph runs. DISCONNECTED: the connection dropped (or the server died); the
    session can be resumed until the grace period ends. ENDED: over for good.
    """

    STARTING = "STARTING"
    ACTIVE = "ACTIVE"
    DISCONNECTED = "DISCONNECTED"
    ENDED = "ENDED"


LIVE_STATES = (SessionState.STARTING, SessionState.ACTIVE)
"""States a server crash turns into DISCONNECTED."""


class SessionError(BaseModel):
    """One error a session met, for the dashboard and the API."""

    model_config = ConfigDict(frozen=True)

    at: float = Field(description="Unix time of the error")
    message: str


class SessionSummary(BaseModel):
    """A session without its conversation: what listing returns (cheap to read and to send)."""

    id: str
    agent: str = Field(description="Name of the agent (config) the session runs")
    user: str | None = Field(None, description="The user the session was opened as (docs/users.md)")
    variables: dict[str, str] = Field(default_factory=dict, description="Persona variables")
    state: SessionState = SessionState.STARTING
    owner: str = Field(description="Id of the server that runs (or last ran) the session")
    created_at: float
    updated_at: float
    disconnected_at: float | None = None
    turns: int = 0
    latencies: dict[str, float] = Field(
        default_factory=dict, description="Latest value of each measured latency, in seconds, by name"
    )
    errors: list[SessionError] = Field(default_factory=list, description=f"The last {MAX_ERRORS} errors")
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="Runtime settings applied since creation (llm, tts, system_prompt), restored on resume; "
        "pending: changes held until the running response ends; applied, failed: what became of the last changes",
    )
    usage: dict[str, float] = Field(
        default_factory=dict, description="What the session used, by kind/provider/model/metric (docs/users.md)"
    )


class Session(SessionSummary):
    """A session with its conversation context (the last ``MAX_MESSAGES`` LLM messages)."""

    messages: list[dict] = Field(default_factory=list)


class Page(BaseModel):
    """One page of a session listing; pass ``next_cursor`` to get the next page (None: last page)."""

    items: list[SessionSummary]
    next_cursor: str | None = None


class Health(BaseModel):
    """What ``GET /health`` reports (and the dashboard shows): the store's status and session counts."""

    store_ok: bool
    active: int = Field(description="Live sessions (STARTING or ACTIVE)")
    disconnected: int = Field(description="Sessions waiting to be resumed")
    total: int = Field(description="Every session the store holds, ENDED ones included")
    by_state: dict[SessionState, int]
    load: dict[str, Any] | None = Field(None, description="This server's load level (NORMAL ... SESSION_REJECT), "
                                        "for how long, and the measurement behind it (docs/backpressure.md)")

    @classmethod
    def from_counts(cls, counts: dict[SessionState, int], store_ok: bool, load: dict | None = None) -> "Health":
        """The report for a store's ``count_by_state()`` and ``ping()``, with the load level's report."""
        by_state = {s: counts.get(s, 0) for s in SessionState}
        return cls(
            load=load,
            store_ok=store_ok,
            active=sum(by_state[s] for s in LIVE_STATES),
            disconnected=by_state[SessionState.DISCONNECTED],
            total=sum(by_state.values()),
            by_state=by_state,
        )


#: Text no client may send: lone UTF-16 surrogates (no UTF-8 encoding exists for them, so a
#: record holding one cannot be sent as JSON) and control characters other than tab and newlines.
_BAD_TEXT = re.compile("[\ud800-\udfff\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(value: Any, where: str = "") -> str | None:
    """Why ``value`` (text, or dicts and lists of it) may not be stored, naming where; None when it may.

    Called on what a client sends (persona variables, settings, system prompt)
    so that one bad string is refused with a 400, not stored to break every
    later reading of the session (``GET /sessions`` included).
    """
    if isinstance(value, str):
        bad = _BAD_TEXT.search(value)
        if bad is None:
            return None
        kind = "a lone surrogate" if _LONE_SURROGATE.match(bad.group()) else "a control character"
        return f"{where or 'text'}: {kind} ({ascii(bad.group())}) at character {bad.start()}"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        name = _BAD_TEXT.sub("?", key) if isinstance(key, str) else str(key)  # the answer must itself be sendable
        inner = f"{where}.{name}" if where else name
        problem = text_problem(key, inner) if isinstance(key, str) else None
        problem = problem or text_problem(item, inner)
        if problem:
            return problem
    return None


def sendable(value: Any) -> Any:
    """``value`` with every lone surrogate replaced by U+FFFD, so it always encodes as UTF-8.

    The stores pass what the pipeline wrote (transcripts, LLM text) through it:
    those are not the client's to fix, and must never make a record unreadable.
    """
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {sendable(k): sendable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [sendable(v) for v in value]
    return value


def strict_loads(text: str) -> Any:
    """``json.loads`` that refuses what could not be sent back as UTF-8 JSON (lone surrogates).

    Raises:
        ValueError: Not JSON, or it holds a lone surrogate.
    """
    value = json.loads(text)
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # UnicodeEncodeError is a ValueError
    return value


def new_session_id() -> str:
    """A fresh random session id (32 hex digits)."""
    return uuid.uuid4().hex


def new_resume_token() -> str:
    """A fresh resume token: 32 random bytes, URL-safe text."""
    return secrets.token_urlsafe(32)


def new_session(*, agent: str, owner: str, variables: dict[str, str] | None, messages: list[dict] | None,
                user: str | None) -> tuple[Session, str]:
    """A fresh STARTING session as every store creates it (its last ``MAX_MESSAGES`` messages), and its resume token."""
    created = now()
    session = Session(
        id=new_session_id(),
        agent=agent,
        user=user,
        variables=sendable(variables or {}),
        owner=owner,
        created_at=created,
        updated_at=created,
        messages=sendable((messages or [])[-MAX_MESSAGES:]),
    )
    return session, new_resume_token()


def hash_token(token: str) -> str:
    """The digest a store keeps instead of ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


_DECOY_DIGEST = hash_token("no session has this token")


def token_matches(token: str, digest: str | None) -> bool:
    """Whether ``token`` hashes to ``digest``, in constant time.

    A missing session (``digest`` None) is compared against a decoy digest so
    that an unknown id and a wrong token cost the same time and give the same
    answer.
    """
    matches = hmac.compare_digest(hash_token(token), digest or _DECOY_DIGEST)
    return matches and digest is not None


def now() -> float:
    """The stores' clock (Unix time, seconds)."""
    return time.time()

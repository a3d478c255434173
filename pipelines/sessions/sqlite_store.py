"""The embedded session store: one SQLite file in WAL mode.

Why the standard library's ``sqlite3`` and not ``aiosqlite``: aiosqlite is a
thread that owns one connection and runs each call on it; a one-thread
executor here does the same with no extra dependency, and keeps every
transaction (read-modify-write included) inside one function call on that
thread. Every write is one ``BEGIN IMMEDIATE ... COMMIT`` with
``synchronous=FULL``, and the coroutine returns only after the commit, so
what a caller acknowledges survives a SIGKILL of the process (and a power
cut). Several processes may open the same file: ``BEGIN IMMEDIATE`` and the
busy timeout serialize their writes.
"""

from __future__ import annotations  # the stores have a method named "list"

import asyncio
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipelines.sessions.history import (
    SESSIONS,
    TURNS,
    hour_of,
    hour_row,
    hours_back,
    latency_counter,
    oldest_kept,
)
from pipelines.sessions.model import (
    LIVE_STATES,
    MAX_ERRORS,
    MAX_MESSAGES,
    Page,
    Session,
    SessionError,
    SessionState,
    SessionSummary,
    hash_token,
    new_session,
    now,
    sendable,
    strict_loads,
    token_matches,
)
from pipelines.sessions.store import (
    DEFAULT_GRACE_S,
    BadRecord,
    SessionNotFound,
    SessionStore,
    UserNotFound,
    decode_cursor,
    encode_cursor,
    order_key,
    outages_raise_unavailable,
    page_size,
    readable_messages,
    skip_unreadable,
)
from pipelines.sessions.users import MEMORY_HISTORY, MemoryVersion, User, usage_day

#: How long a write waits for another process's lock before the store counts as unavailable.
BUSY_TIMEOUT_S = 5.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    order_key TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL,
    agent TEXT NOT NULL,
    variables TEXT NOT NULL,
    state TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    disconnected_at REAL,
    turns INTEGER NOT NULL DEFAULT 0,
    latencies TEXT NOT NULL DEFAULT '{}',
    errors TEXT NOT NULL DEFAULT '[]',
    settings TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS sessions_by_state ON sessions (state, order_key);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_session ON messages (session_id, seq);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    last_seen_at REAL NOT NULL,
    sessions INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS usage (
    user TEXT NOT NULL,
    day TEXT NOT NULL,
    key TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (user, day, key)
);
CREATE TABLE IF NOT EXISTS memory (
    user TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    fields TEXT NOT NULL,
    updated_at REAL NOT NULL,
    by TEXT
);
CREATE TABLE IF NOT EXISTS memory_history (
    user TEXT NOT NULL,
    version INTEGER NOT NULL,
    fields TEXT NOT NULL,
    updated_at REAL NOT NULL,
    by TEXT,
    PRIMARY KEY (user, version)
);
CREATE TABLE IF NOT EXISTS history (
    hour INTEGER NOT NULL,
    key TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (hour, key)
);
"""

#: Added to an older file's ``sessions`` table on open (``CREATE TABLE IF NOT EXISTS`` keeps the old columns).
_NEW_COLUMNS = {"user": "ALTER TABLE sessions ADD COLUMN user TEXT",
                "usage": "ALTER TABLE sessions ADD COLUMN usage TEXT NOT NULL DEFAULT '{}'"}
_USER_INDEX = "CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user, order_key)"

_SUMMARY_COLUMNS = (
    "id, agent, variables, state, owner, created_at, updated_at, disconnected_at, turns, latencies, errors, settings,"
    " user, usage, order_key"
)


def _summary(row: tuple) -> SessionSummary:
    sid, agent, variables, state, owner, created, updated, disconnected, turns, latencies, errors, settings, user, usage, \
        _ = row
    return SessionSummary(
        id=sid,
        agent=agent,
        user=user,
        variables=strict_loads(variables),
        state=SessionState(state),
        owner=owner,
        created_at=created,
        updated_at=updated,
        disconnected_at=disconnected,
        turns=turns,
        latencies=strict_loads(latencies),
        errors=[SessionError(**e) for e in strict_loads(errors)],
        settings=strict_loads(settings),
        usage=strict_loads(usage),
    )


def _readable(row: tuple) -> SessionSummary | None:
    """The row's summary, or None (logged) when it cannot be read: one bad row fails no listing."""
    try:
        return _summary(row)
    except Exception as e:  # any damage at all: bad JSON, a lone surrogate, an unknown state
        skip_unreadable(str(row[0]), e)
        return None


def _count(db, at: float, counts: dict[str, int]) -> None:
    """Adds ``counts`` to the history bucket of the hour holding ``at`` (inside the caller's transaction)."""
    db.executemany(
        "INSERT INTO history (hour, key, count) VALUES (?, ?, ?)"
        " ON CONFLICT (hour, key) DO UPDATE SET count = count + excluded.count",
        [(hour_of(at), key, n) for key, n in counts.items() if n],
    )


def _is_outage(error: Exception) -> bool:
    """Whether ``error`` means the file cannot be used now (locked, read-only, full, I/O), not a bug in the call."""
    return isinstance(error, sqlite3.OperationalError)


@outages_raise_unavailable(_is_outage)

class SQLiteSessionStore(SessionStore):
    """Sessions in one SQLite file (the default store of a single server)."""

    def __init__(self, path: str | Path, *, ended_ttl_s: float = 3600.0, busy_timeout_s: float = BUSY_TIMEOUT_S):
        """Creates the store; ``open()`` connects.

        Args:
            path: The database file (created with its folder when missing).
            ended_ttl_s: How long an ENDED session stays readable; ``expire_disconnected`` deletes older ones.
            busy_timeout_s: How long a call waits for another process's lock before it fails
                (``StoreUnavailable``: the server answers 503 and queues the session's writes).
        """
        self.path = Path(path)
        self.ended_ttl_s = ended_ttl_s
        self.busy_timeout_s = busy_timeout_s
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn, *args):
        """Runs ``fn(db, *args)`` on the store's own thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, self._db, *args)

    async def _write(self, fn, *args):
        """Runs ``fn(db, *args)`` inside one IMMEDIATE transaction; returns after the commit."""

        def transaction(db, *args):
            db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(db, *args)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

        return await self._run(transaction, *args)

    def describe(self) -> str:
        return str(self.path)

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-sessions")

        def connect(_):
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=self.busy_timeout_s)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(_SCHEMA)
            columns = {column for _, column, *_ in db.execute("PRAGMA table_info(sessions)")}
            for column, statement in _NEW_COLUMNS.items():
                if column not in columns:
                    db.execute(statement)
            db.execute(_USER_INDEX)
            return db

        self._db = await asyncio.get_running_loop().run_in_executor(self._executor, connect, None)

    async def close(self) -> None:
        if self._db is not None:
            await self._run(lambda db: db.close())
            self._db = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def ping(self) -> bool:
        try:
            return await self._run(lambda db: db.execute("SELECT 1").fetchone() == (1,))
        except (sqlite3.Error, RuntimeError, AttributeError):
            return False

    async def create(self, *, agent, owner, variables=None, messages=None, user=None):
        session, token = new_session(agent=agent, owner=owner, variables=variables, messages=messages, user=user)
        created = session.created_at

        def insert(db):
            db.execute(
                "INSERT INTO sessions (id, order_key, token_hash, agent, variables, state, owner, created_at,"
                " updated_at, user) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session.id,
                    order_key(created, session.id),
                    hash_token(token),
                    agent,
                    json.dumps(session.variables),
                    session.state.value,
                    owner,
                    created,
                    created,
                    user,
                ),
            )
            if user is not None:
                db.execute(
                    "INSERT INTO users (id, created_at, last_seen_at, sessions) VALUES (?, ?, ?, 1)"
                    " ON CONFLICT (id) DO UPDATE SET last_seen_at = excluded.last_seen_at, sessions = sessions + 1",
                    (user, created, created),
                )
            db.executemany(
                "INSERT INTO messages (session_id, body) VALUES (?, ?)",
                [(session.id, json.dumps(m)) for m in session.messages],
            )
            _count(db, created, {SESSIONS: 1})

        await self._write(insert)
        return session, token

    @staticmethod
    def _read_summary(db, session_id: str) -> SessionSummary:
        row = db.execute(f"SELECT {_SUMMARY_COLUMNS} FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            raise SessionNotFound(session_id)
        summary = _readable(row)
        if summary is None:
            raise BadRecord(session_id)
        return summary

    async def get(self, session_id):
        def read(db):
            db.execute("BEGIN")
            try:
                summary = self._read_summary(db, session_id)
                bodies = db.execute(
                    "SELECT body FROM messages WHERE session_id = ? ORDER BY seq", (session_id,)
                ).fetchall()
            finally:
                db.execute("COMMIT")
            return Session(**summary.model_dump(), messages=readable_messages(session_id, [b for (b,) in bodies]))

        return await self._run(read)

    async def list(self, *, limit=50, cursor=None, state=None):
        return await self._page(limit, cursor, state=state)

    async def _page(self, limit, cursor, *, state=None, user=None):
        size = page_size(limit)
        after = decode_cursor(cursor) if cursor else ""
        where, args = "order_key > ?", [after]
        if state is not None:
            where += " AND state = ?"
            args.append(SessionState(state).value)
        if user is not None:
            where += " AND user = ?"
            args.append(user)

        def read(db):
            return db.execute(
                f"SELECT {_SUMMARY_COLUMNS} FROM sessions WHERE {where} ORDER BY order_key LIMIT ?", (*args, size + 1)
            ).fetchall()

        rows = await self._run(read)
        items = [s for s in map(_readable, rows[:size]) if s is not None]
        return Page(items=items, next_cursor=encode_cursor(rows[size - 1][-1]) if len(rows) > size else None)

    async def count_by_state(self):
        rows = await self._run(lambda db: db.execute("SELECT state, count(*) FROM sessions GROUP BY state").fetchall())
        counts = dict.fromkeys(SessionState, 0)
        counts.update({SessionState(s): n for s, n in rows})
        return counts

    async def set_state(self, session_id, state, *, owner=None):
        state = SessionState(state)

        def update(db):
            t = now()
            cur = db.execute(
                "UPDATE sessions SET state = ?, updated_at = ?, owner = coalesce(?, owner),"
                " disconnected_at = CASE WHEN ? THEN ? ELSE disconnected_at END WHERE id = ?",
                (state.value, t, owner, state is SessionState.DISCONNECTED, t, session_id),
            )
            if cur.rowcount == 0:
                raise SessionNotFound(session_id)
            return self._read_summary(db, session_id)

        return await self._write(update)

    async def append(self, session_id, messages, *, turn=True, latencies=None, write_id=None):
        # write_id is not needed here: a call that failed rolled its transaction back, so a retry applies once.
        bodies = [json.dumps(m) for m in sendable(messages)]
        latency = latency_counter(latencies)

        def update(db):
            summary = self._read_summary(db, session_id)
            merged = {**summary.latencies, **(latencies or {})}
            t = now()
            db.execute(
                "UPDATE sessions SET turns = turns + ?, latencies = ?, updated_at = ? WHERE id = ?",
                (int(turn), json.dumps(merged), t, session_id),
            )
            _count(db, t, {TURNS: int(turn), **({latency: 1} if latency else {})})
            db.executemany("INSERT INTO messages (session_id, body) VALUES (?, ?)", [(session_id, b) for b in bodies])
            db.execute(
                "DELETE FROM messages WHERE session_id = ? AND seq NOT IN"
                " (SELECT seq FROM messages WHERE session_id = ? ORDER BY seq DESC LIMIT ?)",
                (session_id, session_id, MAX_MESSAGES),
            )
            return self._read_summary(db, session_id)

        return await self._write(update)

    async def set_settings(self, session_id, settings):
        body = json.dumps(sendable(settings))

        def update(db):
            cur = db.execute(
                "UPDATE sessions SET settings = ?, updated_at = ? WHERE id = ?", (body, now(), session_id)
            )
            if cur.rowcount == 0:
                raise SessionNotFound(session_id)

        await self._write(update)

    async def record_error(self, session_id, message):
        def update(db):
            summary = self._read_summary(db, session_id)
            errors = [*summary.errors, SessionError(at=now(), message=sendable(message))][-MAX_ERRORS:]
            db.execute(
                "UPDATE sessions SET errors = ?, updated_at = ? WHERE id = ?",
                (json.dumps([e.model_dump() for e in errors]), now(), session_id),
            )

        await self._write(update)

    async def verify_token(self, session_id, token):
        row = await self._run(
            lambda db: db.execute("SELECT token_hash FROM sessions WHERE id = ?", (session_id,)).fetchone()
        )
        return token_matches(token, row[0] if row else None)

    async def expire_disconnected(self, grace_s=DEFAULT_GRACE_S):
        def update(db):
            t = now()
            ids = [
                sid
                for (sid,) in db.execute(
                    "SELECT id FROM sessions WHERE state = ? AND disconnected_at <= ?",
                    (SessionState.DISCONNECTED.value, t - grace_s),
                )
            ]
            db.executemany(
                "UPDATE sessions SET state = ?, updated_at = ? WHERE id = ?",
                [(SessionState.ENDED.value, t, sid) for sid in ids],
            )
            db.execute(
                "DELETE FROM sessions WHERE state = ? AND updated_at <= ?",
                (SessionState.ENDED.value, t - self.ended_ttl_s),
            )
            db.execute("DELETE FROM history WHERE hour < ?", (oldest_kept(t),))
            return ids

        return await self._write(update)

    async def recover(self, owner=None):
        live = [s.value for s in LIVE_STATES]

        def update(db):
            t = now()
            query = f"SELECT id FROM sessions WHERE state IN ({', '.join('?' * len(live))})"
            args = list(live)
            if owner is not None:
                query += " AND owner = ?"
                args.append(owner)
            ids = [sid for (sid,) in db.execute(query, args)]
            db.executemany(
                "UPDATE sessions SET state = ?, updated_at = ?, disconnected_at = ? WHERE id = ?",
                [(SessionState.DISCONNECTED.value, t, t, sid) for sid in ids],
            )
            return ids

        return await self._write(update)

    async def delete(self, session_id):
        return await self._write(lambda db: db.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount > 0)

    async def get_user(self, user):
        row = await self._run(
            lambda db: db.execute("SELECT id, created_at, last_seen_at, sessions FROM users WHERE id = ?",
                                  (user,)).fetchone()
        )
        if row is None:
            raise UserNotFound(user)
        return User(id=row[0], created_at=row[1], last_seen_at=row[2], sessions=row[3])

    async def user_sessions(self, user, *, limit=50, cursor=None):
        return await self._page(limit, cursor, user=user)

    async def read_memory(self, user):
        row = await self._run(
            lambda db: db.execute("SELECT version, fields, updated_at, by FROM memory WHERE user = ?",
                                  (user,)).fetchone()
        )
        if row is None:
            return MemoryVersion(version=0)
        return MemoryVersion(version=row[0], fields=strict_loads(row[1]), updated_at=row[2], by=row[3])

    async def write_memory(self, user, expected_version, fields, *, by=None):
        body = json.dumps(sendable(fields))

        def update(db):
            row = db.execute("SELECT version FROM memory WHERE user = ?", (user,)).fetchone()
            if (row[0] if row else 0) != expected_version:
                return None
            version, t = expected_version + 1, now()
            db.execute(
                "INSERT INTO memory (user, version, fields, updated_at, by) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (user) DO UPDATE SET version = excluded.version, fields = excluded.fields,"
                " updated_at = excluded.updated_at, by = excluded.by",
                (user, version, body, t, by),
            )
            db.execute("INSERT INTO memory_history (user, version, fields, updated_at, by) VALUES (?, ?, ?, ?, ?)",
                       (user, version, body, t, by))
            db.execute("DELETE FROM memory_history WHERE user = ? AND version <= ?", (user, version - MEMORY_HISTORY))
            return MemoryVersion(version=version, fields=strict_loads(body), updated_at=t, by=by)

        return await self._write(update)

    async def memory_history(self, user, limit=MEMORY_HISTORY):
        rows = await self._run(
            lambda db: db.execute(
                "SELECT version, fields, updated_at, by FROM memory_history WHERE user = ? ORDER BY version DESC"
                " LIMIT ?", (user, max(1, min(limit, MEMORY_HISTORY)))
            ).fetchall()
        )
        return [MemoryVersion(version=v, fields=strict_loads(f), updated_at=t, by=b) for v, f, t, b in rows]

    async def add_usage(self, session_id, user, counts):
        def update(db):
            summary = self._read_summary(db, session_id)
            merged = dict(summary.usage)
            for key, value in counts.items():
                merged[key] = merged.get(key, 0.0) + value
            db.execute("UPDATE sessions SET usage = ?, updated_at = ? WHERE id = ?",
                       (json.dumps(merged), now(), session_id))
            if user is not None:
                db.executemany(
                    "INSERT INTO usage (user, day, key, value) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (user, day, key) DO UPDATE SET value = value + excluded.value",
                    [(user, usage_day(now()), key, value) for key, value in counts.items()],
                )

        await self._write(update)

    async def user_usage(self, user, since=0.0):
        rows = await self._run(lambda db: db.execute(
            "SELECT key, sum(value) FROM usage WHERE user = ? AND day >= ? GROUP BY key", (user, usage_day(since))
        ).fetchall())
        return dict(rows)

    async def history(self, hours=24):
        starts = hours_back(hours, now())
        rows = await self._run(lambda db: db.execute(
            "SELECT hour, key, count FROM history WHERE hour >= ? AND hour <= ?", (starts[0], starts[-1])
        ).fetchall())
        counts: dict[int, dict[str, int]] = {hour: {} for hour in starts}
        for hour, key, n in rows:
            counts[hour][key] = n
        return [hour_row(hour, counts[hour]) for hour in starts]

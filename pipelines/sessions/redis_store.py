"""The shared session store: Redis, for several servers that form one service.

Layout (every key under the store's ``prefix``):

- ``session:{id}`` hash: token_hash, agent, variables (JSON), state, owner,
  created_at, updated_at, disconnected_at, turns, latencies (JSON), settings
  (JSON), order, last_write (the id of the last append, so a retried one applies once).
- ``session:{id}:messages`` list (the last ``MAX_MESSAGES``, JSON each) and
  ``session:{id}:errors`` list (the last ``MAX_ERRORS``).
- ``all`` and ``state:{STATE}``: sorted sets of order keys (score 0, so
  members sort by text: creation time then id) for cheap, exact paging.
- ``disconnected``: zset of ids by disconnection time (grace-period expiry).
- ``ended``: zset of order keys by end time; an ENDED session's keys get a
  TTL (``ended_ttl_s``) and its index entries are pruned once it lapses.
- ``owner:{server}``: set of the ids of the not-ENDED sessions a server runs.
- ``user:{id}`` hash (created_at, last_seen_at, sessions), ``user:{id}:sessions``
  zset of the user's sessions' order keys (lapsed ones pruned when read),
  ``user:{id}:memory`` hash (version, fields JSON, updated_at, by) and
  ``user:{id}:memory:history`` list (newest first, the last ``MEMORY_HISTORY``),
  ``user:{id}:usage:{YYYY-MM-DD}`` hash of counts and ``user:{id}:usage-days`` set.
- ``history:{hour}`` hash per UTC hour (its start, Unix seconds): sessions,
  turns and ``latency:{i}`` counters (``pipelines.sessions.history``), with an
  expiry ``HISTORY_HOURS`` after the hour began.
- ``servers`` zset (id by last heartbeat) and ``server:{id}`` hash with a
  TTL: the owner registry for several servers (issue 15).

Every multi-key change is one Lua script or one MULTI/EXEC, so it is atomic;
a write is acknowledged when Redis has executed it. Durability across a crash
of Redis itself is Redis's configuration (``appendonly yes``,
``appendfsync always`` for none lost).
"""

from __future__ import annotations  # the stores have a method named "list"

import json
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pipelines.sessions.history import SESSIONS, expires_at, hour_of, hour_row, hours_back, latency_counter
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

#: How long one Redis call may take before the store counts Redis as away (a frozen server never answers).
CALL_TIMEOUT_S = 3.0
#: Replies of a Redis that is up but cannot write or serve now (disk errors, memory, loading, replica).
_OUTAGE_REPLIES = ("MISCONF", "OOM", "LOADING", "MASTERDOWN", "BUSY", "TRYAGAIN")


def _is_outage(error: Exception) -> bool:
    """Whether ``error`` means Redis is away or cannot serve now (not a bug in the call)."""
    if isinstance(error, (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError, TimeoutError)):
        return True
    return isinstance(error, ResponseError) and str(error).startswith(_OUTAGE_REPLIES)

# KEYS: session hash, messages list, history hash of the hour. ARGV: turn (0/1), now, latencies JSON, max
# messages, write id ('' for none), latency counter ('' for none), history expiry (Unix s), messages... A write id equal to the last one applied is a retry of a write that Redis did execute
# (a frozen Redis runs the commands it received before the client gave up): done already.
_APPEND = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[5] ~= '' then
  if redis.call('HGET', KEYS[1], 'last_write') == ARGV[5] then return 1 end
  redis.call('HSET', KEYS[1], 'last_write', ARGV[5])
end
if #ARGV > 7 then
  redis.call('RPUSH', KEYS[2], unpack(ARGV, 8))
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
end
redis.call('HINCRBY', KEYS[1], 'turns', tonumber(ARGV[1]))
local latencies = cjson.decode(redis.call('HGET', KEYS[1], 'latencies'))
for name, value in pairs(cjson.decode(ARGV[3])) do latencies[name] = value end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[2], 'latencies', cjson.encode(latencies))
if tonumber(ARGV[1]) > 0 or ARGV[6] ~= '' then
  redis.call('HINCRBY', KEYS[3], 'turns', tonumber(ARGV[1]))
  if ARGV[6] ~= '' then redis.call('HINCRBY', KEYS[3], ARGV[6], 1) end
  redis.call('EXPIREAT', KEYS[3], ARGV[7])
end
return 1
"""

# KEYS: session hash. ARGV: prefix, id, new state, now, owner ('' keeps it), ended TTL (s),
# states the session must be in (comma list, '' for any).
_SET_STATE = """
local h = KEYS[1]
if redis.call('EXISTS', h) == 0 then return 0 end
local p, id, new, t = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local old = redis.call('HGET', h, 'state')
if ARGV[7] ~= '' and not string.find(',' .. ARGV[7] .. ',', ',' .. old .. ',', 1, true) then return -1 end
local order = redis.call('HGET', h, 'order')
local owner = redis.call('HGET', h, 'owner')
redis.call('ZREM', p .. 'state:' .. old, order)
redis.call('ZADD', p .. 'state:' .. new, 0, order)
redis.call('HSET', h, 'state', new, 'updated_at', t)
if ARGV[5] ~= '' and ARGV[5] ~= owner then
  redis.call('SREM', p .. 'owner:' .. owner, id)
  owner = ARGV[5]
  redis.call('HSET', h, 'owner', owner)
end
if new == 'DISCONNECTED' then
  redis.call('HSET', h, 'disconnected_at', t)
  redis.call('ZADD', p .. 'disconnected', t, id)
else
  redis.call('ZREM', p .. 'disconnected', id)
end
local keys = {h, h .. ':messages', h .. ':errors'}
if new == 'ENDED' then
  redis.call('SREM', p .. 'owner:' .. owner, id)
  redis.call('ZADD', p .. 'ended', t, order)
  for _, k in ipairs(keys) do redis.call('PEXPIRE', k, math.floor(tonumber(ARGV[6]) * 1000)) end
else
  redis.call('SADD', p .. 'owner:' .. owner, id)
  redis.call('ZREM', p .. 'ended', order)
  for _, k in ipairs(keys) do redis.call('PERSIST', k) end
end
return 1
"""

# KEYS: session hash. ARGV: prefix, id.
_DELETE = """
local h = KEYS[1]
if redis.call('EXISTS', h) == 0 then return 0 end
local p, id = ARGV[1], ARGV[2]
local state, order, owner = unpack(redis.call('HMGET', h, 'state', 'order', 'owner'))
redis.call('ZREM', p .. 'all', order)
redis.call('ZREM', p .. 'state:' .. state, order)
redis.call('ZREM', p .. 'ended', order)
redis.call('ZREM', p .. 'disconnected', id)
redis.call('SREM', p .. 'owner:' .. owner, id)
redis.call('DEL', h, h .. ':messages', h .. ':errors')
return 1
"""

# KEYS: session hash, errors list. ARGV: error JSON, max errors, now.
_RECORD_ERROR = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
redis.call('HSET', KEYS[1], 'updated_at', ARGV[3])
return 1
"""

# KEYS: session hash. ARGV: settings JSON, now.
_SET_SETTINGS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'settings', ARGV[1], 'updated_at', ARGV[2])
return 1
"""

# ARGV: prefix, cutoff. Removes from the indexes the ENDED sessions whose keys have lapsed.
_PRUNE_ENDED = """
local p = ARGV[1]
local gone = redis.call('ZRANGEBYSCORE', p .. 'ended', '-inf', ARGV[2])
for _, order in ipairs(gone) do
  redis.call('ZREM', p .. 'all', order)
  redis.call('ZREM', p .. 'state:ENDED', order)
  redis.call('ZREM', p .. 'ended', order)
end
return #gone
"""


# KEYS: memory hash, history list. ARGV: expected version, fields JSON, now, by ('' for none), history length.
# Compare-and-set: writes version expected+1 only if the memory is still at the expected version.
_WRITE_MEMORY = """
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if version ~= tonumber(ARGV[1]) then return 0 end
version = version + 1
redis.call('HSET', KEYS[1], 'version', version, 'fields', ARGV[2], 'updated_at', ARGV[3], 'by', ARGV[4])
redis.call('LPUSH', KEYS[2], version .. '\\n' .. ARGV[3] .. '\\n' .. ARGV[4] .. '\\n' .. ARGV[2])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[5]) - 1)
return version
"""


# KEYS: session hash, the user's usage hash of today and set of usage days ('' without a user). ARGV: now,
# counts JSON, today.
_ADD_USAGE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if KEYS[2] ~= '' then redis.call('SADD', KEYS[3], ARGV[3]) end
local usage = cjson.decode(redis.call('HGET', KEYS[1], 'usage') or '{}')
for key, value in pairs(cjson.decode(ARGV[2])) do
  usage[key] = (usage[key] or 0) + value
  if KEYS[2] ~= '' then redis.call('HINCRBYFLOAT', KEYS[2], key, value) end
end
redis.call('HSET', KEYS[1], 'usage', cjson.encode(usage), 'updated_at', ARGV[1])
return 1
"""


def _history_entry(entry: str) -> MemoryVersion:
    version, updated_at, by, fields = entry.split("\n", 3)
    return MemoryVersion(version=int(version), updated_at=float(updated_at), by=by or None, fields=strict_loads(fields))


def _id_of(order: str) -> str:
    return order.split(":", 1)[1]


@outages_raise_unavailable(_is_outage)
class RedisSessionStore(SessionStore):
    """Sessions in a Redis shared by every server of the service."""

    def __init__(self, url: str, *, prefix: str = "framegraph:", ended_ttl_s: float = 3600.0):
        """Creates the store; ``open()`` connects.

        Args:
            url: A redis-py URL (``redis://127.0.0.1:6379/0``).
            prefix: Put before every key, so several services can share a Redis.
            ended_ttl_s: How long an ENDED session stays readable before Redis drops it.
        """
        self.url = url
        self.prefix = prefix
        self.ended_ttl_s = ended_ttl_s
        self._redis: aioredis.Redis | None = None

    def _key(self, session_id: str) -> str:
        return f"{self.prefix}session:{session_id}"

    def _user_key(self, user: str) -> str:
        return f"{self.prefix}user:{user}"

    def _hour_key(self, hour: int) -> str:
        return f"{self.prefix}history:{hour}"

    def describe(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"

    async def open(self) -> None:
        # One quick retry, then the call fails: the server answers 503 and queues the writes
        # itself rather than holding a request (or a worker's turn) for redis-py's long default retries.
        self._redis = aioredis.from_url(
            self.url, decode_responses=True, socket_timeout=CALL_TIMEOUT_S, socket_connect_timeout=CALL_TIMEOUT_S,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
        )
        self._append = self._redis.register_script(_APPEND)
        self._set_state = self._redis.register_script(_SET_STATE)
        self._delete = self._redis.register_script(_DELETE)
        self._prune = self._redis.register_script(_PRUNE_ENDED)
        self._record_error = self._redis.register_script(_RECORD_ERROR)
        self._set_settings = self._redis.register_script(_SET_SETTINGS)
        self._write_memory = self._redis.register_script(_WRITE_MEMORY)
        self._add_usage = self._redis.register_script(_ADD_USAGE)
        await self._redis.ping()

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (aioredis.RedisError, OSError, AttributeError):
            return False

    async def create(self, *, agent, owner, variables=None, messages=None, user=None):
        session, token = new_session(agent=agent, owner=owner, variables=variables, messages=messages, user=user)
        created = session.created_at
        key, order = self._key(session.id), order_key(created, session.id)
        async with self._redis.pipeline(transaction=True) as tx:
            tx.hset(
                key,
                mapping={
                    "token_hash": hash_token(token),
                    "agent": agent,
                    "variables": json.dumps(session.variables),
                    "state": session.state.value,
                    "owner": owner,
                    "created_at": repr(created),
                    "updated_at": repr(created),
                    "turns": 0,
                    "latencies": "{}",
                    "settings": "{}",
                    "order": order,
                    **({"user": user} if user is not None else {}),
                },
            )
            if user is not None:
                tx.hsetnx(self._user_key(user), "created_at", repr(created))
                tx.hset(self._user_key(user), "last_seen_at", repr(created))
                tx.hincrby(self._user_key(user), "sessions", 1)
                tx.zadd(f"{self._user_key(user)}:sessions", {order: 0})
            if session.messages:
                tx.rpush(f"{key}:messages", *[json.dumps(m) for m in session.messages])
            hour = hour_of(created)
            tx.hincrby(self._hour_key(hour), SESSIONS, 1)
            tx.expireat(self._hour_key(hour), expires_at(hour))
            tx.zadd(f"{self.prefix}all", {order: 0})
            tx.zadd(f"{self.prefix}state:{session.state.value}", {order: 0})
            tx.sadd(f"{self.prefix}owner:{owner}", session.id)
            await tx.execute()
        return session, token

    @staticmethod
    def _parse(session_id: str, fields: dict, errors: list[str]) -> SessionSummary:
        return SessionSummary(
            id=session_id,
            agent=fields["agent"],
            user=fields.get("user"),
            variables=strict_loads(fields["variables"]),
            state=SessionState(fields["state"]),
            owner=fields["owner"],
            created_at=float(fields["created_at"]),
            updated_at=float(fields["updated_at"]),
            disconnected_at=float(fields["disconnected_at"]) if "disconnected_at" in fields else None,
            turns=int(fields["turns"]),
            latencies=strict_loads(fields["latencies"]),
            errors=[SessionError(**strict_loads(e)) for e in errors],
            settings=strict_loads(fields["settings"]),
            usage=strict_loads(fields.get("usage") or "{}"),
        )

    @classmethod
    def _readable(cls, session_id: str, fields: dict, errors: list[str]) -> SessionSummary | None:
        """The parsed summary, or None (logged) when the record cannot be read: one bad record fails no listing."""
        try:
            return cls._parse(session_id, fields, errors)
        except Exception as e:  # any damage at all: a missing field, bad JSON, a lone surrogate
            skip_unreadable(session_id, e)
            return None

    async def _summaries(self, ids: list[str]) -> list[SessionSummary | None]:
        """The summaries of ``ids``, read in one MULTI (None where a session is gone or unreadable)."""
        async with self._redis.pipeline(transaction=True) as tx:
            for sid in ids:
                tx.hgetall(self._key(sid))
                tx.lrange(f"{self._key(sid)}:errors", 0, -1)
            replies = await tx.execute()
        return [
            self._readable(sid, fields, errors) if fields else None
            for sid, fields, errors in zip(ids, replies[::2], replies[1::2], strict=True)
        ]

    async def _summary(self, session_id: str) -> SessionSummary:
        (summary,) = await self._summaries([session_id])
        if summary is None:
            raise SessionNotFound(session_id)
        return summary

    async def get(self, session_id):
        key = self._key(session_id)
        async with self._redis.pipeline(transaction=True) as tx:
            tx.hgetall(key)
            tx.lrange(f"{key}:errors", 0, -1)
            tx.lrange(f"{key}:messages", 0, -1)
            fields, errors, bodies = await tx.execute()
        if not fields:
            raise SessionNotFound(session_id)
        summary = self._readable(session_id, fields, errors)
        if summary is None:
            raise BadRecord(session_id)
        return Session(**summary.model_dump(), messages=readable_messages(session_id, bodies))

    async def _prune_ended(self) -> None:
        await self._prune(args=[self.prefix, repr(now() - self.ended_ttl_s)])

    async def list(self, *, limit=50, cursor=None, state=None):
        size = page_size(limit)
        start = "(" + decode_cursor(cursor) if cursor else "-"
        await self._prune_ended()
        index = f"{self.prefix}state:{SessionState(state).value}" if state is not None else f"{self.prefix}all"
        orders = await self._redis.zrangebylex(index, start, "+", start=0, num=size + 1)
        summaries = await self._summaries([_id_of(o) for o in orders[:size]])
        items = [s for s in summaries if s is not None]
        return Page(items=items, next_cursor=encode_cursor(orders[size - 1]) if len(orders) > size else None)

    async def count_by_state(self):
        await self._prune_ended()
        async with self._redis.pipeline(transaction=True) as tx:
            for s in SessionState:
                tx.zcard(f"{self.prefix}state:{s.value}")
            counts = await tx.execute()
        return dict(zip(SessionState, counts, strict=True))

    async def _move(self, session_id: str, state: SessionState, owner: str | None, only_from: str = "") -> int:
        return await self._set_state(
            keys=[self._key(session_id)],
            args=[self.prefix, session_id, state.value, repr(now()), owner or "", self.ended_ttl_s, only_from],
        )

    async def set_state(self, session_id, state, *, owner=None):
        if await self._move(session_id, SessionState(state), owner) == 0:
            raise SessionNotFound(session_id)
        return await self._summary(session_id)

    async def append(self, session_id, messages, *, turn=True, latencies=None, write_id=None):
        key, t = self._key(session_id), now()
        done = await self._append(
            keys=[key, f"{key}:messages", self._hour_key(hour_of(t))],
            args=[int(turn), repr(t), json.dumps(latencies or {}), MAX_MESSAGES, write_id or "",
                  latency_counter(latencies) or "", expires_at(hour_of(t)), *[json.dumps(m) for m in sendable(messages)]],
        )
        if not done:
            raise SessionNotFound(session_id)
        return await self._summary(session_id)

    async def set_settings(self, session_id, settings):
        if not await self._set_settings(keys=[self._key(session_id)], args=[json.dumps(sendable(settings)), repr(now())]):
            raise SessionNotFound(session_id)

    async def record_error(self, session_id, message):
        key = self._key(session_id)
        error = SessionError(at=now(), message=sendable(message)).model_dump_json()
        done = await self._record_error(keys=[key, f"{key}:errors"], args=[error, MAX_ERRORS, repr(now())])
        if not done:
            raise SessionNotFound(session_id)

    async def verify_token(self, session_id, token):
        digest = await self._redis.hget(self._key(session_id), "token_hash")
        return token_matches(token, digest)

    async def expire_disconnected(self, grace_s=DEFAULT_GRACE_S):
        due = await self._redis.zrangebyscore(f"{self.prefix}disconnected", "-inf", repr(now() - grace_s))
        ended = []
        for sid in due:
            if await self._move(sid, SessionState.ENDED, None, only_from=SessionState.DISCONNECTED.value) == 1:
                ended.append(sid)
            else:
                await self._redis.zrem(f"{self.prefix}disconnected", sid)
        return ended

    async def recover(self, owner=None):
        if owner is None:
            orders = []
            for s in LIVE_STATES:
                orders += await self._redis.zrange(f"{self.prefix}state:{s.value}", 0, -1)
            candidates = [_id_of(o) for o in orders]
        else:
            candidates = sorted(await self._redis.smembers(f"{self.prefix}owner:{owner}"))
        live = ",".join(s.value for s in LIVE_STATES)
        return [sid for sid in candidates if await self._move(sid, SessionState.DISCONNECTED, None, live) == 1]

    async def delete(self, session_id):
        return bool(await self._delete(keys=[self._key(session_id)], args=[self.prefix, session_id]))

    async def get_user(self, user):
        fields = await self._redis.hgetall(self._user_key(user))
        if not fields:
            raise UserNotFound(user)
        return User(id=user, created_at=float(fields["created_at"]), last_seen_at=float(fields["last_seen_at"]),
                    sessions=int(fields["sessions"]))

    async def user_sessions(self, user, *, limit=50, cursor=None):
        size = page_size(limit)
        start = "(" + decode_cursor(cursor) if cursor else "-"
        index = f"{self._user_key(user)}:sessions"
        orders = await self._redis.zrangebylex(index, start, "+", start=0, num=size + 1)
        summaries = await self._summaries([_id_of(o) for o in orders[:size]])
        lapsed = [o for o, s in zip(orders, summaries, strict=False) if s is None]
        if lapsed:  # ENDED sessions whose keys Redis dropped (their TTL): the index forgets them too
            await self._redis.zrem(index, *lapsed)
        items = [s for s in summaries if s is not None]
        return Page(items=items, next_cursor=encode_cursor(orders[size - 1]) if len(orders) > size else None)

    async def read_memory(self, user):
        fields = await self._redis.hgetall(f"{self._user_key(user)}:memory")
        if not fields:
            return MemoryVersion(version=0)
        return MemoryVersion(version=int(fields["version"]), fields=strict_loads(fields["fields"]),
                             updated_at=float(fields["updated_at"]), by=fields.get("by") or None)

    async def write_memory(self, user, expected_version, fields, *, by=None):
        key, t, body = f"{self._user_key(user)}:memory", now(), json.dumps(sendable(fields))
        version = await self._write_memory(keys=[key, f"{key}:history"],
                                           args=[expected_version, body, repr(t), by or "", MEMORY_HISTORY])
        if not version:
            return None
        return MemoryVersion(version=int(version), fields=strict_loads(body), updated_at=t, by=by)

    async def memory_history(self, user, limit=MEMORY_HISTORY):
        entries = await self._redis.lrange(f"{self._user_key(user)}:memory:history", 0,
                                           max(1, min(limit, MEMORY_HISTORY)) - 1)
        return [_history_entry(e) for e in entries]

    async def add_usage(self, session_id, user, counts):
        today = usage_day(now())
        day, days = (f"{self._user_key(user)}:usage:{today}", f"{self._user_key(user)}:usage-days") if user else ("", "")
        if not await self._add_usage(keys=[self._key(session_id), day, days],
                                     args=[repr(now()), json.dumps(counts), today]):
            raise SessionNotFound(session_id)

    async def user_usage(self, user, since=0.0):
        days = sorted(d for d in await self._redis.smembers(f"{self._user_key(user)}:usage-days")
                      if d >= usage_day(since))
        async with self._redis.pipeline(transaction=True) as tx:
            for day in days:
                tx.hgetall(f"{self._user_key(user)}:usage:{day}")
            replies = await tx.execute()
        total: dict[str, float] = {}
        for counts in replies:
            for key, value in counts.items():
                total[key] = total.get(key, 0.0) + float(value)
        return total

    async def history(self, hours=24):
        starts = hours_back(hours, now())
        async with self._redis.pipeline(transaction=True) as tx:
            for hour in starts:
                tx.hgetall(self._hour_key(hour))
            replies = await tx.execute()
        return [hour_row(hour, counts) for hour, counts in zip(starts, replies, strict=True)]

    async def heartbeat(self, server_id: str, info: dict[str, str] | None = None, ttl_s: float = 15.0) -> None:
        """Says that ``server_id`` is alive (call every few seconds); ``info`` is what others may read (address, capacity)."""
        key = f"{self.prefix}server:{server_id}"
        async with self._redis.pipeline(transaction=True) as tx:
            tx.delete(key)
            tx.hset(key, mapping={"id": server_id, **(info or {})})
            tx.pexpire(key, int(ttl_s * 1000))
            tx.zadd(f"{self.prefix}servers", {server_id: now()})
            await tx.execute()

    async def live_servers(self, max_age_s: float = 15.0) -> dict[str, dict[str, str]]:
        """The servers that sent a heartbeat within ``max_age_s``, with their info."""
        ids = await self._redis.zrangebyscore(f"{self.prefix}servers", repr(now() - max_age_s), "+inf")
        async with self._redis.pipeline(transaction=True) as tx:
            for sid in ids:
                tx.hgetall(f"{self.prefix}server:{sid}")
            infos = await tx.execute()
        return {sid: info for sid, info in zip(ids, infos, strict=True) if info}

    async def stale_servers(self, max_age_s: float = 15.0) -> list[str]:
        """Servers whose last heartbeat is older than ``max_age_s``: their sessions are for others to recover."""
        return await self._redis.zrangebyscore(f"{self.prefix}servers", "-inf", f"({now() - max_age_s!r}")

    async def forget_server(self, server_id: str) -> None:
        """Drops a server from the registry (after its sessions were recovered)."""
        await self._redis.zrem(f"{self.prefix}servers", server_id)
        await self._redis.delete(f"{self.prefix}server:{server_id}")

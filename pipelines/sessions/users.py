"""Users: who is behind a session, and the memory that outlives it.

A user is an id the client (or the API key it holds) names at ``POST
/sessions``; the store keeps a small record beside the sessions (first and
last seen, how many sessions) and, per user, one versioned memory record.

Memory is a dict of named fields (lists of text, counters, text). Writers never
send a whole record: they send field-level operations (``add``, ``remove``,
``incr``, ``set``), and ``update_memory`` applies them to the latest version
and writes it back with compare-and-set, retrying on a lost race. So two
sessions that update one user at once both land: the loser of a race reads the
winner's version and applies its own operations again on top of it. The
store keeps the last ``MEMORY_HISTORY`` versions (docs/users.md).
"""

import asyncio
import random
import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")  # checked with fullmatch (no trailing newline)
"""What a user id may be: 1-64 letters, digits and ``. _ @ -``, starting with a letter or digit."""

USER_ID_RULE = "1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"

MEMORY_HISTORY = 50
"""How many versions of a user's memory the store keeps (the newest)."""

MAX_LIST_ITEMS = 1000
"""The most items one memory list keeps (the newest); older ones drop out, oldest first."""

MAX_TEXT_CHARS = 2000
"""The longest text one memory field or list item holds."""

CAS_ATTEMPTS = 50
"""How often ``update_memory`` retries a lost compare-and-set before giving up (``MemoryContention``)."""


def usage_day(at: float) -> str:
    """The UTC day (``YYYY-MM-DD``) a usage count at Unix time ``at`` belongs to."""
    return datetime.fromtimestamp(max(at, 0.0), tz=UTC).strftime("%Y-%m-%d")


def user_id_problem(user: Any) -> str | None:
    """Why ``user`` is not a valid user id; None when it is."""
    if not isinstance(user, str) or not USER_ID.fullmatch(user):
        return f"user: must be {USER_ID_RULE}"
    return None


class User(BaseModel):
    """A user as the store knows them: when first and last seen, how many sessions they opened."""

    id: str
    created_at: float
    last_seen_at: float
    sessions: int = Field(0, description="Sessions opened as this user")


class MemoryVersion(BaseModel):
    """One version of a user's memory: the fields as they were after write ``version``."""

    version: int = Field(description="0 before the first write; each write adds one")
    updated_at: float | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    by: str | None = Field(None, description="The session (or API caller) that wrote this version")


class Memory(MemoryVersion):
    """A user's memory now, with its recent versions when asked (``?history=1``), newest first."""

    history: list[MemoryVersion] | None = None


class MemoryOp(BaseModel):
    """One field-level change: ``add``/``remove`` an item of a list, ``incr`` a counter, ``set`` text."""

    op: Literal["add", "remove", "incr", "set"]
    field: str = Field(max_length=100)
    value: Any = None


class MemoryContention(Exception):
    """Compare-and-set lost ``CAS_ATTEMPTS`` races in a row: nothing was written."""


def apply_ops(fields: dict[str, Any], ops: list[MemoryOp]) -> dict[str, Any]:
    """``fields`` with ``ops`` applied in order (a new dict; ``fields`` is left as it is).

    ``add`` appends an item to a list unless it is there already (a list is a
    set that keeps its order), ``remove`` drops it (or an item's count), ``incr`` adds an integer
    (default 1) to a counter, or one to an item's count when the value is text
    (counts by item), ``set`` replaces a text. A field the record lacks
    starts empty (``[]``, ``0``, ``""``).
    """
    out = dict(fields)
    for op in ops:
        if op.op == "remove" and isinstance(out.get(op.field), dict):  # counts by item: forget the item
            out[op.field] = {k: v for k, v in out[op.field].items() if k != op.value}
        elif op.op in ("add", "remove"):
            items = [i for i in out.get(op.field) or [] if i != op.value] if isinstance(out.get(op.field), list) else []
            if op.op == "add":
                items.append(str(op.value)[:MAX_TEXT_CHARS])
            out[op.field] = items[-MAX_LIST_ITEMS:]
        elif op.op == "incr" and isinstance(op.value, str):  # counts by item: one more for this item
            counts = dict(out.get(op.field) or {}) if isinstance(out.get(op.field), dict) else {}
            item = op.value[:MAX_TEXT_CHARS]
            counts[item] = counts.get(item, 0) + 1
            out[op.field] = counts
        elif op.op == "incr":
            current = out.get(op.field)
            out[op.field] = (current if isinstance(current, int) else 0) + int(op.value if op.value is not None else 1)
        else:
            out[op.field] = str(op.value if op.value is not None else "")[:MAX_TEXT_CHARS]
    return out


async def update_memory(store, user: str, ops: list[MemoryOp], *, by: str | None = None) -> MemoryVersion:
    """Applies ``ops`` to ``user``'s latest memory and writes it with compare-and-set, retrying lost races.

    Returns:
        The version written.

    Raises:
        MemoryContention: Every attempt lost its race (``CAS_ATTEMPTS`` of them).
        StoreUnavailable: The store is away; nothing was written.
    """
    for attempt in range(CAS_ATTEMPTS):
        current = await store.read_memory(user)
        fields = apply_ops(current.fields, ops)
        written = await store.write_memory(user, current.version, fields, by=by)
        if written is not None:
            return written
        await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # spread the retries of racing writers
    raise MemoryContention(f"user {user}: memory changed under {CAS_ATTEMPTS} attempts in a row; nothing written")

"""A session's handle on its user's memory: read at the start, shown to the LLM, updated while it runs.

The server opens one ``SessionMemory`` per connection of a session that has a
user and whose agent declares ``memory:``; the builder hands it to factories
(``BuildContext.memory``): the ``remember``/``forget`` tools and the scripted
LLM's ``remember`` rules write through it. Every write is field-level and goes
through ``update_memory`` (compare-and-set with retry), so concurrent sessions
of one user never lose each other's writes.
"""

from typing import Any

from loguru import logger

from pipelines.sessions.store import StoreUnavailable
from pipelines.sessions.users import MemoryOp, MemoryVersion, update_memory
from pipelines.spec import MemorySettings

#: What an empty field reads as in the template.
NOTHING_YET = "nothing yet"


def field_text(kind: str, value: Any) -> str:
    """How one field reads in a template: lists comma-separated, counts as ``item (n)``, newest last."""
    if kind == "list":
        return ", ".join(map(str, value or [])) or NOTHING_YET
    if kind == "counts":
        return ", ".join(f"{item} ({n})" for item, n in (value or {}).items()) or NOTHING_YET
    if kind == "counter":
        return str(value or 0)
    return str(value or "") or NOTHING_YET


class SessionMemory:
    """One session's view of its user's memory, and the typed writes it may make."""

    def __init__(self, settings: MemorySettings, store, user: str, session_id: str):
        self.settings = settings
        self.store = store
        self.user = user
        self.session_id = session_id
        #: The fields as read at the start (what the template showed), updated by this session's own writes.
        self.fields: dict[str, Any] = {}

    async def load(self) -> "SessionMemory":
        """Reads the user's memory now (the template and the scripted LLM's variables use it).

        With the store away the session starts anyway, its memory read as empty
        (logged): later writes still land on the latest version (compare-and-set reads it).
        """
        try:
            self.fields = (await self.store.read_memory(self.user)).fields
        except StoreUnavailable as e:
            logger.warning(f"session {self.session_id}: user {self.user}'s memory could not be read: {e}")
        return self

    def variables(self) -> dict[str, str]:
        """Each field as text, by name (what ``template`` placeholders take)."""
        return {name: field_text(f.type, self.fields.get(name)) for name, f in self.settings.fields.items()}

    def render(self) -> str:
        """The ``template`` filled with the fields."""
        return self.settings.template.format_map(self.variables())

    def enter(self, llm_context: Any) -> None:
        """Puts the rendered memory into ``llm_context``: appended to the system prompt, or as its own message."""
        if llm_context is None or not self.settings.template:
            return
        text = self.render()
        messages = list(llm_context.get_messages())
        system = [i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "system"]
        if self.settings.into == "system_prompt" and system:
            first = messages[system[0]]
            messages[system[0]] = {**first, "content": f"{first.get('content', '')}\n\n{text}"}
        else:
            messages.insert(system[-1] + 1 if system else 0, {"role": "system", "content": text})
        llm_context.set_messages(messages)

    def ops(self, verb: str, field: str, value: Any) -> list[MemoryOp]:
        """The operations ``remember``/``forget`` of ``value`` mean for ``field``, by its type.

        Raises:
            ValueError: No such field, or a value its type cannot take.
        """
        declared = self.settings.fields.get(field)
        if declared is None:
            raise ValueError(f"no memory field '{field}' (fields: {', '.join(self.settings.fields)})")
        kind, forget = declared.type, verb == "forget"
        if kind == "list":
            return [MemoryOp(op="remove" if forget else "add", field=field, value=str(value))]
        if kind == "counts":
            return [MemoryOp(op="remove" if forget else "incr", field=field, value=str(value))]
        if kind == "counter":
            try:
                amount = int(value) if value not in (None, "") else 1
            except (TypeError, ValueError):
                raise ValueError(f"memory field '{field}' counts: give a whole number") from None
            return [MemoryOp(op="incr", field=field, value=-amount if forget else amount)]
        return [MemoryOp(op="set", field=field, value="" if forget else str(value))]

    async def apply(self, ops: list[MemoryOp]) -> MemoryVersion:
        """Writes ``ops`` (compare-and-set with retry) and keeps the result as this session's view."""
        written = await update_memory(self.store, self.user, ops, by=self.session_id)
        self.fields = written.fields
        return written

    async def tool(self, verb: str, arguments: dict) -> dict:
        """The ``remember``/``forget`` tool: ``{field, value}`` -> ``{"version": n}`` or ``{"error": ...}``."""
        try:
            ops = self.ops(verb, str(arguments.get("field", "")), arguments.get("value"))
            written = await self.apply(ops)
        except ValueError as e:
            return {"error": str(e)}
        except Exception as e:  # the store away, contention: the LLM hears it, the session goes on
            logger.warning(f"session {self.session_id}: memory {verb}: {e.__class__.__name__}: {e}")
            return {"error": "memory could not be written now"}
        return {"version": written.version}


async def open_memory(settings: MemorySettings | None, store, user: str | None, session_id: str) -> SessionMemory | None:
    """The loaded memory of ``user`` for a session, or None without a ``memory:`` block or a user."""
    if settings is None or user is None:
        return None
    return await SessionMemory(settings, store, user, session_id).load()

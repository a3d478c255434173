"""Placement: which server (several on one Redis) or worker process (``serve --workers N``) a new session goes to,
and which server a session's requests go to.

One rule places a new session, among servers and among worker processes
alike (issue 24): a place whose load level is below SHEDDING and that has
room comes first; a SHEDDING one only when none of those has room; a
SESSION_REJECT one never. Among equals the least busy wins: for servers the
one with the most free slots (the server asked keeps the session rather
than send it to an equal), for workers the fewest sessions, then the least
CPU. The levels travel with the load reports: a server's heartbeat in the
shared store (``level``, ``slots``, ``live``: ``heartbeat_info``), a
worker's report to its front (shared memory: ``pipelines.server.workers``).

A session's requests go to its owner: ``owner_elsewhere`` names the live
server that runs it, or takes the session over when its owner stopped
heartbeating or refuses connections (its sessions become DISCONNECTED,
resumable here with their context from the store).
"""

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from loguru import logger

from pipelines.server.load_level import Level
from pipelines.sessions.model import SessionState
from pipelines.sessions.store import SessionNotFound

if TYPE_CHECKING:  # the manager publishes heartbeat_info: it imports this module
    from pipelines.server.manager import SessionManager


@dataclass(frozen=True)
class Place:
    """A candidate for a new session: where it is (a URL, a worker), its load level, its free slots, how busy it is."""

    where: Any
    level: Level
    room: int
    #: Compared among places of one tier: the lowest goes first.
    busy: tuple = ()


def choose(places: Iterable[Place]) -> Place | None:
    """The place a new session goes to by the rule above; None when none below SESSION_REJECT has room."""
    open_places = [p for p in places if p.room > 0 and p.level < Level.SESSION_REJECT]
    preferred = [p for p in open_places if p.level < Level.SHEDDING] or open_places
    return min(preferred, key=lambda p: p.busy, default=None)


def placement_level(load: Any) -> Level:
    """The level a server (or worker) is placed by: its ``LoadMonitor``'s, except that one told not to shed
    (``backpressure.shed_to_others: false``) keeps its new sessions at SHEDDING as at the level below."""
    if load is None:
        return Level.NORMAL
    if load.level == Level.SHEDDING and not load.settings.shed_to_others:
        return Level.DEGRADED
    return load.level


def heartbeat_info(manager: "SessionManager") -> dict[str, str]:
    """What a server publishes with its heartbeat for the others' placement: URL, live sessions, slots, level.

    ``capacity`` (room for the others' sessions: none at SHEDDING or above) is
    kept for operators reading the registry; placement reads ``slots`` and ``level``.
    """
    level = placement_level(manager.load)
    live, slots = manager.slots.total(), manager.options.max_sessions
    return {"live": str(live), "url": manager.url or "", "slots": str(slots), "level": level.name,
            "capacity": str(live if level >= Level.SHEDDING else slots)}


async def place_elsewhere(manager: "SessionManager", agent_name: str | None) -> str | None:
    """The URL of the server a new session of ``agent_name`` goes to when that is another one, else None.

    None also when no server has room: this one then admits or refuses the
    session itself (503). Servers' room is known from heartbeats, which lag.

    Raises:
        Refused: No such agent here.
    """
    agent = manager.agent_named(agent_name)
    here = Place(manager.url, placement_level(manager.load), 0 if manager.full(agent) else 1, busy=(0,))
    if here.room and here.level < Level.SHEDDING:
        return None
    places = [here]
    for info in (await manager.servers()).values():
        url = info.get("url")
        if url and url != manager.url:
            room = _int(info.get("slots")) - _int(info.get("live"))
            places.append(Place(url, _level(info.get("level")), room, busy=(1, -room)))
    best = choose(places)
    return best.where if best is not None and best is not here else None


async def owner_elsewhere(manager: "SessionManager", session_id: str) -> str | None:
    """The URL of the live server that runs ``session_id``, or None when this server is to serve it.

    A session whose owner stopped heartbeating is taken over: the dead
    server's sessions become DISCONNECTED, resumable here with their context.
    So is one whose owner still looks live but refuses connections (its
    process died and nothing listens at its address): its clients need
    not wait three heartbeats to resume.
    """
    if session_id in manager.live:
        return None
    servers = await manager.servers()
    if not servers:
        return None
    try:
        session = await manager.store.get(session_id)
    except SessionNotFound:
        return None
    if session.owner == manager.server_id or session.state == SessionState.ENDED:
        return None
    owner = servers.get(session.owner)
    if owner is not None:
        url = owner.get("url")
        if not url or url == manager.url:
            return None
        if not await refuses_connections(url):
            return url
        why = "refuses connections at " + url
    else:
        why = "stopped heartbeating"
    taken = await manager.store.recover(owner=session.owner)
    logger.warning(f"server {session.owner} {why}: its {len(taken)} live session(s) are "
                   f"DISCONNECTED; {manager.server_id} takes over session {session_id}")
    return None


async def refuses_connections(url: str, timeout_s: float = 1.0) -> bool:
    """Whether nothing listens at ``url``'s host and port (the connection was refused).

    Only a refusal counts: a connection that times out (a busy server, a
    machine that went away) is left to the heartbeat's verdict, so a live
    server is never taken for dead.
    """
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, port), timeout_s)
    except ConnectionRefusedError:
        return True
    except (OSError, TimeoutError):
        return False
    writer.close()
    return False


def _level(name: str | None) -> Level:
    """A level as a heartbeat names it; a server that names none (or an unknown one) takes no new sessions."""
    return Level.__members__.get(name or "", Level.SESSION_REJECT)


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0

"""The session manager: admission and the life of each session on this server.

Every way into a session goes through here (the REST API, pipecat's runner
routes, the page): the routes only parse and authorize. Where a session
goes among servers and worker processes is ``pipelines.server.placement``;
what a (re)connecting session gets back from the store is
``pipelines.server.restore``.

A session's life on this server (its ``LiveSession.state``, a ``SessionState``
as the store keeps it):

- ``create``: admission (atomic: the check and the reservation happen with no
  ``await`` between them, so five concurrent offers against two slots admit
  exactly two), the durable record (STARTING), and a connect deadline: a
  session whose client never connects ends after ``connect_timeout_s``.
- ``connect``: builds the agent around the accepted connection (the peer
  goes to the factory as ``BuildContext.peer``), restores the conversation
  (``restore``) and runs one worker until the connection ends. Every
  completed turn is appended to the store; connecting sets ACTIVE.
- the connection ends: DISCONNECTED (resumable for ``grace_s``) unless the
  session was deleted or no client ever connected (ENDED); a resume is
  ``connect`` again with the token.

Several servers on one Redis (docs/scale.md): each publishes, with its
heartbeat, what placement reads of it (``placement.heartbeat_info``).
"""

import asyncio
import time
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from loguru import logger
from pipecat.frames.frames import OutputTransportMessageUrgentFrame

from pipelines.builder import BuiltAgent
from pipelines.client_protocol.messages import message as client_message
from pipelines.persona import render_persona
from pipelines.runner import run_worker
from pipelines.server.accounting import Accounting
from pipelines.server.admission import Full as Full  # raised by create and resume (routes catch it here)
from pipelines.server.admission import Slots
from pipelines.server.latency import TurnLatency
from pipelines.server.limits import GuardedSocket, JunkMeter
from pipelines.server.options import ServerOptions
from pipelines.server.placement import heartbeat_info
from pipelines.server.restore import conversation, reapply, restore_context, restored_settings, tell_restored
from pipelines.server.session_graph import session_graph, settings_model
from pipelines.server.stored_settings import pending_changes, with_applied, with_failed, with_pending
from pipelines.sessions.housekeeping import Housekeeper
from pipelines.sessions.memory import open_memory
from pipelines.sessions.metrics import SessionMetrics
from pipelines.sessions.model import (
    HEARD_LATENCY,
    INTERRUPTION_LATENCY,
    REPLY_LATENCY,
    Session,
    SessionState,
    new_session_id,
)
from pipelines.sessions.settings_gate import (
    AppliedChange,
    FailedChange,
    SettingsChange,
    new_change_id,
)
from pipelines.sessions.settings_model import SettingsModel
from pipelines.sessions.store import SessionNotFound, SessionStore
from pipelines.sessions.write_behind import WriteBehind
from pipelines.validate import Agent, Component

KEPT_FINISHED = 100
"""Finished live entries kept for ``sessions`` (people and tests look at their events)."""


class Refused(Exception):
    """The request cannot be served for this session (its state, its agent); the message says why."""


@dataclass(frozen=True)
class SettingsOutcome:
    """What a settings change's caller is told: applied now or held, its id, and every change still waiting."""

    applied: bool
    change_id: str
    pending: list[str]


@dataclass
class LiveSession:
    """What this server holds of a session while it may run here: its slot, worker and recent events."""

    id: str
    agent: Agent
    kept_events: int
    #: STARTING until a client connects, ACTIVE while one is, then DISCONNECTED or ENDED (as the store has it).
    state: SessionState = SessionState.STARTING
    events: deque = field(default_factory=deque)
    built: BuiltAgent | None = None
    worker: Any = None
    peer_id: str = ""
    deleted: bool = False
    #: Whether a pipecat runner client (``POST /start``) may connect without the token, once.
    open_once: bool = False
    last_turn_at: float = field(default_factory=time.monotonic)
    junk: JunkMeter | None = None
    close_peer: Any = None
    #: Created here (not resumed): ends, rather than waits for a resume, when no client ever connects.
    fresh: bool = False
    #: The accepted connection it runs on (a WebSocket, a WebRTC peer), while it runs.
    peer: Any = None
    #: Whether it holds one of the server's slots (``Slots``), given back once when it leaves ``live``.
    holds_slot: bool = False
    connected_once: bool = False
    #: Latencies measured since the last stored turn, by name.
    latencies: dict = field(default_factory=dict)
    #: The session's stored settings object as this server keeps it (docs: pipelines.server.stored_settings).
    settings: dict = field(default_factory=dict)

    def __post_init__(self):
        self.events = deque(maxlen=self.kept_events)

    @property
    def transport(self) -> str:
        return self.agent.transport.type.name

    def event(self, name: str, detail: str = "") -> None:
        """Records (the newest ``kept_events``) and logs an event."""
        self.events.append({"time": time.time(), "event": name, "detail": detail[:500]})
        if name != "refused":  # refusals are counted and summarized by the JunkMeter
            log = logger.warning if name in ("dropped", "failed") else logger.info
            log(f"session {self.id} ({self.transport}): {name}" + (f": {detail}" if detail else ""))


class SessionManager:
    """Runs this server's sessions of one or several agents on a durable store."""

    def __init__(self, agents: dict[str, Agent], store: SessionStore, options: ServerOptions, server_id: str):
        self.agents = agents
        self.store = store
        self.options = options
        self.server_id = server_id
        self.metrics = SessionMetrics()
        #: A session's writes while it runs (turns, states, settings, errors): queued through a store outage.
        self.writes = WriteBehind(self.metrics)
        self.live: dict[str, LiveSession] = {}
        #: The server's live-session count (shared by its worker processes when it has several).
        self.slots: Slots = options.slots or Slots.local(list(agents))
        #: Set once the server stops its sessions: nothing is admitted any more.
        self.stopping = False
        self._finished: deque[LiveSession] = deque(maxlen=KEPT_FINISHED)
        self._tasks: set[asyncio.Task] = set()
        #: What runtime settings each agent's services take, by agent name (learnt from a build).
        self._settings_models: dict[str, SettingsModel] = {}
        #: The URL other servers send this server's clients to (set once bound when not given).
        self.url = options.advertise_url
        #: The measured load level (``pipelines.server.load_level.LoadMonitor``), set by ``app.build_app``.
        self.load: Any = None
        self.housekeeper = Housekeeper(
            store, server_id=server_id, metrics=self.metrics, every_s=options.housekeeping_s,
            grace_s=options.grace_s, server_info=lambda: heartbeat_info(self),
        )

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> list[str]:
        """Opens the store, marks sessions left live by a crash DISCONNECTED, starts housekeeping."""
        await self.store.open()
        recovered = await self.store.recover(owner=self.server_id)
        if recovered:
            logger.info(f"{len(recovered)} session(s) left live by the last run are DISCONNECTED and resumable")
        self.housekeeper.start()
        self._spawn(self._idle_watch())
        return recovered

    async def stop_sessions(self) -> None:
        """Ends every worker (their sessions stay resumable) and waits until their connections are released.

        WebSocket clients are told 1012 (service restart) first, not the 1000
        of a session's deliberate end, so a reconnecting client comes back;
        from now on no session is admitted here (a client that reconnects at
        once is told to try again later, and comes back to the restarted server).
        """
        self.stopping = True
        await asyncio.gather(*(s.peer.close(1012, "the server is restarting") for s in self.live.values()
                               if isinstance(s.peer, GuardedSocket)), return_exceptions=True)
        await asyncio.gather(*(s.worker.cancel(reason="the server is shutting down") for s in self.live.values() if s.worker))
        for _ in range(100):
            if not any(s.worker for s in self.live.values()):
                break
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        """Ends every worker, stops housekeeping, closes the store."""
        await self.stop_sessions()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.housekeeper.stop()
        await self.writes.close()
        await self.store.close()

    @property
    def sessions(self) -> dict[str, LiveSession]:
        """This server's live entries and the last finished ones, by id (for people and tests)."""
        return {**{s.id: s for s in self._finished}, **self.live}

    def full(self, agent: Agent | None = None) -> str | None:
        """Why a new session of ``agent`` (the only one by default) would be refused now, or None."""
        agent = agent or next(iter(self.agents.values()))
        return self.slots.would_take(agent.spec.name, self.options.max_sessions, _participants(agent))

    # -- admission -------------------------------------------------------------

    def agent_named(self, name: str | None) -> Agent:
        """The served agent called ``name`` (the only one when None)."""
        if name is None and len(self.agents) == 1:
            return next(iter(self.agents.values()))
        if name is None:
            raise Refused(f"this server runs several agents; name one of: {', '.join(sorted(self.agents))}")
        if name not in self.agents:
            raise Refused(f"no agent named {name!r}; this server runs: {', '.join(sorted(self.agents))}")
        return self.agents[name]

    def _admit(self, key: str, live: LiveSession) -> LiveSession:
        """Takes a slot for ``live`` (``Full`` when none is free: one count for the whole server, atomic
        across its worker processes) and enters it in ``live`` under ``key``."""
        if self.stopping:
            raise Full("the server is shutting down; try again later")
        self.slots.take(live.agent.spec.name, self.options.max_sessions, _participants(live.agent))
        live.holds_slot = True
        self.live[key] = live
        return live

    def _vacate(self, key: str, live: LiveSession) -> None:
        """Takes ``live`` out of ``live`` (if it is still there under ``key``) and gives its slot back, once."""
        if self.live.get(key) is live:
            del self.live[key]
        if live.holds_slot:
            live.holds_slot = False
            self.slots.give_back(live.agent.spec.name)

    async def create(self, agent_name: str | None = None, variables: dict[str, str] | None = None,
                     *, open_once: bool = False, user: str | None = None) -> tuple[Session, str]:
        """A new STARTING session with a slot (opened as ``user`` when given); returns it and its resume token.

        Raises:
            Full: No slot. Refused: Unknown agent or bad persona variables.
        """
        agent = self.agent_named(agent_name)
        agent = with_variables(agent, variables or {})
        if self.load is not None:
            self.load.admit_new(agent)  # Busy (503 + Retry-After) at SESSION_REJECT; resumes are never refused for load
        placeholder = new_session_id()
        held = self._admit(placeholder, LiveSession(placeholder, agent, self.options.kept_events))  # before any await
        try:
            session, token = await self.store.create(agent=agent.spec.name, owner=self.server_id, variables=variables,
                                                     user=user)
        except BaseException:
            self._vacate(placeholder, held)
            raise
        del self.live[placeholder]
        live = self.live[session.id] = LiveSession(
            session.id, agent, self.options.kept_events, open_once=open_once, fresh=True, holds_slot=True
        )
        self._spawn(self._connect_deadline(live))
        return session, token

    async def resume(self, session_id: str) -> LiveSession:
        """This server's live entry for ``session_id``, taking a slot again for a DISCONNECTED one.

        Raises:
            SessionNotFound: No such session (or it ended). Full: No slot. Refused: It is connected now.
        """
        live = self.live.get(session_id)
        if live is not None and live.worker is None:
            return live
        if live is not None:  # the client is back on a new connection: it replaces the old one
            live.event("replaced", "the client resumed on a new connection")
            await live.worker.cancel(reason="replaced by a resumed connection")
            for _ in range(200):
                if self.live.get(session_id) is not live:
                    break
                await asyncio.sleep(0.025)
            else:
                raise Refused("the session's previous connection is still closing; try again")
        session = await self.store.get(session_id)
        if session.state == SessionState.ENDED or session.agent not in self.agents:
            raise SessionNotFound(session_id)
        if session_id in self.live:  # another request took it during the await
            raise Refused("the session is being resumed by another connection")
        agent = with_variables(self.agents[session.agent], session.variables)
        live = self._admit(session_id, LiveSession(session_id, agent, self.options.kept_events))
        self._spawn(self._connect_deadline(live))
        return live

    async def authorize(self, session_id: str, token: str | None) -> bool:
        """Whether ``token`` is the session's resume token (same answer and time for an unknown id)."""
        return bool(token) and await self.store.verify_token(session_id, token)

    # -- several servers -------------------------------------------------------

    def advertise(self, url: str) -> None:
        """This server's URL as bound; what other servers redirect to unless ``advertise_url`` was given."""
        self.url = self.url or url

    async def servers(self) -> dict[str, dict[str, str]]:
        """The live servers sharing this store (itself included), with their heartbeats' info; {} on a store of one server."""
        live_servers = getattr(self.store, "live_servers", None)
        if live_servers is None:
            return {}
        return await live_servers(max_age_s=3 * self.options.housekeeping_s)

    # -- running ---------------------------------------------------------------

    async def connect(self, live: LiveSession, peer: Any, close_peer: Any = None) -> None:
        """Runs ``live``'s agent around ``peer`` until the connection ends (awaits the worker)."""
        live.open_once = False
        live.close_peer = close_peer
        live.peer_id = getattr(peer, "pc_id", "") or ""
        live.junk = JunkMeter(f"session {live.id}", per_s=self.options.junk_per_s, burst=self.options.junk_burst)
        live.peer = peer
        resumed = live.connected_once or not live.fresh
        try:
            session = await self.store.get(live.id)
            agent = self.load.shaped(live.agent) if self.load else live.agent  # DEGRADED: the cheaper params
            memory = await open_memory(live.agent.spec.memory, self.store, session.user, session.id)  # docs/users.md
            built = live.built = session_graph(agent, peer, memory)
            if built.settings_gate is not None:
                self._settings_models[live.agent.spec.name] = built.settings_gate.model
            session = session.model_copy(update={"settings": await restored_settings(self, live, session, built)})
            persisted = restore_context(built, session)
            if memory is not None:
                memory.enter(built.llm_context)
            self._watch(live, built, session, persisted)
            accounting = Accounting(self, live, built, session.user, session.usage)  # usage, budget: docs/users.md
            latency = TurnLatency(lambda s: self._latency(live, REPLY_LATENCY, s),
                                  lambda s: self._latency(live, INTERRUPTION_LATENCY, s),
                                  lambda s: self._latency(live, HEARD_LATENCY, s))
            live.worker = built.worker(observers=[latency, *accounting.observers], usage_metrics=True)
            if resumed:
                tell_restored(live, built, session)
            await run_worker(live.worker)
            await accounting.record()  # what the last moments used (an STT's final report)
            live.event("ended")
        except Exception as e:
            live.event("failed", f"{e.__class__.__name__}: {e}")
            self.metrics.error("session")
            why = f"{e.__class__.__name__}: {e}"
            await self.quietly(live.id, "error", lambda: self.store.record_error(live.id, why))
        finally:
            live.built = live.worker = live.close_peer = live.peer = None  # a finished graph is large; let it be collected
            await self._release(live)

    def connect_soon(self, live: LiveSession, peer: Any, close_peer: Any = None) -> None:
        """``connect`` in the background (an SDP answer goes back at once)."""
        self._spawn(self.connect(live, peer, close_peer))

    async def end(self, session_id: str) -> bool:
        """Ends a session for good (``DELETE``): its worker stops, its record is ENDED."""
        live = self.live.get(session_id)
        try:
            await self.store.set_state(session_id, SessionState.ENDED)
        except SessionNotFound:
            return False
        if live is not None:
            live.deleted = True
            if live.worker is not None:
                await live.worker.cancel(reason="the session was deleted")
            else:
                self._vacate(session_id, live)
        return True

    async def change_settings(self, session_id: str, change: SettingsChange) -> SettingsOutcome:
        """Applies ``change`` now, or queues it until the running response ends; says which, with its id.

        A session without a running worker takes it as its settings for its
        next connection. Every change is checked against the agent's services
        first; a held one is stored as pending before the caller is told.

        Raises:
            SessionNotFound: No such session. Refused: The agent has no LLM.
            BadSettings: A field the agent's services do not take (named, with the allowed ones).
            SettingsNotApplied: Applying it failed; the old settings stay.
        """
        live = self.live.get(session_id)
        gate = live.built.settings_gate if live is not None and live.built is not None else None
        if live is not None and live.built is not None and gate is None:
            raise Refused("this agent has no LLM to change settings of")
        change_id = new_change_id()
        if gate is None:
            session = await self.store.get(session_id)
            agent = self.agents.get(session.agent)
            if agent is None:
                raise Refused(f"this server does not run agent {session.agent!r}")
            self.settings_model(agent).check(change)
            now = time.time()
            settings = with_applied(session.settings, AppliedChange(change, now, now, held=False, change_ids=(change_id,)))
            await self.store.set_settings(session_id, settings)
            return SettingsOutcome(True, change_id, [p.id for p in pending_changes(settings)])
        if await gate.submit(change, change_id):
            return SettingsOutcome(True, change_id, [p.id for p in gate.pending])
        # Held: queued in the stored settings (no await since the gate took it) before the caller hears "held".
        live.settings = with_pending(live.settings, next(p for p in gate.pending if p.id == change_id))
        await self.store.set_settings(session_id, live.settings)
        return SettingsOutcome(False, change_id, [p.id for p in gate.pending])

    def settings_model(self, agent: Agent) -> SettingsModel:
        """What runtime settings ``agent``'s services take (built once on the synthetic transport if no session built it)."""
        model = self._settings_models.get(agent.spec.name)
        if model is None:
            model = self._settings_models[agent.spec.name] = settings_model(agent)
        return model

    def refused_message(self, live: LiveSession, reason: str) -> None:
        """One refused client message: counted, summarized, and the connection closed past the junk limit."""
        live.event("refused", reason)
        if live.junk is not None and live.junk.refused(reason) and live.close_peer is not None:
            close, live.close_peer = live.close_peer, None
            logger.warning(f"session {live.id}: closing a connection that sent {live.junk.total} refused messages")
            live.event("dropped", "too many refused messages")
            self._spawn(close())

    # -- internals -------------------------------------------------------------

    def _watch(self, live: LiveSession, built: BuiltAgent, session: Session, persisted: int) -> None:
        transport = built.transport
        agent = live.agent.spec.name
        state = {"persisted": persisted}

        @transport.event_handler("on_client_connected")
        async def _connected(t, client):
            resumed = live.connected_once or not live.fresh
            live.event("resumed" if resumed else "connected")
            live.state = SessionState.ACTIVE
            live.connected_once = True
            live.last_turn_at = time.monotonic()
            await self.quietly(live.id, "state ACTIVE",
                                lambda: self.store.set_state(live.id, SessionState.ACTIVE, owner=self.server_id))

        @transport.event_handler("on_client_disconnected")
        async def _closed(t, client):
            live.event("closed")

        @transport.event_handler("on_peer_dropped")
        async def _dropped(t, client, reason):
            live.event("dropped", reason)

        @transport.event_handler("on_message_refused")
        async def _refused(t, reason):
            self.refused_message(live, reason)

        assistant = built.processors.get("assistant_context")
        if assistant is not None and built.llm_context is not None:

            @assistant.event_handler("on_assistant_turn_stopped")
            async def _turn(aggregator, message):
                messages = conversation(built.llm_context)
                new, state["persisted"] = messages[state["persisted"]:], len(messages)
                live.last_turn_at = time.monotonic()
                self.metrics.turn_completed(agent)
                latencies, live.latencies = live.latencies, {}
                write_id = uuid.uuid4().hex  # a retry after an ambiguous failure applies the turn once
                await self.quietly(live.id, "turn", lambda: self.store.append(
                    live.id, new, turn=True, latencies=latencies or None, write_id=write_id))

        if built.settings_gate is not None:
            self._watch_settings(live, built.settings_gate)

    def _watch_settings(self, live: LiveSession, gate: Any) -> None:
        """Stores and announces what becomes of each change (an RTVI server message, in order with the bot's output)."""

        @gate.event_handler("on_settings_applied")
        async def _applied(gate, applied: AppliedChange):
            live.settings = with_applied(live.settings, applied)
            live.event("settings-applied", ("held until the response ended" if applied.held else "at once")
                       + f" ({', '.join(applied.change_ids)})")
            settings = dict(live.settings)
            await self.quietly(live.id, "settings", lambda: self.store.set_settings(live.id, settings))
            told = {"type": "settings-applied", "held": applied.held, "applied_at": applied.applied_at,
                    "change": applied.change.model_dump(exclude_none=True), "change_ids": list(applied.change_ids)}
            await gate.push_frame(OutputTransportMessageUrgentFrame(message=client_message("server-message", told)))

        @gate.event_handler("on_settings_failed")
        async def _failed(gate, failed: FailedChange):
            live.settings = with_failed(live.settings, failed.change_ids, failed.error, time.time())
            live.event("settings-failed", f"{', '.join(failed.change_ids)}: {failed.error}")
            settings, why = dict(live.settings), f"settings not applied: {failed.error}"
            await self.quietly(live.id, "settings", lambda: self.store.set_settings(live.id, settings))
            await self.quietly(live.id, "error", lambda: self.store.record_error(live.id, why))
            told = {"type": "settings-failed", "change_ids": list(failed.change_ids), "error": failed.error}
            await gate.push_frame(OutputTransportMessageUrgentFrame(message=client_message("server-message", told)))

        stored = {k: v for k, v in live.settings.items() if k in ("llm", "tts")}
        if stored:
            self._spawn(reapply(live, SettingsChange(**stored)))

    async def _release(self, live: LiveSession) -> None:
        """The connection ended: frees the slot and records DISCONNECTED (or ENDED when deleted)."""
        self._vacate(live.id, live)
        self._finished.append(live)
        never = live.fresh and not live.connected_once
        state = live.state = SessionState.ENDED if live.deleted or never else SessionState.DISCONNECTED
        await self.quietly(live.id, f"state {state.value}", lambda: self.store.set_state(live.id, state))

    async def _connect_deadline(self, live: LiveSession) -> None:
        await asyncio.sleep(self.options.connect_timeout_s)
        if live.state != SessionState.STARTING or self.live.get(live.id) is not live:
            return
        live.event("failed", f"no client connected within {self.options.connect_timeout_s:g} s")
        if live.worker is not None:  # an offer was answered but the peer never connected
            await live.worker.cancel(reason="the peer never connected")
        else:
            await self._release(live)

    async def _idle_watch(self) -> None:
        idle = self.options.idle_timeout_s
        if not idle:
            return
        while True:
            await asyncio.sleep(min(idle / 4, 5.0))
            now = time.monotonic()
            for live in list(self.live.values()):
                if live.worker is not None and live.state == SessionState.ACTIVE and now - live.last_turn_at > idle:
                    live.event("idle", f"no turn for {idle:g} s")
                    await live.worker.cancel(reason="idle")

    def _latency(self, live: LiveSession, name: str, seconds: float) -> None:
        """Keeps a measured latency for the turn's store write and records it in the metrics."""
        live.latencies[name] = round(seconds, 4)
        record = {REPLY_LATENCY: self.metrics.reply_latency, HEARD_LATENCY: self.metrics.heard_latency,
                  INTERRUPTION_LATENCY: self.metrics.interruption_latency}[name]
        record(live.agent.spec.name, seconds)
        if name == REPLY_LATENCY and self.load is not None:
            self.load.record_reply(seconds)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def quietly(self, session_id: str, what: str, make) -> None:
        """A session's store write (``make()`` makes its coroutine), in order; queued and retried
        through a store outage (``WriteBehind``), never raised into a worker."""
        await self.writes.write(session_id, what, make)


def _participants(agent: Agent) -> int | None:
    """The agent's own limit of live sessions (its transport's ``max_participants``), if it has one."""
    return getattr(agent.transport.params, "max_participants", None)


def with_variables(agent: Agent, variables: dict[str, str]) -> Agent:
    """``agent`` with persona ``variables`` laid over its context's (checked against its prompt).

    Raises:
        Refused: The agent has no persona prompt, or a variable is missing or unused.
    """
    if not variables:
        return agent
    context = agent.context
    if context is None or not getattr(context.params, "system_prompt", ""):
        raise Refused("this agent has no persona prompt to take variables")
    merged = {**(getattr(context.params, "variables", None) or {}), **variables}
    try:
        render_persona(context.params.system_prompt, merged)
    except ValueError as e:
        raise Refused(f"variables: {e}") from None
    params = context.params.model_copy(update={"variables": merged})
    # The spec's context block too: factories (the scripted LLM's rules) read the variables from it.
    spec = agent.spec.model_copy(update={"context": agent.spec.context.model_copy(update={"variables": merged})})
    return replace(agent, spec=spec, context=Component(context.id, context.type, params))

"""Context restore: a (re)connecting session goes on from what the store holds.

When a session connects (its first connection, a resume after a drop, a
take-over after its server died) its graph is built fresh; this puts back
what the conversation had: the system prompt (rebuilt from the agent and
persona, or the one a settings change set), the stored last messages, the
stored runtime settings (pending changes folded in; fields the agent's
services cannot take dropped, with a logged reason), and tells a resumed
client what came back (an RTVI ``session-restored`` server message).
"""

import asyncio
import time
from typing import TYPE_CHECKING, Any

from loguru import logger

from pipelines.builder import BuiltAgent
from pipelines.client_protocol.messages import SESSION_RESTORED
from pipelines.server.stored_settings import pending_changes, with_applied
from pipelines.sessions.model import Session, SessionState
from pipelines.sessions.settings_gate import AppliedChange, SettingsChange, SettingsChangeFrame, new_change_id

if TYPE_CHECKING:
    from pipelines.server.manager import LiveSession, SessionManager


def conversation(context: Any) -> list[dict]:
    """The context's messages without the system prompt (what the store keeps)."""
    return [m for m in context.get_messages() if not (isinstance(m, dict) and m.get("role") == "system")]


def restore_context(built: BuiltAgent, session: Session) -> int:
    """Puts a resumed session's system prompt and stored messages into the built agent's context.

    Returns:
        How many conversation messages the context holds now (the next turn appends after them).
    """
    if built.llm_context is None:
        return 0
    system = [m for m in built.llm_context.get_messages() if isinstance(m, dict) and m.get("role") == "system"]
    prompt = session.settings.get("system_prompt")
    if prompt is not None:
        system = [{"role": "system", "content": prompt}]
    built.llm_context.set_messages(system + list(session.messages))
    return len(session.messages)


async def restored_settings(manager: "SessionManager", live: "LiveSession", session: Session, built: BuiltAgent) -> dict:
    """The settings a (re)connecting session runs with: its stored ones, pending changes folded in,
    and every stored field the agent's services cannot take dropped with a logged reason."""
    settings, now = dict(session.settings), time.time()
    for pending in pending_changes(settings):
        settings = with_applied(settings, AppliedChange(pending.change, pending.requested_at, now, held=True,
                                                        change_ids=(pending.id,)))
    if built.settings_gate is not None:
        kept, dropped = built.settings_gate.model.usable(settings)
        settings = {**{k: v for k, v in settings.items() if k not in ("llm", "tts")}, **kept}
        for why in dropped:
            logger.warning(f"session {live.id}: a stored setting cannot be applied and is dropped: {why}")
            live.event("settings-dropped", why)
            error = f"stored setting dropped: {why}"
            await manager.quietly(live.id, "error", lambda error=error: manager.store.record_error(live.id, error))
    if settings != session.settings:
        kept_settings = dict(settings)
        await manager.quietly(live.id, "settings", lambda: manager.store.set_settings(live.id, kept_settings))
    live.settings = settings
    return settings


async def reapply(live: "LiveSession", change: SettingsChange) -> None:
    """Applies a resumed session's stored LLM/TTS settings once its worker runs with a client connected."""
    while live.worker is not None and live.state != SessionState.ACTIVE:
        await asyncio.sleep(0.05)
    if live.worker is not None:
        await live.worker.queue_frame(SettingsChangeFrame(change=change, change_id="resume-" + new_change_id()))


def tell_restored(live: "LiveSession", built: BuiltAgent, session: Session) -> None:
    """Tells a resumed session's client what came back, once it is ready (after the worker's ``bot-ready``):
    an RTVI ``server-message`` ``{"type": "session-restored", "session_id", "turns"}``."""
    rtvi = getattr(built.client_observer, "rtvi_processor", None)
    if rtvi is None:
        return

    @rtvi.event_handler("on_client_ready")
    async def _ready(rtvi):
        await rtvi.send_server_message({"type": SESSION_RESTORED, "session_id": live.id, "turns": session.turns})

"""A session's stored runtime settings: what is applied, what waits, what happened to each change.

The store keeps one settings object per session (``Session.settings``, a
JSON object), so it is readable from any server through ``GET
/sessions/{id}`` and survives a crash:

- ``llm``, ``tts``, ``system_prompt``: the settings applied since creation,
  applied again on resume;
- ``pending``: the changes held until the running response ends, oldest
  first (``{"id", "requested_at", "change"}``); a resume applies them;
- ``applied`` and ``failed``: the last changes that took effect
  (``{"id", "at", "held"}``) or could not (``{"id", "at", "error"}``), so a
  caller told "held" can see what became of its change by its id.

These functions return a new object and never change the one given.
"""

from pipelines.sessions.settings_gate import AppliedChange, PendingChange, SettingsChange

#: Outcomes (applied, failed) kept per session, newest last.
KEPT_OUTCOMES = 20


def with_pending(settings: dict, pending: PendingChange) -> dict:
    """``settings`` with ``pending`` queued (unless its outcome is known already)."""
    if _known(settings, pending.id):
        return dict(settings)
    entry = {"id": pending.id, "requested_at": pending.requested_at,
             "change": pending.change.model_dump(exclude_none=True)}
    return {**settings, "pending": [*settings.get("pending", []), entry]}


def with_applied(settings: dict, applied: AppliedChange) -> dict:
    """``settings`` with ``applied``'s change laid over the applied settings and its ids moved out of pending."""
    merged = _without_pending(settings, applied.change_ids)
    for key in ("llm", "tts"):
        value = getattr(applied.change, key)
        if value is not None:
            merged[key] = {**merged.get(key, {}), **value}
    if applied.change.system_prompt is not None:
        merged["system_prompt"] = applied.change.system_prompt
    outcomes = [{"id": i, "at": applied.applied_at, "held": applied.held} for i in applied.change_ids]
    merged["applied"] = [*settings.get("applied", []), *outcomes][-KEPT_OUTCOMES:]
    return merged


def with_failed(settings: dict, change_ids: tuple[str, ...], error: str, at: float) -> dict:
    """``settings`` with the changes ``change_ids`` out of pending and recorded as failed with ``error``."""
    merged = _without_pending(settings, change_ids)
    outcomes = [{"id": i, "at": at, "error": error} for i in change_ids]
    merged["failed"] = [*settings.get("failed", []), *outcomes][-KEPT_OUTCOMES:]
    return merged


def pending_changes(settings: dict) -> list[PendingChange]:
    """The stored pending changes, oldest first (entries that no longer parse are left out)."""
    found = []
    for entry in settings.get("pending", []):
        try:
            found.append(PendingChange(str(entry["id"]), SettingsChange(**entry["change"]),
                                       float(entry.get("requested_at", 0.0))))
        except (KeyError, TypeError, ValueError):
            continue
    return found


def _without_pending(settings: dict, change_ids: tuple[str, ...]) -> dict:
    merged = dict(settings)
    left = [p for p in settings.get("pending", []) if p.get("id") not in change_ids]
    if left:
        merged["pending"] = left
    else:
        merged.pop("pending", None)
    return merged


def _known(settings: dict, change_id: str) -> bool:
    return any(o.get("id") == change_id for o in (*settings.get("applied", []), *settings.get("failed", [])))

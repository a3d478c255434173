"""A live session's usage and budget: counted from pipecat's reports, stored, checked after every turn.

``Accounting`` hangs on a session's built graph: its ``UsageMeter`` observes
the worker; at each assistant turn's end and when the worker stops, what was
counted since goes to the store (session, user and day) and to ``/metrics``
(agent and provider). Then the agent's ``budget:`` is checked: a session over
its own limit, or whose user is over a day's or a month's, hears the
budget's sentence and ends cleanly (ENDED, the reason in its errors).
``over_budget`` is what ``POST /sessions`` asks before a user's new session.
"""

import time
from datetime import UTC, datetime

from loguru import logger
from pipecat.frames.frames import EndFrame, TTSSpeakFrame

from pipelines.sessions.store import StoreUnavailable
from pipelines.spec import ASSISTANT_CONTEXT, BudgetSettings, Limits
from pipelines.usage import UsageMeter, split_key, totals


def period_start(period: str, at: float | None = None) -> float:
    """Unix time of the start of the UTC day or month holding ``at`` (now by default)."""
    moment = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        start = start.replace(day=1)
    return start.timestamp()


def exceeded(limits: Limits | None, used: dict[str, float]) -> str | None:
    """Which limit ``used`` (``totals()``) has reached, as ``"tokens 2010 of 2000"``; None within them."""
    if limits is None:
        return None
    for metric in ("tokens", "characters", "audio_s", "cost"):
        limit = getattr(limits, metric)
        if limit is not None and used.get(metric, 0.0) >= limit:
            return f"{metric} {used.get(metric, 0.0):g} of {limit:g}"
    return None


async def over_budget(store, budget: BudgetSettings | None, user: str | None) -> str | None:
    """Why ``user`` may not start a session now (over a day's or a month's budget), or None."""
    if budget is None or user is None:
        return None
    limits_of = budget.for_user(user)
    for period, limits in (("day", limits_of.per_day), ("month", limits_of.per_month)):
        if limits is None:
            continue
        why = exceeded(limits, totals(await store.user_usage(user, since=period_start(period))))
        if why:
            return f"user {user} has used this {period}'s budget ({why}); it renews at the next UTC {period}"
    return None


def provider_names(built) -> dict[str, str]:
    """The YAML type of each processor of ``built``, by the name pipecat's metrics give it."""
    names = {}
    for pid, component in built.agent.processors.items():
        processor = built.processors.get(pid)
        names[pid] = component.type.name
        if processor is not None:
            names[processor.name] = component.type.name
    return names


class Accounting:
    """Usage and budget of one connection of a live session."""

    def __init__(self, manager, live, built, user: str | None, used_before: dict[str, float] | None = None):
        """Hooks on ``built``'s assistant turns.

        Args:
            used_before: What the session used on its earlier connections (the stored
                ``usage``): its own budget counts them too, so a resume starts no new allowance.
        """
        self.manager, self.live, self.built, self.user = manager, live, built, user
        self.used_before = dict(used_before or {})
        spec = built.agent.spec
        self.budget = spec.budget
        self.meter = UsageMeter(provider_names(built), spec.usage.prices)
        self.ending = False
        assistant = built.processors.get(ASSISTANT_CONTEXT)
        if assistant is not None:

            @assistant.event_handler("on_assistant_turn_stopped")
            async def _turn(aggregator, message):
                await self.record()
                await self.check()

    @property
    def observers(self) -> list:
        return [self.meter]

    async def record(self) -> None:
        """Hands what was counted since the last call to the store and the metrics (each count once)."""
        counts = self.meter.take()
        if not counts:
            return
        agent = self.built.agent.spec.name
        for key, value in counts.items():
            kind, provider, _, metric = split_key(key)
            self.manager.metrics.usage(agent, kind, provider, metric, value)
        await self.manager.writes.write(self.live.id, "usage",
                                        lambda: self.manager.store.add_usage(self.live.id, self.user, counts))

    async def check(self) -> None:
        """Ends the session (the budget's sentence first) when it, or its user's period, is over budget."""
        if self.budget is None or self.ending:
            return
        used = dict(self.used_before)
        for key, value in self.meter.counted.items():
            used[key] = used.get(key, 0.0) + value
        why = exceeded(self.budget.for_user(self.user).per_session, totals(used))
        why = f"this session's budget ({why})" if why else None
        if why is None and self.user is not None:
            try:
                why = await over_budget(self.manager.store, self.budget, self.user)
            except StoreUnavailable as e:  # checked again after the next turn
                logger.warning(f"session {self.live.id}: the user's budget could not be checked: {e}")
        if why:
            await self.end(why)

    async def end(self, why: str) -> None:
        """Says the budget's sentence, then ends the session for good (ENDED), recording why."""
        self.ending = True
        self.live.deleted = True  # released as ENDED: a budget's end is not a drop to resume from
        self.live.event("budget", why)
        logger.info(f"session {self.live.id}: over budget: {why}")
        await self.manager.writes.write(self.live.id, "budget",
                                        lambda: self.manager.store.record_error(self.live.id, f"ended: over {why}"))
        worker = self.live.worker
        if worker is not None:
            await worker.queue_frames([TTSSpeakFrame(self.budget.say), EndFrame()])

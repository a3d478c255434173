"""Load levels: the level machine's thresholds and hysteresis, the YAML's checks, and a server driven to
SESSION_REJECT by a really blocked event loop (503 + Retry-After for new sessions, an admitted session
still served), which recovers once the loop is free (docs/backpressure.md)."""

import asyncio
import time

import httpx
import pytest
import websockets
from test_server_resume import AGENT, say_over_ws, ws_of

from pipelines.client_protocol import messages as cm
from pipelines.errors import ConfigErrors
from pipelines.server.app import running
from pipelines.server.load_level import Level, LevelMachine, degraded
from pipelines.sessions.model import SessionState
from pipelines.spec import BackpressureSettings
from pipelines.validate import load_agent_text
from transports.clients.talk import Talker


def machine(**settings) -> LevelMachine:
    return LevelMachine(BackpressureSettings(**{"rise_secs": 1.0, "recover_secs": 5.0, **settings}))


def test_a_level_is_entered_only_once_measured_for_rise_secs():
    m = machine()
    assert m.update({"loop_lag_ms": 400}, now=0.0) is None  # one bad sample is not overload
    assert m.update({"loop_lag_ms": 10}, now=0.5) is None
    assert m.update({"loop_lag_ms": 400}, now=0.6) is None  # the rise starts again
    assert m.update({"loop_lag_ms": 400}, now=1.5) is None
    change = m.update({"loop_lag_ms": 400}, now=1.6)
    assert change.before == Level.NORMAL and change.after == Level.SESSION_REJECT
    assert change.signal == "loop_lag_ms" and "loop_lag_ms 400" in change.describe()


def test_the_highest_signal_decides_and_a_null_threshold_never_fires():
    m = machine(rise_secs=0)
    assert m.measured_level({"loop_lag_ms": 35, "reply_p95_secs": 0.6}) == (Level.DEGRADED, "reply_p95_secs")
    assert m.measured_level({"cpu_share": 5.0}) == (Level.SHEDDING, "cpu_share")  # CPU alone never rejects
    assert m.update({"loop_lag_ms": 60}, now=0).after == Level.DEGRADED


def test_recovery_steps_down_one_level_per_recover_secs_under_the_ratio():
    m = machine(rise_secs=0)
    m.update({"loop_lag_ms": 400}, now=0)
    assert m.level == Level.SESSION_REJECT
    # 100 ms is under SESSION_REJECT's 120 but above 0.7 x 120 = 84: the level holds (hysteresis).
    for t in range(1, 20):
        assert m.update({"loop_lag_ms": 100}, now=t) is None
    levels = []
    for t in range(20, 60):
        change = m.update({"loop_lag_ms": 1}, now=t)
        if change:
            levels.append((t, change.after))
    assert levels == [(25, Level.SHEDDING), (30, Level.DEGRADED), (35, Level.ELEVATED), (40, Level.NORMAL)]


def test_a_rise_during_recovery_is_entered_at_once_after_rise_secs():
    m = machine(rise_secs=1)
    m.update({"loop_lag_ms": 60}, now=0)
    m.update({"loop_lag_ms": 60}, now=1)
    assert m.level == Level.DEGRADED
    m.update({"loop_lag_ms": 1}, now=2)
    m.update({"loop_lag_ms": 1}, now=6)  # 4 s of recovery: not yet
    assert m.update({"loop_lag_ms": 90}, now=6.5) is None
    assert m.update({"loop_lag_ms": 90}, now=7.5).after == Level.SHEDDING


def test_thresholds_must_rise_and_degraded_params_are_checked_at_load_time(tmp_path):
    with pytest.raises(ValueError, match="must not decrease"):
        BackpressureSettings(loop_lag_ms=[50, 40, None, 100])
    text = AGENT + "backpressure:\n  degraded:\n    tts: {rate: fast}\n    ttx: {rate: 100}\n"
    with pytest.raises(ConfigErrors) as caught:
        load_agent_text(text, tmp_path / "agent.yaml")
    report = str(caught.value)
    assert "backpressure.degraded.tts.rate" in report and "'ttx' is not a declared processor" in report
    assert "did you mean 'tts'" in report


def test_degraded_lays_the_params_over_the_declared_ones(tmp_path):
    agent = load_agent_text(AGENT + "backpressure:\n  degraded:\n    tts: {rate: 220}\n", tmp_path / "a.yaml")
    assert degraded(agent).processors["tts"].params.rate == 220
    assert agent.processors["tts"].params.rate == 175  # the declared agent is untouched


async def fed_by_the_test(monitor) -> None:
    """Stops the monitor's own sampling and starts its level machine afresh at NORMAL: the test feeds it from here.

    A sample taken before the stop may have started a rise, or entered a
    level, on a busy machine; the test's own measurements must decide.
    """
    await monitor.stop()
    monitor.machine = LevelMachine(monitor.settings)


async def block_the_loop(stop: asyncio.Event) -> None:
    """Holds the event loop for 0.4 s in every 0.41 s: what a loop saturated by sessions looks like."""
    while not stop.is_set():
        time.sleep(0.4)
        await asyncio.sleep(0.01)


async def _level(http: httpx.AsyncClient) -> str:
    return (await http.get("/health")).json()["load"]["level"]


async def test_a_blocked_loop_rejects_new_sessions_with_retry_after_serves_the_admitted_and_recovers(tmp_path):
    yaml = AGENT + ("backpressure: {loop_lag_ms: [40, 60, 80, 100], cpu_share: [null, null, null, null],\n"
                    "  window_secs: 1, rise_secs: 0.5, recover_secs: 0.5, retry_after_secs: 7}\n")
    agent = load_agent_text(yaml, tmp_path / "memory.yaml")
    async with running(agent) as (url, manager), httpx.AsyncClient(base_url=url, timeout=30) as http, \
            Talker(ws_of(url, (admitted := (await _created(url))))) as talker:
        await talker.wait_for_message(cm.BOT_READY, timeout=60)
        await _until_normal(http, manager)  # building the session's agent may lag the loop for a moment
        stop = asyncio.Event()
        blocker = asyncio.create_task(block_the_loop(stop))
        try:
            deadline = time.monotonic() + 30
            while manager.load.level < Level.SESSION_REJECT:
                assert time.monotonic() < deadline, f"never reached SESSION_REJECT: {manager.load.describe()}"
                await asyncio.sleep(0.1)
            refused = await http.post("/sessions")
            assert refused.status_code == 503 and refused.headers["retry-after"] == "7"
            assert "overloaded" in refused.json()["detail"]
            # A new session over /ws: closed with 1013 (try again later), the wait in its reason.
            async with websockets.connect(url.replace("http", "ws", 1) + "/ws") as ws:
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1013 and ws.close_reason.endswith("(retry after 7 s)"), ws.close_reason
            health = (await http.get("/health")).json()
            assert health["load"]["level"] == "SESSION_REJECT" and health["load"]["measured"]["loop_lag_ms"] > 100
        finally:
            stop.set()
            await blocker
        # The conversation admitted before the overload was never dropped: it goes on.
        assert manager.live[admitted["id"]].state == SessionState.ACTIVE
        assert (await say_over_ws(talker, "my name is ada")).startswith("Nice")
        metrics = (await http.get("/metrics")).text
        assert _changes_to(metrics, "SESSION_REJECT") >= 1
        recovered_from = _changes_to(metrics, "NORMAL")
        await _until_normal(http, manager)  # one step down per recover_secs
        assert (await http.post("/sessions")).status_code == 201
        metrics = (await http.get("/metrics")).text
        assert _changes_to(metrics, "NORMAL") > recovered_from
        assert "framegraph_load_level 0.0" in metrics


async def _until_normal(http: httpx.AsyncClient, manager, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while (await _level(http)) != "NORMAL":
        assert time.monotonic() < deadline, f"never back to NORMAL: {manager.load.describe()}"
        await asyncio.sleep(0.2)


def _changes_to(metrics: str, level: str) -> float:
    prefix = f'framegraph_load_level_changes_total{{level="{level}"}} '
    return next((float(line[len(prefix):]) for line in metrics.splitlines() if line.startswith(prefix)), 0.0)


async def _created(url: str) -> dict:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        return (await http.post("/sessions")).json()


async def test_the_dashboard_and_health_show_the_level_fed_to_the_machine(tmp_path):
    from test_sessions_dashboard import silence

    from transports.clients.chromium import chromium

    async with running(load_agent_text(AGENT)) as (url, manager), httpx.AsyncClient(base_url=url, timeout=30) as http, \
            chromium(tmp_path / "profile", silence(tmp_path / "m.wav")) as page:
        await page.call("Page.navigate", url=f"{url}/dashboard?every=0.3")
        load = "document.getElementById('load')"
        await page.wait_for(f"{load}?.dataset.level === 'NORMAL'", 30, "the NORMAL level")
        await fed_by_the_test(manager.load)
        manager.load.feed({"loop_lag_ms": 60, "cpu_share": 0.5}, now=1e6)
        assert manager.load.feed({"loop_lag_ms": 60, "cpu_share": 0.5}, now=1e6 + 1).after == Level.DEGRADED
        await page.wait_for(f"{load}.textContent === 'load: DEGRADED'", 30, "the DEGRADED level")
        assert "loop_lag_ms 60" in await page.eval(f"{load}.title")
        assert (await http.get("/health")).json()["load"]["measured"] == {"loop_lag_ms": 60, "cpu_share": 0.5}


async def test_a_shedding_server_sends_new_sessions_to_one_with_room_and_takes_them_when_none_has(redis_url):
    agent = load_agent_text(AGENT)
    async with running(agent, store=redis_url, server_id="a", housekeeping_s=0.3) as (a_url, a), \
            running(agent, store=redis_url, server_id="b", housekeeping_s=0.3) as (b_url, b), \
            httpx.AsyncClient(base_url=a_url, timeout=30) as http:
        await fed_by_the_test(a.load)
        a.load.feed({"cpu_share": 1.0}, now=1e6)
        a.load.feed({"cpu_share": 1.0}, now=1e6 + 2)
        assert a.load.level == Level.SHEDDING
        deadline = time.monotonic() + 20
        while "b" not in await a.servers():
            assert time.monotonic() < deadline, "b never heartbeat"
            await asyncio.sleep(0.1)
        shed = await http.post("/sessions")
        assert shed.status_code == 307 and shed.headers["location"] == f"{b_url}/sessions?placed=true"
        await fed_by_the_test(b.load)
        b.load.feed({"cpu_share": 1.0}, now=1e6)
        b.load.feed({"cpu_share": 1.0}, now=1e6 + 2)
        deadline = time.monotonic() + 20
        while (await a.servers())["b"]["capacity"] != "0":  # b's heartbeat says it has no room
            assert time.monotonic() < deadline, "b's heartbeat never said it was shedding"
            await asyncio.sleep(0.1)
        assert (await http.post("/sessions")).status_code == 201  # nobody has room: a takes it (not refused)


async def test_a_session_started_at_degraded_runs_the_degraded_params_and_one_started_before_keeps_its_own(tmp_path):
    agent = load_agent_text(AGENT + "backpressure:\n  degraded:\n    tts: {rate: 220}\n", tmp_path / "a.yaml")
    async with running(agent) as (url, manager), httpx.AsyncClient(base_url=url, timeout=30) as http:
        await fed_by_the_test(manager.load)
        before = (await http.post("/sessions")).json()
        async with Talker(ws_of(url, before)) as first:
            await first.wait_for_message(cm.BOT_READY, timeout=60)
            manager.load.feed({"loop_lag_ms": 60}, now=1e6)
            assert manager.load.feed({"loop_lag_ms": 60}, now=1e6 + 1).after == Level.DEGRADED
            during = (await http.post("/sessions")).json()
            async with Talker(ws_of(url, during)) as second:
                await second.wait_for_message(cm.BOT_READY, timeout=60)
                assert manager.live[during["id"]].built.agent.processors["tts"].params.rate == 220
                assert manager.live[before["id"]].built.agent.processors["tts"].params.rate == 175
                assert (await say_over_ws(second, "my name is ada")).startswith("Nice")


async def test_at_session_reject_a_disconnected_session_still_resumes_with_its_context():
    async with running(load_agent_text(AGENT)) as (url, manager), httpx.AsyncClient(base_url=url, timeout=30) as http:
        await fed_by_the_test(manager.load)
        created = (await http.post("/sessions")).json()
        async with Talker(ws_of(url, created)) as talker:
            await talker.wait_for_message(cm.BOT_READY, timeout=60)
            assert (await say_over_ws(talker, "my name is ada")).startswith("Nice")
        manager.load.feed({"loop_lag_ms": 999}, now=1e6)
        manager.load.feed({"loop_lag_ms": 999}, now=1e6 + 2)
        assert (await http.post("/sessions")).status_code == 503
        async with Talker(ws_of(url, created)) as back:  # admitted before: never refused for load
            await back.wait_for_message(cm.BOT_READY, timeout=60)
            assert (await say_over_ws(back, "tell me my name")) == "Your name is ada."

"""History through the real server (issue 25, item 6): real turns over the WebSocket, ``GET /history``, the dashboard.

A scripted agent speaking with espeak-ng answers transcripts sent by the
``Talker`` client; each stored turn counts into the hour's bucket with its
measured speech-end-to-first-audio latency. The dashboard's history section
is read in Debian's Chromium.
"""

import httpx
from test_server_resume import AGENT, say_over_ws, wait_for_turns, ws_of
from test_sessions_dashboard import silence

import pipelines.sessions.sqlite_store as sqlite_store
from pipelines.client_protocol import messages as cm
from pipelines.server.app import running
from pipelines.sessions.history import HISTORY_HOURS
from pipelines.sessions.model import REPLY_LATENCY, now
from pipelines.validate import load_agent_text
from transports.clients.chromium import chromium
from transports.clients.talk import Talker

ADMIN = "admin-key-0123456789abcdef"
ANA_KEY = "ana-key-0123456789abcdef"


async def test_history_counts_real_turns_and_their_reply_latencies():
    async with running(load_agent_text(AGENT), api_key=ADMIN, user_keys={"ana": ANA_KEY}) as (url, _), \
            httpx.AsyncClient(base_url=url, timeout=10, headers={"Authorization": f"Bearer {ADMIN}"}) as http:
        created = (await http.post("/sessions")).json()
        await http.post("/sessions", json={"user": "ana"})
        async with Talker(ws_of(url, created)) as talker:
            await talker.wait_for_message(cm.BOT_READY, timeout=15)
            for text in ["my name is ada", "tell me my name", "hello"]:
                await say_over_ws(talker, text)
            await wait_for_turns(http, created["id"], 3)
        measured = (await http.get(f"/sessions/{created['id']}")).json()["latencies"][REPLY_LATENCY]

        reply = await http.get("/history", params={"hours": 3})
        assert reply.status_code == 200
        rows = reply.json()["rows"]
        assert len(rows) == 3 and reply.json()["kept_hours"] == HISTORY_HOURS
        assert sum(r["sessions"] for r in rows) == 2 and sum(r["turns"] for r in rows) == 3  # an hour may turn
        assert sum(r["latency_samples"] for r in rows) == 3
        latest = [r for r in rows if r["latency_samples"]][-1]
        assert 0 < latest["latency_p50_s"] <= latest["latency_p95_s"] < 10
        assert latest["latency_p95_s"] >= measured  # the upper edge of a bucket: never below a sample it holds
        assert len((await http.get("/history")).json()["rows"]) == 24

        for bad in ["0", "337", "-1", "x", "1e9"]:
            response = await http.get("/history", params={"hours": bad})
            assert response.status_code == 400 and "hours" in response.json()["detail"], bad
        async with httpx.AsyncClient(base_url=url, timeout=10) as anonymous:
            assert (await anonymous.get("/history")).status_code == 401
            assert (await anonymous.get("/history", headers={"Authorization": f"Bearer {ANA_KEY}"})).status_code == 403


async def test_dashboard_history_section_shows_the_hours_numbers(tmp_path, monkeypatch):
    t = now()
    monkeypatch.setattr(sqlite_store, "now", lambda: t)  # one hour for the whole test, even at a change of hour
    async with running(load_agent_text(AGENT), api_key=ADMIN) as (url, manager), \
            httpx.AsyncClient(base_url=url, timeout=10, headers={"Authorization": f"Bearer {ADMIN}"}) as http:
        ids = [(await http.post("/sessions")).json()["id"] for _ in range(2)]
        for n, seconds in enumerate([0.42, 0.61, 0.44, 1.37]):  # nearest rank: p50 0.44 -> 450 ms, p95 1.37 -> 1400 ms
            await manager.store.append(ids[n % 2], [{"role": "user", "content": f"<b>{n}</b>"}],
                                       latencies={REPLY_LATENCY: seconds})
        async with chromium(tmp_path / "profile", silence(tmp_path / "m.wav")) as page:
            await page.call("Page.navigate", url=f"{url}/dashboard/?every=0.3&hours=6")
            await page.wait_for("document.getElementById('history-problem').textContent.includes('401')", 15,
                                "a 401 at first")
            await page.eval(f"document.getElementById('api-key').value = '{ADMIN}'; "
                            "document.getElementById('auth').requestSubmit(); true")
            row = "document.querySelector('#history tr[data-hour]')"
            await page.wait_for(f"!!{row}", 15, "an hour's row")
            cells = await page.eval(f"[...{row}.cells].map(td => td.className + '=' + td.textContent)")
            assert cells[1:] == ["sessions=2", "turns=4", "p50=450 ms", "p95=1400 ms"]
            assert await page.eval("document.querySelectorAll('#history tr[data-hour]').length") == 1
            assert await page.eval("document.getElementById('history-hours').textContent") == "last 6 h"
            assert await page.eval("window.historyPanel.rows.length") == 6
            # The chart: one bar each for turns and sessions, a p50 and a p95 point, drawn by the page's own script.
            assert await page.eval("document.querySelectorAll('#history-chart rect.turns').length") == 1
            assert await page.eval("document.querySelectorAll('#history-chart rect.sessions').length") == 1
            assert await page.eval("document.querySelectorAll('#history-chart circle.p95').length") == 1
            assert await page.eval("[...document.scripts].every(s => !s.src || s.src.startsWith(location.origin))")

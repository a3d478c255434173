"""The server's own dashboard in headless Chromium shows a live session and its turn count."""

import httpx
from test_server_resume import AGENT, say_over_ws, wait_for_turns, ws_of
from test_sessions_dashboard import silence

from pipelines.client_protocol import messages as cm
from pipelines.server.app import running
from pipelines.validate import load_agent_text
from transports.clients.chromium import chromium
from transports.clients.talk import Talker


async def test_dashboard_shows_a_live_session_and_its_turns(tmp_path):
    async with running(load_agent_text(AGENT)) as (url, manager), httpx.AsyncClient(base_url=url, timeout=10) as http:
        created = (await http.post("/sessions")).json()
        async with Talker(ws_of(url, created)) as talker, \
                chromium(tmp_path / "profile", silence(tmp_path / "m.wav")) as page:
            await talker.wait_for_message(cm.BOT_READY, timeout=15)
            await page.call("Page.navigate", url=f"{url}/dashboard?every=0.3")
            row = f"document.querySelector('#live tr[data-session=\"{created['id']}\"]')"
            await page.wait_for(f"!!{row}", 15, "the live session's row")
            assert await page.eval(f"{row}.querySelector('.state').textContent") == "ACTIVE"
            assert await page.eval(f"{row}.querySelector('.turns').textContent") == "0"
            await say_over_ws(talker, "my name is ada")
            await wait_for_turns(http, created["id"], 1)
            await page.wait_for(f"{row}.querySelector('.turns').textContent === '1'", 10, "the turn count")

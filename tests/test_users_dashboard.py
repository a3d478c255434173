"""The dashboard's users page in headless Chromium: users, their sessions, usage and memory, read-only."""

import httpx
from test_server_users import WS
from test_sessions_dashboard import silence

from pipelines.server.app import running
from pipelines.validate import load_agent_text
from transports.clients.chromium import chromium

ADMIN = "admin-key-0123456789abcdef"


async def test_users_page_shows_users_sessions_usage_and_memory_as_text(tmp_path):
    async with running(load_agent_text(WS), api_key=ADMIN) as (url, manager), \
            httpx.AsyncClient(base_url=url, timeout=10, headers={"Authorization": f"Bearer {ADMIN}"}) as http:
        first = (await http.post("/sessions", json={"user": "ana"})).json()
        await http.post("/sessions", json={"user": "ana"})
        await http.post("/sessions", json={"user": "bo"})
        await http.post("/sessions", json={})
        await manager.store.add_usage(first["id"], "ana", {"llm/openai/gpt-4o-mini/prompt_tokens": 120.0,
                                                           "llm/openai/gpt-4o-mini/completion_tokens": 30.0})
        ops = [{"op": "add", "field": "words", "value": "<b>hola</b>"}, {"op": "incr", "field": "practice", "value": "hola"}]
        assert (await http.patch("/users/ana/memory", json={"ops": ops})).status_code == 200
        async with chromium(tmp_path / "profile", silence(tmp_path / "m.wav")) as page:
            await page.call("Page.navigate", url=f"{url}/dashboard/users.html?every=0.3&user=ana")
            await page.wait_for("document.getElementById('problem').textContent.includes('401')", 15, "a 401 at first")
            await page.eval(f"document.getElementById('api-key').value = '{ADMIN}'; "
                            "document.getElementById('auth').requestSubmit(); true")
            ana = "document.querySelector('#users tr[data-user=\"ana\"]')"
            await page.wait_for(f"!!{ana}", 15, "ana's row")
            assert await page.eval("[...document.querySelectorAll('#users tr[data-user]')].map(r => r.dataset.user)") \
                == ["ana", "bo"]
            assert await page.eval(f"{ana}.querySelector('.sessions').textContent") == "2"
            assert await page.eval(f"{ana}.querySelector('.tokens').textContent") == "150"
            await page.wait_for("document.querySelectorAll('#user-sessions tr[data-session]').length === 2", 10,
                                "ana's sessions")
            words = "document.querySelector('#memory tr[data-field=\"words\"] .value')"
            assert await page.eval(f"{words}.textContent") == "<b>hola</b>"
            assert await page.eval(f"{words}.querySelector('b') === null")  # text, never markup
            assert await page.eval("document.querySelector('#memory tr[data-field=\"practice\"] .value').textContent") \
                == "hola (1)"
            assert await page.eval("document.getElementById('memory-version').textContent") == "version 1"
            usage = await page.eval("[...document.querySelectorAll('#usage td')].map(td => td.textContent)")
            assert "llm/openai/gpt-4o-mini/prompt_tokens" in usage and "120" in usage

"""The dashboard page in headless Chromium, polling a JSON API backed by a real SQLite store.

The API here is the smallest one that serves the page's two endpoints the way
the server will (``GET /health``, ``GET /sessions``); the page itself is the
packaged one, mounted at ``/dashboard`` with Starlette's ``StaticFiles``.
"""

import asyncio
import socket
import wave
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from pipelines.sessions.dashboard import DASHBOARD_DIR
from pipelines.sessions.model import Health, Page, SessionState
from pipelines.sessions.sqlite_store import SQLiteSessionStore
from transports.clients.chromium import chromium


def sessions_api(store: SQLiteSessionStore) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> Health:
        return Health.from_counts(await store.count_by_state(), await store.ping())

    @app.get("/sessions")
    async def sessions(limit: int = 50, cursor: str | None = None, state: SessionState | None = None) -> Page:
        return await store.list(limit=limit, cursor=cursor, state=state)

    app.mount("/dashboard", StaticFiles(directory=DASHBOARD_DIR, html=True), name="dashboard")
    return app


@asynccontextmanager
async def serving(app: FastAPI):
    """Runs ``app`` with uvicorn on a free loopback port; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def silence(path):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(3200))
    return path


async def test_dashboard_shows_live_and_disconnected_sessions_and_refreshes(tmp_path):
    async with SQLiteSessionStore(tmp_path / "s.db") as store:
        live, _ = await store.create(agent="tutor", owner="srv-a")
        await store.set_state(live.id, SessionState.ACTIVE)
        for i in range(3):
            await store.append(live.id, [{"role": "user", "content": f"q{i}"}], latencies={"reply_s": 0.412})
        dropped, _ = await store.create(agent="tutor", owner="srv-a")
        await store.record_error(dropped.id, "<b>tts</b> failed")
        await store.set_state(dropped.id, SessionState.DISCONNECTED)
        ended, _ = await store.create(agent="tutor", owner="srv-a")
        await store.set_state(ended.id, SessionState.ENDED)

        async with serving(sessions_api(store)) as base, chromium(tmp_path / "profile", silence(tmp_path / "m.wav")) as page:
            await page.call("Page.navigate", url=f"{base}/dashboard?every=0.3")
            await page.wait_for("window.dashboard && window.dashboard.refreshes > 0", 15, "first refresh")
            assert await page.eval("location.pathname") == "/dashboard/"
            assert await page.eval("document.querySelectorAll('script[src^=\"http\"], link[href^=\"http\"]').length") == 0
            assert await page.eval("window.dashboard.error") is None
            row = f"document.querySelector('#live tr[data-session=\"{live.id}\"]')"
            assert await page.eval(f"{row}.querySelector('.turns').textContent") == "3"
            assert await page.eval(f"{row}.querySelector('.latencies').textContent") == "reply_s 412 ms"
            assert await page.eval(f"{row}.querySelector('.state').textContent") == "ACTIVE"
            gone = f"document.querySelector('#disconnected tr[data-session=\"{dropped.id}\"]')"
            assert await page.eval(f"{gone}.querySelector('.errors').textContent") == "<b>tts</b> failed"
            assert await page.eval(f"{gone}.querySelectorAll('b').length") == 0  # shown as text, never markup
            assert await page.eval(f"!!document.querySelector('tr[data-session=\"{ended.id}\"]')") is False
            counts = await page.eval("document.getElementById('counts').textContent")
            assert counts == "active 1 · disconnected 1 · total 3"

            await store.append(live.id, [{"role": "user", "content": "q3"}])
            await page.wait_for(f"{row} && {row}.querySelector('.turns').textContent === '4'", 10, "turn count refresh")
            await store.set_state(live.id, SessionState.DISCONNECTED)
            await page.wait_for(
                f"!!document.querySelector('#disconnected tr[data-session=\"{live.id}\"]')", 10, "moved to disconnected"
            )
            assert await page.eval("document.getElementById('live-count').textContent") == "0"

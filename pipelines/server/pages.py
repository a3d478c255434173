"""The pages a server shows: the talk page at ``/`` (its files under ``/static``), what it says about an agent, the dashboard.

The files are package data, found through ``importlib.resources`` (never by
walking up from a module's file): the page is ``transports/web/`` (the
``transports`` package's data, beside the transports it talks to), the
dashboard ``pipelines/sessions/web/``. pyproject.toml packages both, so an
installed wheel serves them as a checkout does.
"""

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from pipelines.agent_info import agent_info
from pipelines.server.manager import SessionManager
from pipelines.sessions.dashboard import DASHBOARD_DIR


def page_assets() -> Traversable:
    """The talk page's folder (``index.html``, its scripts and styles): the ``transports`` package's ``web`` data."""
    return files("transports") / "web"


def on_disk(folder: Traversable) -> Path:
    """``folder`` as a path Starlette can serve from (a package installed as files, as pip installs one).

    Raises:
        RuntimeError: The package is imported from an archive (a zipped install), where no folder exists.
    """
    if not isinstance(folder, Path) or not folder.is_dir():
        raise RuntimeError(f"the server's web files are not a folder on disk ({folder}); install framegraph unzipped")
    return folder


def pages_router(manager: SessionManager) -> APIRouter:
    """``/`` (the talk page) and ``/api/agent`` (what the page tells a new user about the agent)."""
    router = APIRouter(include_in_schema=False)
    index = on_disk(page_assets()) / "index.html"

    @router.get("/")
    async def page():
        return FileResponse(index)

    @router.get("/api/agent")  # what the page tells a new user (pipelines.agent_info)
    async def info(name: str | None = None):
        agent = manager.agents.get(name) if name else next(iter(manager.agents.values()))
        if agent is None:
            raise HTTPException(404, "no such agent")
        return agent_info(agent)

    return router


def mount_assets(app: FastAPI) -> None:
    """Serves the page's files at ``/static`` and the dashboard at ``/dashboard/``."""
    app.mount("/static", StaticFiles(directory=on_disk(page_assets())), name="static")
    app.mount("/dashboard", StaticFiles(directory=on_disk(DASHBOARD_DIR), html=True), name="dashboard")

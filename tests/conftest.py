"""Shared test helpers."""

import os
from pathlib import Path

import pytest
from loguru import logger
from redis_kit import redis_server

from pipelines.logs import LEVEL_ENV, to_stderr
from pipelines.sessions.redis_store import RedisSessionStore
from pipelines.sessions.sqlite_store import SQLiteSessionStore

#: How long an ENDED session stays in the stores ``make_store`` makes.
ENDED_TTL_S = 0.5

ROOT = Path(__file__).resolve().parent.parent
HUMAN_AUDIO = ROOT.parent / "shared" / "audio" / "human"

# loguru's default handler holds the stderr of the moment loguru was imported: under pytest, the
# session's capture, which is closed at the end; a line logged after that (a worker or decoder
# process ending at teardown) printed "Logging error in Loguru Handler ... I/O operation on closed
# file". The same handler (DEBUG, stderr), writing to stderr as it is when each line is logged.
logger.remove()
logger.add(to_stderr, level="DEBUG")


@pytest.fixture(autouse=True)
def _log_level_ends_with_the_test():
    """A command run in process (``main``) exports its log level for the processes it starts; not past its test."""
    before = os.environ.get(LEVEL_ENV)
    yield
    if before is None:
        os.environ.pop(LEVEL_ENV, None)
    else:
        os.environ[LEVEL_ENV] = before


@pytest.fixture
def write_config(tmp_path):
    """Writes YAML text to a file in a fresh folder and returns its path."""

    def write(text: str, name: str = "agent.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture
def redis_url(tmp_path):
    """The URL of a real redis-server started for this test alone (stopped after it)."""
    folder = tmp_path / "redis"
    folder.mkdir()
    with redis_server(folder) as url:
        yield url


@pytest.fixture(autouse=True, scope="session")
def interruption_fixtures():
    """The misbehaving processors of tests/interruption_fixtures.py, registered for the tests only."""
    from interruption_fixtures import register

    register()


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request, tmp_path):
    """The store contract suites' factory of stores on one backend: every store it makes shares the same data (SQLite file or Redis)."""
    if request.param == "sqlite":
        path = tmp_path / "sessions.db"
        return lambda: SQLiteSessionStore(path, ended_ttl_s=ENDED_TTL_S)
    url = request.getfixturevalue("redis_url")
    return lambda: RedisSessionStore(url, prefix="t:", ended_ttl_s=ENDED_TTL_S)


@pytest.fixture
async def store(make_store):
    async with make_store() as s:
        yield s

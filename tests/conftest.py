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


#: Test files run one after another in one pytest-xdist worker (``scripts/test.sh`` runs several): "realtime",
#: agents judged on the real clock (VAD, Smart Turn and pocketsphinx on audio paced in real time, latency and
#: restart-timing bounds), which starve when other tests share the 2 cores: they are also marked ``realtime``, and
#: scripts/test.sh runs them after the others, alone; "cpu", tests that keep a core busy for tens of seconds
#: (fuzzing, stress loops, whole-source scans), kept from running two at a time.
XDIST_GROUPS = {
    "realtime": ["test_default_agent.py", "test_out_of_domain.py", "test_interruption_websocket.py",
                 "test_interruption_resume.py", "test_tts_piper.py", "test_server_hostile.py",
                 "test_server_worker_faults.py", "test_local_transport.py", "test_avatar_transports.py",
                 "test_eval_harness.py", "test_browser_page.py", "test_browser_face.py"],
    "cpu": ["test_interruption_memory.py", "test_server_front_stress.py", "test_server_fuzz.py",
            "test_config_fuzz.py", "test_pipecat_contract.py"],
}


def pytest_configure(config):
    config.addinivalue_line("markers", "xdist_group(name): run with the other tests of this group in one xdist worker")
    config.addinivalue_line("markers", "realtime: judged on the real clock; scripts/test.sh runs these alone, last")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the marks (--dist loadgroup)
def pytest_collection_modifyitems(items):
    group_of = {file: group for group, files in XDIST_GROUPS.items() for file in files}
    for item in items:
        if group := group_of.get(item.path.name):
            item.add_marker(pytest.mark.xdist_group(group))
            if group == "realtime":
                item.add_marker(pytest.mark.realtime)


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

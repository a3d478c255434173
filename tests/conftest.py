"""Shared test helpers."""

from pathlib import Path

import pytest
from redis_kit import redis_server

ROOT = Path(__file__).resolve().parent.parent
HUMAN_AUDIO = ROOT.parent / "shared" / "audio" / "human"


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

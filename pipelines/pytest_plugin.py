"""framegraph's pytest plugin: ``async def`` tests of agents run as written, in any project.

Installing framegraph registers it (entry point ``pytest11``, name
``framegraph``), so a pipeline author's own tests, in a folder of their own,
can be coroutines that drive ``pipelines.testing.AgentHarness`` with no
``conftest.py`` and no settings: it turns on pytest-asyncio's auto mode (every
``async def`` test and fixture runs on an asyncio loop, one per test) unless
the project chose a mode itself (``--asyncio-mode``, or ``asyncio_mode`` set to
anything but pytest-asyncio's default ``strict``). ``-p no:framegraph`` turns
the plugin off. It needs pytest-asyncio (the ``pytest`` extra:
``pip install 'framegraph[pytest]'``) and says so when it is missing.
"""

import pytest

#: pytest-asyncio's default mode: only tests marked ``@pytest.mark.asyncio`` run.
STRICT = "strict"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Chooses auto mode before pytest-asyncio reads it, unless the project chose one."""
    if not config.pluginmanager.hasplugin("asyncio"):
        config.issue_config_time_warning(pytest.PytestConfigWarning(
            "framegraph: async tests need pytest-asyncio: pip install 'framegraph[pytest]'"), stacklevel=2)
        return
    if config.getoption("asyncio_mode") is None and config.getini("asyncio_mode") == STRICT:
        config.option.asyncio_mode = "auto"

"""One log level for a whole command: its own process and every process it starts.

``framegraph`` logs at INFO for the commands that start agents (``-v``: DEBUG)
and at WARNING for the quick ones. The level also goes into the environment
(``FRAMEGRAPH_LOG_LEVEL``), which worker processes inherit; importing
``pipelines`` in such a process (the first thing a spawned worker does when
it unpickles its agents, before pipecat is imported) applies it, so
``--workers N`` logs exactly as ``--workers 1`` does. Before this, spawned
workers kept loguru's default handler and logged at DEBUG, the bot's words
included (pipecat's ``Generating TTS [...]``). What a conversation says is
logged at DEBUG only.
"""

import os
import sys
import time

from loguru import logger

#: The environment variable that carries the level to worker processes.
LEVEL_ENV = "FRAMEGRAPH_LOG_LEVEL"
LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")

#: When this process imported the framework: start-up times are counted from here.
STARTED = time.monotonic()


def configure(level: str) -> None:
    """Logs at ``level`` and above to stderr, here and in every process started from now on.

    Above DEBUG, pipecat's banner (an INFO line each process prints when it
    imports pipecat) is left out: a one-line error stays one line.
    """
    logger.remove()
    logger.add(to_stderr, level=level, filter=None if level in ("TRACE", "DEBUG") else _not_the_banner)
    os.environ[LEVEL_ENV] = level


def to_stderr(message: str) -> None:
    """Writes to ``sys.stderr`` as it is now, not as it was when logging was configured.

    A sink bound to the stream of that moment breaks once the stream is
    replaced and closed (pytest's capture of the test that ran a command in
    process): every later line failed with "I/O operation on closed file".
    """
    sys.stderr.write(message)


def _not_the_banner(record: dict) -> bool:
    return not (record["name"] == "pipecat" and record["function"] == "<module>")


def configure_from_environment() -> None:
    """Applies an inherited ``FRAMEGRAPH_LOG_LEVEL`` (a worker process of a ``framegraph`` command)."""
    level = os.environ.get(LEVEL_ENV, "").upper()
    if level in LEVELS:
        configure(level)


def since_start() -> float:
    """Seconds since this process imported the framework."""
    return time.monotonic() - STARTED

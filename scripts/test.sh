#!/usr/bin/env bash
# Sets up framegraph with its test tools if needed, checks the code with ruff, and runs the whole test suite.
# Most of the suite waits (processes and servers starting, real-time audio, a browser), so it runs in 3 pytest-xdist
# workers on 2 cores; tests marked with the same xdist_group run one after another in one worker (tests/conftest.py:
# the CPU-heavy ones). Arguments go to pytest (a later `-n 0` runs it in one process).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check --quiet .
exec .venv/bin/python -m pytest -q -n 3 --dist loadgroup "$@"

#!/usr/bin/env bash
# Sets up framegraph with its test tools if needed, checks the code with ruff, and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check --quiet .
exec .venv/bin/python -m pytest -q "$@"

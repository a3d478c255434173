#!/usr/bin/env bash
# Sets up framegraph with its test tools if needed, checks the code with ruff, and runs the whole test suite.
# Most of the suite waits (processes and servers starting, real-time audio, a browser), so it runs in 3 pytest-xdist
# workers on 2 cores; tests marked with the same xdist_group run one after another in one worker (tests/conftest.py:
# the CPU-heavy ones). The tests judged on the real clock (marked realtime) then run alone, in one process, so no
# other test starves them. Arguments go to both pytest runs (e.g. a test file, -k, -x).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check --quiet .
status=0
.venv/bin/python -m pytest -q -n 3 --dist loadgroup -m "not realtime" "$@" || status=$?
realtime=0
.venv/bin/python -m pytest -q -m realtime "$@" || realtime=$?
# pytest's 5 is "no test selected": a run of only real-clock tests (or none) leaves the other run empty.
for code in "$status" "$realtime"; do
  if [ "$code" -ne 0 ] && [ "$code" -ne 5 ]; then exit "$code"; fi
done
if [ "$status" -eq 5 ] && [ "$realtime" -eq 5 ]; then exit 5; fi
exit 0

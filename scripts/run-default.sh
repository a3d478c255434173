#!/usr/bin/env bash
# Sets up framegraph if needed and runs the embedded default agent (configs/assistant.yaml).
# Extra arguments go to `framegraph run` (e.g. --port 8080).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/framegraph run configs/assistant.yaml "$@"

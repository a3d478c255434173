#!/usr/bin/env bash
# Sets up framegraph if needed and runs the embedded default agent (configs/assistant.yaml):
#   scripts/run-default.sh           serves it to a browser: open http://127.0.0.1:7860/ and talk
#   scripts/run-default.sh --file    answers configs/audio/question.wav into out/assistant.wav (no browser)
# Other arguments go to framegraph (e.g. --port 8080, or --realtime with --file).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [[ "${1:-}" == "--file" ]]; then
    shift
    exec .venv/bin/framegraph run configs/assistant.yaml "$@"
fi
exec .venv/bin/framegraph serve configs/assistant.yaml "$@"

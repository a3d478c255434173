#!/usr/bin/env bash
# Sets up framegraph on a fresh machine; safe to run again (it only does what is missing).
#   scripts/setup.sh          virtual environment + framegraph with the embedded speech stack
#   scripts/setup.sh --test   the same + test tools + Debian packages the tests use
set -euo pipefail
cd "$(dirname "$0")/.."

extras="speech"
packages=()
if [[ "${1:-}" == "--test" ]]; then
    extras="speech,test"
    packages=(graphviz chromium chromium-driver)
fi

missing=()
for pkg in "${packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
    sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
    echo "setup: installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[[ -x .venv/bin/python ]] || "${PYTHON:-python3}" -m venv .venv
stamp=".venv/.framegraph-setup-$(cat pyproject.toml | sha256sum | cut -c1-16)-${extras//,/-}"
if [[ ! -f "$stamp" ]]; then
    echo "setup: installing framegraph[$extras] into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[$extras]"
    rm -f .venv/.framegraph-setup-*
    touch "$stamp"
fi

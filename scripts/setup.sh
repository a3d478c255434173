#!/usr/bin/env bash
# Sets up framegraph on a fresh machine; safe to run again (it only does what is missing).
#   scripts/setup.sh          virtual environment + framegraph with the embedded speech stack
#   scripts/setup.sh --voice  the same + a human voice offline (Piper; GPL-3.0, see docs/dependencies.md)
#   scripts/setup.sh --test   the same + test tools + Debian packages the tests use (the voice included)
set -euo pipefail
cd "$(dirname "$0")/.."

extras="speech"
packages=()
for option in "$@"; do
    case "$option" in
        --test) test=1 ;;
        --voice) voice=1 ;;
        *) echo "usage: scripts/setup.sh [--voice] [--test]" >&2; exit 2 ;;
    esac
done
if [[ -n "${test:-}" ]]; then  # the test extra holds the voice extra's packages
    extras="speech,test"
    # pulseaudio (+ its utils and ALSA plugin): virtual sound devices for the local transport's test;
    # portaudio19-dev, gcc and python3-dev build PyAudio (the `local` extra; it has no Linux wheel);
    # haproxy and systemd validate and run the deploy/ files.
    packages=(graphviz chromium chromium-driver redis-server pulseaudio pulseaudio-utils libasound2-plugins
              portaudio19-dev gcc python3-dev haproxy systemd)
elif [[ -n "${voice:-}" ]]; then
    extras="speech,voice"
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
# A stamp per pyproject.toml version and extras; the test set-up includes the run and voice set-ups.
hash=$(sha256sum pyproject.toml | cut -c1-16)
stamp=".venv/.framegraph-setup-$hash-${extras//,/-}"
if [[ ! -f "$stamp" && ! -f ".venv/.framegraph-setup-$hash-speech-test" ]]; then
    echo "setup: installing framegraph[$extras] into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[$extras]"
    find .venv -maxdepth 1 -name '.framegraph-setup-*' ! -name ".framegraph-setup-$hash-*" -delete
    touch "$stamp"
fi

#!/usr/bin/env bash
# Create .venv and install a requirements file into it, only when it changed.
# Usage: scripts/bootstrap.sh [requirements.txt|requirements-dev.txt]
# Shared by scripts/serve (runtime deps) and scripts/test (dev deps).
set -euo pipefail
cd "$(dirname "$0")/.."
reqs="${1:-requirements.txt}"
python="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
    if ! "$python" -m venv .venv 2>/dev/null; then
        # Debian splits venv out of python3; install it when we may.
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            rm -rf .venv
            "$python" -m venv .venv
        else
            echo "bootstrap: '$python -m venv' failed; install python3-venv" >&2
            exit 1
        fi
    fi
fi

# Reinstall only when the requirement files changed since the last install.
stamp=".venv/.installed-$(basename "$reqs")"
digest=$(cat requirements*.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
    echo "bootstrap: installing $reqs into .venv" >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check -r "$reqs"
    echo "$digest" > "$stamp"
fi

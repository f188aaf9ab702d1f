#!/usr/bin/env bash
# Create the project-local .venv (git-ignored) and install docqa into it.
# llama-cpp-python compiles llama.cpp on first install (~6 min on 2 cores); pip caches
# the built wheel, so later installs take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}"
# torch==2.13.0 resolves to the CPU build (an unpinned torch would pull multi-GB CUDA wheels).
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${1:-test}]"

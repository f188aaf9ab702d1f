#!/usr/bin/env bash
# Create the project-local .venv (git-ignored) and install docqa into it.
#   ./scripts/setup.sh        what the service needs (scripts/up.sh)
#   ./scripts/setup.sh test   that plus the test extras and Chromium (scripts/test.sh)
# llama-cpp-python compiles llama.cpp once per machine (~6-12 min on 2 cores) into a wheel
# kept in ~/.cache/docqa/wheels, so later installs take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  "") EXTRAS="" ;;
  test) EXTRAS="[test]" ;;
  *) echo "usage: $0 [test]" >&2; exit 2 ;;
esac

# Debian packages, installed with apt when missing and this runs as root; checked before
# the long llama.cpp build so a missing one fails fast.
need_deb() {  # need_deb COMMAND PACKAGE WHY
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; } \
      || { echo "could not install Debian's '$2' package (apt-get install $2)" >&2; exit 2; }
  else
    echo "$1 is missing ($3): install Debian's '$2' package as root (apt-get install $2)" >&2
    exit 2
  fi
}
# `docqa up` starts a private redis-server in the data directory when no DOCQA_REDIS_URL is
# set, and the tests start their own on a free port (tests/private_redis.py)
need_deb redis-server redis-server "docqa up and the tests start one of their own"
if [ "$EXTRAS" = "[test]" ]; then
  # tests/integration/test_web_ui.py drives Debian's chromium through Playwright (never
  # `playwright install`: that downloads a browser build of its own)
  need_deb chromium chromium "the web page test drives it"
fi
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# llama-cpp-python compiles llama.cpp. A native build (-march=native) can use instructions
# the CPU advertises but the machine cannot run (here: AMX, "Illegal instruction" on the first
# generation), and pip's wheel cache would then serve that broken build to every later venv.
# So it is built once for a portable x86-64 level (AVX2/FMA/F16C) into a wheel directory of
# our own, keyed by version and flags, and installed from there.
LLAMA_VERSION=0.3.36
LLAMA_CMAKE_ARGS="${LLAMA_CMAKE_ARGS:--DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON}"
key=$(printf '%s %s' "$LLAMA_VERSION" "$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-12)
WHEELS="${DOCQA_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/docqa/wheels}/llama-$key"
if ! ls "$WHEELS"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python $LLAMA_VERSION (portable, once; about 6-12 min) into $WHEELS" >&2
  mkdir -p "$WHEELS.tmp"
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" .venv/bin/python -m pip wheel --quiet --no-cache-dir \
    --disable-pip-version-check --no-deps -w "$WHEELS.tmp" "llama-cpp-python==$LLAMA_VERSION"
  rm -rf "$WHEELS" && mv "$WHEELS.tmp" "$WHEELS"
fi
if [ ! -e ".venv/.llama-$key" ]; then  # replaces any other build of the same version
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --force-reinstall \
    --no-deps "$(ls "$WHEELS"/llama_cpp_python-*.whl)"
  touch ".venv/.llama-$key"
fi
# torch==2.13.0 resolves to the CPU build (an unpinned torch would pull multi-GB CUDA wheels).
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".$EXTRAS"
# The embedding model runs in ONNX Runtime (models.embedding_backend=onnx): export it from the
# packaged weights now (locally, offline, once: a valid export is kept), so the first worker
# and API do not, and the tests find it (tests/integration/conftest.py points them here).
DOCQA_MODELS__ONNX_CACHE_DIR="${DOCQA_MODELS__ONNX_CACHE_DIR:-$PWD/data/cache/onnx}" \
  .venv/bin/python -m ingest.embedding >/dev/null
# The span reader (retrieval.short_answer=reader) is the same weights with trained adapters.
DOCQA_MODELS__ONNX_CACHE_DIR="${DOCQA_MODELS__ONNX_CACHE_DIR:-$PWD/data/cache/onnx}" \
  .venv/bin/python -m service.answer.reader >/dev/null

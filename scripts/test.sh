#!/usr/bin/env bash
# Set up .venv and run the whole test suite (unit + integration on real Redis, a real
# Chroma server, a real Celery worker and the real models). Starts its own redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh test
# Lint and type check (the house style: ruff and mypy in CI). Both run on every call, also
# when pytest gets arguments (a few seconds once .mypy_cache is warm); a finding fails the
# script after the tests have run, so one CI run reports both.
LINT_PATHS=(core ingest workers service)
lint_failed=0
echo "ruff check ${LINT_PATHS[*]}" >&2
.venv/bin/ruff check "${LINT_PATHS[@]}" || lint_failed=1
echo "mypy --strict ${LINT_PATHS[*]}" >&2
.venv/bin/mypy --strict "${LINT_PATHS[@]}" || lint_failed=1
# tests/integration/test_web_ui.py drives Debian's chromium through Playwright (never
# `playwright install`: that downloads a browser build of its own)
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
      || { echo "could not install Debian's 'chromium' package (apt-get install chromium)" >&2; exit 2; }
  else
    echo "chromium is missing: install Debian's 'chromium' package as root (apt-get install chromium)" >&2
    exit 2
  fi
fi
# the tests start a redis-server of their own on a free port (tests/private_redis.py) and
# never touch the machine's Redis on 6379
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; } \
      || { echo "could not install Debian's 'redis-server' package" >&2; exit 2; }
  else
    echo "redis-server is missing: install Debian's 'redis-server' package (apt-get install redis-server)" >&2
    exit 2
  fi
fi
export ANONYMIZED_TELEMETRY=False HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
tests_rc=0
.venv/bin/python -m pytest "$@" || tests_rc=$?
if [ "$lint_failed" != 0 ]; then
  echo "ruff or mypy found problems (above)" >&2
  [ "$tests_rc" != 0 ] || tests_rc=1
fi
exit "$tests_rc"

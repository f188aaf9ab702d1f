#!/usr/bin/env bash
# Set up .venv and run the whole test suite (unit + integration on real Redis, a real
# Chroma server, a real Celery worker and the real models). Needs Redis on 127.0.0.1:6379.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh test
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
if ! .venv/bin/python -c "import redis,sys; redis.Redis(socket_connect_timeout=2).ping()" 2>/dev/null; then
  echo "Redis is not reachable on 127.0.0.1:6379: start it with 'redis-server --daemonize yes'" >&2
  exit 2
fi
export ANONYMIZED_TELEMETRY=False HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest "$@"

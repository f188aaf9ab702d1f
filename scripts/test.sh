#!/usr/bin/env bash
# Set up .venv and run the whole test suite (unit + integration on real Redis, a real
# Chroma server, a real Celery worker and the real models). Starts its own redis-server.
# setup.sh installs the test extras, and Debian's redis-server and chromium when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh test
# Lint and type check (the house style: ruff and mypy in CI). Both run on every call, also
# when pytest gets arguments (a few seconds once .mypy_cache is warm); a finding fails the
# script after the tests have run, so one CI run reports both.
LINT_PATHS=(core ingest workers service bench)
lint_failed=0
echo "ruff check ${LINT_PATHS[*]}" >&2
.venv/bin/ruff check "${LINT_PATHS[@]}" || lint_failed=1
echo "mypy --strict ${LINT_PATHS[*]}" >&2
.venv/bin/mypy --strict "${LINT_PATHS[@]}" || lint_failed=1
export ANONYMIZED_TELEMETRY=False HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
tests_rc=0
.venv/bin/python -m pytest "$@" || tests_rc=$?
if [ "$lint_failed" != 0 ]; then
  echo "ruff or mypy found problems (above)" >&2
  [ "$tests_rc" != 0 ] || tests_rc=1
fi
exit "$tests_rc"

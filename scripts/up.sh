#!/usr/bin/env bash
# Set up .venv and start the whole service (Chroma server, Celery worker, API).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh test
exec .venv/bin/docqa up "$@"

#!/usr/bin/env bash
# Set up .venv (the service's dependencies only, no test extras) and start the whole
# service: a private Redis (unless DOCQA_REDIS_URL is set), the Chroma server, a Celery
# worker and the API.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/docqa up "$@"

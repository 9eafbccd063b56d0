#!/usr/bin/env bash
# Setup (idempotent), ruff, then the test suite: every tier (unit, local-Ray integration, end to end on the tiny
# model); arguments go to pytest, so `-m unit` is the quick loop. The slowest tests and each tier's seconds
# close the output. A venv set up from the current pyproject.toml and setup.sh is taken as it is (no setup run).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! { bash scripts/setup.sh --current && [ -x /usr/bin/chromium ]; }; then
  bash scripts/setup.sh
  # The report's browser test renders the page in Debian's Chromium; the quick start itself needs no browser.
  bash scripts/setup_chromium.sh
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export RAY_USAGE_STATS_ENABLED=0 TOKENIZERS_PARALLELISM=false
.venv/bin/ruff check rsi tests scripts
# The unit tier starts no Ray and shares no model, so `-m unit` alone runs on both cores (pytest-xdist); the Ray
# tiers run one test at a time, as one Ray per machine needs.
workers=()
[ "$*" = "-m unit" ] && workers=(-n 2)
exec .venv/bin/python -m pytest -q -p no:cacheprovider --timeout=900 --durations=15 "${workers[@]}" "$@"

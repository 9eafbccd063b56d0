#!/usr/bin/env bash
# Setup (idempotent), then the whole test suite: unit → local-Ray integration → end-to-end on the tiny model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export RAY_USAGE_STATS_ENABLED=0 TOKENIZERS_PARALLELISM=false
.venv/bin/ruff check rsi tests scripts
exec .venv/bin/python -m pytest -q -p no:cacheprovider --timeout=900 "$@"

#!/usr/bin/env bash
# Install halbench with its dev extras, then run the test suite.
# Slow end-to-end tests run when HALBENCH_SLOW=1 (CI sets it); extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --dev
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [[ -z "${NLTK_DATA:-}" && -d ../shared/nltk_data ]]; then export NLTK_DATA="$(cd ../shared/nltk_data && pwd)"; fi
MARK=(-m "not slow")
if [[ "${HALBENCH_SLOW:-0}" == "1" ]]; then MARK=(); fi
exec "${PYTHON:-python3}" -m pytest "${MARK[@]}" "$@"

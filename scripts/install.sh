#!/usr/bin/env bash
# Install halbench into the current Python environment.
#   scripts/install.sh          runtime install (editable)
#   scripts/install.sh --dev    + test/dev extras, and headless Chromium for the browser tests (apt, if root)
# torch: users with GPUs bring their own build; when no torch is importable we install the CPU wheel
# torch==2.13.0 first, so pip never resolves a multi-GB CUDA build on a CPU-only machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q "torch==2.13.0"
fi
if [[ "${1:-}" == "--dev" ]]; then
  "$PY" -m pip install -q -e ".[dev]"
  if ! command -v chromium >/dev/null 2>&1 && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install chromium; browser tests will be skipped" >&2
  fi
else
  "$PY" -m pip install -q -e .
fi
# NLTK data for CHAIR's default pipeline (WordNet 3.0 + POS tagger) ships inside the package
# (halbench/data/nltk_data), so nothing is downloaded here; `halbench setup-nltk` copies it into ~/nltk_data
# for users who want their own copy.

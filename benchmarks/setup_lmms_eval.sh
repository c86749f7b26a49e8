#!/usr/bin/env bash
# Install lmms-eval the way its users do (`pip install lmms-eval`) into its own venv next to the repo, on top
# of the system's CPU torch, for benchmarks/bench_lmms_eval.py.
#
#   bash benchmarks/setup_lmms_eval.sh [VENV_DIR]      (default: .venv-lmms in the repo root)
#
# What differs from a plain `pip install lmms-eval` on a GPU box, and why:
#   - torch is pinned to the installed 2.13.0 (constraints file): pip must never pull a CUDA build.
#   - torchvision (a hard requirement of lmms-eval 0.7.3, and of timm) is left out / removed again: its PyPI
#     wheel is built for the CUDA torch: against the CPU torch here its ops fail to register (`operator torchvision::nms
#     does not exist`), which breaks `import transformers`. lmms-eval's llava_hf path runs without it.
#   - decord is added (lmms_eval.models.simple.llava_hf imports it at module level; only the video extra
#     declares it).
#   - filelock<4 is pinned (found necessary in an earlier lmms-eval 0.7.3 CPU run; not re-checked here).
#   - halbench (this checkout, editable, no deps) is installed too: the local CHAIR caption task scores with it.
# Exit status 0 when `import lmms_eval` works in the venv; otherwise non-zero with pip's error.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-$REPO/.venv-lmms}"
VERSION="${LMMS_EVAL_VERSION:-0.7.3}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv --system-site-packages "$VENV"
fi
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
TORCH_VERSION="$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')"
printf 'torch==%s\nfilelock<4\n' "$TORCH_VERSION" > "$TMP/constraints.txt"

# lmms-eval itself without its dependencies, then every base requirement of it except torchvision.
"$VENV/bin/pip" install -q --no-deps -c "$TMP/constraints.txt" "lmms-eval==$VERSION"
"$VENV/bin/python" - "$TMP/reqs.txt" <<'PY'
import sys
from importlib.metadata import requires
from packaging.requirements import Requirement
keep = []
for line in requires("lmms-eval") or []:
    req = Requirement(line)
    if req.marker is not None and "extra" in str(req.marker):
        continue  # optional extras: users of `pip install lmms-eval` do not get them either
    if req.name.lower() == "torchvision":
        continue
    keep.append(str(req))
open(sys.argv[1], "w").write("\n".join(keep + ["decord", "filelock<4"]) + "\n")
PY
"$VENV/bin/pip" install -q -c "$TMP/constraints.txt" -r "$TMP/reqs.txt"
# timm (a requirement of lmms-eval) pulls torchvision in anyway: remove it again.
if "$VENV/bin/python" -m pip show -q torchvision >/dev/null 2>&1; then
  "$VENV/bin/pip" uninstall -q -y torchvision
fi
# halbench from this checkout (no deps: they come from the system), for the CHAIR scorer the local caption task uses.
"$VENV/bin/pip" install -q --no-deps -e "$REPO"
"$VENV/bin/python" -c 'import torch, lmms_eval, importlib.metadata as m; assert "+cpu" in torch.__version__ or not torch.cuda.is_available(); print("lmms-eval", m.version("lmms-eval"), "torch", torch.__version__)'

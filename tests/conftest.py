"""Test-session settings shared by every test module.

Offline by construction: no test may reach a model hub. NLTK data (WordNet + POS tagger, needed by the
OPERA-style CHAIR pipeline) comes from $NLTK_DATA, else ../shared/nltk_data beside the checkout (CI), else
the user's own NLTK install; tests that need it skip with a reason when none has it.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_SHARED_NLTK = Path(__file__).resolve().parents[2] / "shared" / "nltk_data"
if "NLTK_DATA" not in os.environ and _SHARED_NLTK.is_dir():
    os.environ["NLTK_DATA"] = str(_SHARED_NLTK)

REPO = Path(__file__).resolve().parent.parent
TEST_DATA = Path(__file__).resolve().parent / "data"

# One torch thread per test process: on a shared 2-core machine the default (2 threads) made the model
# tests several times slower through contention, and tiny models gain nothing from intra-op threads.
try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a hard dependency; keep conftest importable regardless
    pass

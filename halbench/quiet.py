"""Silence library chatter the user cannot act on (kept here so every entry point applies the same rules).

- accelerate logs "Removed shared tensor {'lm_head.weight'} while saving" for every model with tied input and
  output embeddings; the weights are tied again on load, and halbench's reload tests check the logits.
- transformers / accelerate FutureWarnings announce API changes inside the libraries, not in the user's code.
Everything else (real warnings, errors) still reaches the console.
"""

from __future__ import annotations

import logging
import warnings

_DROPPED_LOG_PREFIXES = ("Removed shared tensor",)


class _DropKnownChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(p in message for p in _DROPPED_LOG_PREFIXES)


def silence_library_noise() -> None:
    """Idempotent: install the log filter and the warning filters once per process."""
    logger = logging.getLogger("accelerate.utils.other")
    if not any(isinstance(f, _DropKnownChatter) for f in logger.filters):
        logger.addFilter(_DropKnownChatter())
    for module in ("transformers", "accelerate", "peft", "trl"):
        warnings.filterwarnings("ignore", category=FutureWarning, module=module + r"(\..*)?$")

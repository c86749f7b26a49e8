"""halbench.quiet drops only the known library chatter; real warnings still reach the user."""

from __future__ import annotations

import logging
import warnings

from halbench.quiet import silence_library_noise


def test_shared_tensor_chatter_dropped_other_records_kept(caplog):
    silence_library_noise()
    silence_library_noise()  # idempotent
    logger = logging.getLogger("accelerate.utils.other")
    with caplog.at_level(logging.WARNING, logger="accelerate.utils.other"):
        logger.warning("Removed shared tensor {'lm_head.weight'} while saving. This should be OK")
        logger.warning("checkpoint directory is not writable")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["checkpoint directory is not writable"]


def test_future_warnings_from_libraries_only():
    silence_library_noise()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        silence_library_noise()  # re-inserted filters take precedence over "default"
        warnings.warn_explicit("old API", FutureWarning, "x.py", 1, module="transformers.modeling_utils")
        warnings.warn_explicit("your code", FutureWarning, "y.py", 1, module="mypackage.train")
    assert [str(w.message) for w in seen] == ["your code"]

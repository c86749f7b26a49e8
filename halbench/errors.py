"""User-facing errors.

Every error a user can cause (bad file, bad checkpoint, bad option) is a HalbenchError whose message names
what went wrong and where (file and line when there is one). The CLI prints the message and exits non-zero
without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class HalbenchError(Exception):
    """An error caused by user input: printed as one clear message, exit code 2."""

    exit_code = 2


class DataError(HalbenchError):
    """A malformed, missing or inconsistent data file. Pass `path` and `line` (1-based) when known."""

    def __init__(self, message: str, path: object | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path, self.line = path, line


class ModelLoadError(HalbenchError):
    """A checkpoint directory that is missing, not a VLM, or unreadable."""


class NotAvailableError(HalbenchError):
    """A command, task or method that is declared but not built yet (never pretend it ran)."""


class JudgeError(HalbenchError):
    """A judge backend that cannot be reached or configured."""

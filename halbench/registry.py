"""Find tasks, training methods and model backends by name.

Built-in plugins are declared as entry points in pyproject.toml, exactly like third-party ones
(groups `halbench.tasks`, `halbench.methods`, `halbench.models`), so the core never imports
halbench.tasks/training/reports by module path.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from halbench.errors import HalbenchError, NotAvailableError

GROUPS = {"task": "halbench.tasks", "method": "halbench.methods", "model": "halbench.models"}


@lru_cache(maxsize=None)
def _entry_points(kind: str) -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=GROUPS[kind])}


def names(kind: str) -> list[str]:
    return sorted(_entry_points(kind))


def load(kind: str, name: str) -> Any:
    """The object registered as `name`; a clear error for unknown or not-yet-built plugins."""
    eps = _entry_points(kind)
    if name not in eps:
        known = ", ".join(sorted(eps)) or "(none installed: run `pip install -e .`)"
        raise HalbenchError(f"unknown {kind} {name!r}; known {kind}s: {known}")
    try:
        return eps[name].load()
    except (ImportError, AttributeError) as e:
        raise NotAvailableError(f"{kind} {name!r} is not available in this install ({e})") from e


def parse_task_spec(spec: str) -> tuple[str, str | None]:
    """'pope' -> ('pope', None); 'pope:adversarial' -> ('pope', 'adversarial')."""
    name, _, variant = spec.strip().partition(":")
    if not name:
        raise HalbenchError(f"empty task name in {spec!r}")
    return name, (variant or None)


def make_task(spec: str, options: dict[str, Any] | None = None):
    name, variant = parse_task_spec(spec)
    cls = load("task", name)
    return cls(variant=variant, **(options or {}))

"""Which embedded world a task reads when it is given no external data, and when that is allowed.

Every task accepts the option `world=DIR` (a world built by `halbench world build --out DIR`); without it,
tasks use the world shipped in the package. `halbench eval --world DIR` sets it for every task, and
`--world default` names the shipped world.

Never the toy world by accident: the world's 48x48 synthetic images are data for the embedded model only.
`check_data_sources` (called by `halbench eval` before any model is loaded or anything written) refuses a run
in which a model that is not the embedded one would be scored on the world because no data root was given,
unless the user asked for the world. `world_guard` catches tasks that reach for the world later without
saying so up front (third-party tasks, reward_analysis): while it is on, `task_world` raises the same error.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from halbench.errors import HalbenchError

WORLD_WORDS = "embedded synthetic world"
_GUARD: list[str] = []  # the refusal message while a guarded eval runs (a stack: train-and-eval nests none)


def resolve_world(value: str | None) -> str | None:
    """`--world default` -> the shipped world's folder; a path is kept (checked by World())."""
    if value is None or str(value).strip() == "":
        return None
    if str(value).strip() == "default":
        from halbench.world import default_world

        return str(default_world().root)
    path = Path(str(value)).expanduser()
    if not path.is_dir():
        from halbench.errors import DataError

        raise DataError("--world: not a folder (give a world built by `halbench world build`, or 'default')",
                        path=path)
    return str(path)


def task_world(options: Mapping[str, Any]):
    from halbench.world import World, default_world

    root = options.get("world")
    if not root and _GUARD:
        raise HalbenchError(_GUARD[-1])
    return World(Path(str(root)).expanduser()) if root else default_world()


def is_embedded_model(model_spec: str | None) -> bool:
    """No --model, or --model naming the shipped VLM's own folder."""
    if not model_spec:
        return True
    try:
        from halbench.world import default_world

        spec = str(model_spec)[3:] if str(model_spec).startswith("hf:") else str(model_spec)
        return Path(spec).expanduser().resolve() == Path(default_world().vlm_dir).resolve()
    except Exception:  # noqa: BLE001 - a broken install has no embedded model to be
        return False


def uses_world(task: Any) -> bool:
    """True when the task would read the embedded world (its own `uses_world()`; unknown tasks: False,
    the guard catches them if they do)."""
    fn = getattr(task, "uses_world", None)
    return bool(fn()) if callable(fn) else False


def refusal(model_spec: str | None, task_names: list[str]) -> str:
    """The one-line hint: what to pass instead of silently scoring a real model on toy data."""
    return (f"--model {model_spec} is not the embedded model, and {', '.join(task_names)} would run on the "
            f"{WORLD_WORDS} (48x48 toy images): pass --coco-root DIR (COCO 2014: val2014/ + annotations/) "
            "for pope/chair/object_halbench, --mmhal-root DIR for mmhal, --hf-datasets for the published HF "
            "copies, or --world default to score it on the world on purpose")


def check_data_sources(tasks: list[Any], model_spec: str | None, world_asked: bool) -> None:
    """Refuse up front (see the module doc); returns quietly when the run is what the user asked for."""
    if world_asked or is_embedded_model(model_spec):
        return
    on_world = [t.name for t in tasks if uses_world(t)]
    if on_world:
        raise HalbenchError(refusal(model_spec, on_world))


@contextmanager
def world_guard(active: bool, model_spec: str | None, task_names: list[str]) -> Iterator[None]:
    """While active, any fallback to the embedded world (task_world without world=) raises the refusal."""
    if not active:
        yield
        return
    _GUARD.append(refusal(model_spec, task_names))
    try:
        yield
    finally:
        _GUARD.pop()

"""From `halbench eval` flags to each task's data options: data roots, published HF copies, protocol presets.

`task_options` merges, per task: protocol preset < data roots (--coco-root / --mmhal-root, or their
environment variables) < --hf-datasets < the user's --task-option values. A root goes only to the tasks
that declare it (`data_roots` class attribute: pope, chair, object_halbench -> "coco"; mmhal -> "mmhal"), so
`--coco-root` never changes a task that does not read COCO. The refusal to score a real model on the
embedded world lives in halbench.tasks.world_source; the words that name a run's data in results.json
(`data_source`, per task and for the run) come from each task's `data_source()`, via the evaluator.
"""

from __future__ import annotations

from typing import Any

from halbench import registry

from halbench.tasks.data_roots import ENV_COCO, ENV_MMHAL, env_root
from halbench.tasks.hf_datasets import DEFAULT_IDS
from halbench.tasks.protocols import get_protocol

#: option keys that mean "this task reads real benchmark data" (a preset's data keys then apply)
DATA_KEYS = ("data", "coco_root", "mmhal_root", "image_root", "coco", "gt")


def roots_from(coco_root: str | None, mmhal_root: str | None) -> dict[str, str]:
    """{'coco': DIR, 'mmhal': DIR} from flags / config, else HALBENCH_COCO_ROOT / HALBENCH_MMHAL_ROOT."""
    found = {"coco": env_root(coco_root, ENV_COCO), "mmhal": env_root(mmhal_root, ENV_MMHAL)}
    return {k: str(v) for k, v in found.items() if v}


def _declared_roots(name: str) -> tuple[str, ...]:
    try:
        return tuple(getattr(registry.load("task", name), "data_roots", ()))
    except Exception:  # noqa: BLE001 - an unknown task is reported by make_task with its own message
        return ()


def task_options(names: list[str], user: dict[str, dict[str, Any]], *, coco_root: str | None = None,
                 mmhal_root: str | None = None, hf_datasets: bool = False,
                 protocol: str | None = None) -> dict[str, dict[str, Any]]:
    """Per-task options (see the module doc); the user's own --task-option values always win."""
    preset = get_protocol(protocol) if protocol else None
    roots = roots_from(coco_root, mmhal_root)
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        opts: dict[str, Any] = {}
        for root in _declared_roots(name):
            if root in roots:
                opts[f"{root}_root"] = roots[root]
        if hf_datasets and name in DEFAULT_IDS:
            opts["data"] = f"hf:{DEFAULT_IDS[name]}"
        opts.update(user.get(name, {}))
        if preset is not None:
            real = any(opts.get(k) for k in DATA_KEYS)
            opts = {**preset.options_for(name, real), **opts}
        out[name] = opts
    return out

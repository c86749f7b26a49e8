"""Training state that resumes without unpickling anything that could run code.

accelerate's `save_state` writes the weights as safetensors, the optimizer, RNG and sampler states with
torch.save, and every object registered with `register_for_checkpointing` as `custom_checkpoint_N.pkl`,
which `load_state` reads back with `torch.load(weights_only=False)`: a planted file there runs arbitrary code
on resume. So halbench registers nothing: the LR scheduler's state (plain numbers) is `scheduler.json`, and
`load_state` then only reads files through `torch.load(weights_only=True)` (tensors, numbers, strings and
accelerate's short allow-list of numpy types for RNG state), which refuses any other object.

`verify_state(dir)` checks the small RNG files up front (accelerate would otherwise swallow a refused RNG
file and silently resume with other random numbers) and names any stray `custom_checkpoint_*.pkl`, which is
never loaded (`load_state` hands accelerate a view of the folder without them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from halbench.errors import HalbenchError

SCHEDULER_FILE = "scheduler.json"


def save_scheduler(scheduler: Any, state_dir: Path) -> None:
    from halbench.runs import atomic_write_json

    state = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}  # lambdas: code, not state
    atomic_write_json(Path(state_dir) / SCHEDULER_FILE, state)


def load_scheduler(scheduler: Any, state_dir: Path, step: int) -> None:
    """Restore from scheduler.json; a checkpoint from before it existed is fast-forwarded to `step`."""
    path = Path(state_dir) / SCHEDULER_FILE
    if path.is_file():
        state = json.loads(path.read_text(encoding="utf-8"))
        scheduler.load_state_dict({**state, "lr_lambdas": [None] * len(scheduler.lr_lambdas)})
        return
    for _ in range(step):  # the schedule is a pure function of the step count
        scheduler.step()


def verify_state(state_dir: Path) -> list[Path]:
    """Refuse RNG files that are not plain tensors; return the custom_checkpoint_*.pkl files left unread."""
    from accelerate.utils import load

    state_dir = Path(state_dir)
    for f in sorted(state_dir.glob("random_states_*.pkl")):
        try:
            load(f, weights_only=True)
        except Exception as e:  # noqa: BLE001 - any refusal means: not a state file we trust
            raise HalbenchError(f"{f}: refusing to load training state that is not plain tensors "
                                f"({type(e).__name__}); delete the checkpoint or set resume=false") from e
    return sorted(state_dir.glob("custom_checkpoint_*.pkl"))


def load_state(accelerator: Any, state_dir: Path) -> None:
    """accelerator.load_state with weights_only loads only; a refused file is a clear error. Stray
    custom_checkpoint_*.pkl files (planted, or from a checkpoint written before scheduler.json) are left
    unread: accelerate is pointed at a view of the folder without them."""
    import tempfile

    stray = verify_state(state_dir)
    if not stray:
        return _load(accelerator, Path(state_dir))
    for f in stray:
        accelerator.print(f"ignoring {f}: halbench never unpickles custom checkpoint files")
    with tempfile.TemporaryDirectory(prefix="halbench-state-") as view:
        for f in Path(state_dir).iterdir():
            if f not in stray:
                (Path(view) / f.name).symlink_to(f.resolve())
        _load(accelerator, Path(view))


def _load(accelerator: Any, state_dir: Path) -> None:
    try:
        accelerator.load_state(str(state_dir))
    except Exception as e:  # noqa: BLE001
        if "weights_only" in str(e) or type(e).__name__ == "UnpicklingError":
            raise HalbenchError(f"{state_dir}: refusing to load training state that is not plain tensors "
                                f"({type(e).__name__}); delete the checkpoint or set resume=false") from e
        raise

"""Which embedded world a task reads when it is given no external data.

Every task accepts the option `world=DIR` (a world built by `halbench world build --out DIR`); without it,
tasks use the world shipped in the package. `halbench eval --world DIR` sets it for every task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping


def task_world(options: Mapping[str, Any]):
    from halbench.world import World, default_world

    root = options.get("world")
    return World(Path(str(root)).expanduser()) if root else default_world()

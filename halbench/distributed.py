"""Data-parallel evaluation: which process am I, and wait for the others.

Launch with `torchrun --nproc_per_node N -m halbench eval ...` or `accelerate launch --multi_gpu
--num_processes N -m halbench eval ...`; both set RANK / WORLD_SIZE / LOCAL_RANK. Each process evaluates
every N-th pending sample into its own records file; after a barrier, rank 0 merges, aggregates and writes
results. A process group (gloo, which works for CPU and as a plain barrier next to CUDA) is only used for
barriers: records are exchanged through the run directory, which also makes the run resumable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def dist_info() -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    return Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def barrier(d: Dist) -> None:
    if not d.enabled:
        return
    import torch.distributed as tdist

    if not tdist.is_initialized():
        tdist.init_process_group("gloo")
    tdist.barrier()


def device_for_rank(device: str, d: Dist) -> str:
    """'cuda' -> 'cuda:<local_rank>' under a multi-process launch, so each process gets its own GPU."""
    return f"cuda:{d.local_rank}" if d.enabled and device == "cuda" else device

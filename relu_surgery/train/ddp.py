"""Process-group handling for ``torchrun`` (DDP): NCCL on CUDA, gloo on CPU; a no-op for one process.

Launch as ``torchrun --nproc_per_node=N -m relu_surgery.train MODEL ...``. Every rank takes its
slice of the same global batch (see ``sources.py``), so N processes with a global batch B compute
the same updates as one process with batch B (up to float summation order; BatchNorm statistics
are per rank, as in every DDP run without SyncBatchNorm).

Example:
    >>> from relu_surgery.train.ddp import init_distributed
    >>> env = init_distributed("cpu")
    >>> env.rank, env.world_size, env.is_main
    (0, 1, True)
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist

from .errors import TrainConfigError

__all__ = ["DistEnv", "init_distributed", "distributed_session", "all_reduce_sum", "gather_objects",
           "barrier", "shutdown", "pick_device"]


@dataclass(frozen=True)
class DistEnv:
    """Who this process is: rank, world size, local rank, its device, and whether it made the group.

    Example:
        >>> env = init_distributed("cpu")  # one process: no process group is started
        >>> env.rank, env.world_size, env.is_main, env.distributed
        (0, 1, True, False)
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """True on rank 0, the rank that writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:LOCAL_RANK`` when CUDA is available, else CPU; otherwise the named device.

    Example:
        >>> pick_device("cpu")
        device(type='cpu')
    """
    if preference == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(preference)
    except RuntimeError:
        raise TrainConfigError(f"unknown device {preference!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainConfigError("--device cuda was asked for but CUDA is not available")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    return device


def init_distributed(device_preference: str = "auto") -> DistEnv:
    """Join (or create) the process group described by torchrun's environment variables.

    Without ``WORLD_SIZE`` > 1 this returns a single-process environment and starts nothing.

    Example:
        >>> init_distributed("cpu").device
        device(type='cpu')
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_preference, local_rank)
    if world <= 1:
        return DistEnv(0, 1, 0, device)
    owns = False
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        owns = True
    return DistEnv(dist.get_rank(), dist.get_world_size(), local_rank, device, owns)


def shutdown(env: DistEnv) -> None:
    """Destroy the process group if ``env`` created it.

    Example:
        >>> shutdown(init_distributed("cpu"))  # nothing to destroy: this process made no group
    """
    if env.owns_group and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def distributed_session(device_preference: str = "auto") -> Iterator[DistEnv]:
    """Context manager: one process group for several runs (``--compare``, sweeps).

    Example:
        >>> with distributed_session("cpu") as env:
        ...     env.world_size
        1
    """
    env = init_distributed(device_preference)
    try:
        yield env
    finally:
        shutdown(env)


def all_reduce_sum(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum ``tensor`` over all ranks in place (a no-op for one process); returns it.

    Example:
        >>> all_reduce_sum(torch.ones(2), init_distributed("cpu"))
        tensor([1., 1.])
    """
    if env.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_objects(obj: Any, env: DistEnv) -> list[Any]:
    """Every rank's ``obj``, indexed by rank (``[obj]`` for one process).

    Example:
        >>> gather_objects({"err": 7.5}, init_distributed("cpu"))
        [{'err': 7.5}]
    """
    if not env.distributed:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(env: DistEnv) -> None:
    """Wait for all ranks (a no-op for one process).

    Example:
        >>> barrier(init_distributed("cpu"))  # a no-op for one process
    """
    if env.distributed:
        dist.barrier()

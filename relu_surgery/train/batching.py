"""What every batch source shares: the protocol the loop reads, each rank's batch and test shard.

Example:
    >>> from relu_surgery.train.ddp import DistEnv
    >>> eval_shard(10, DistEnv(rank=1, world_size=2, local_rank=1, device=None))
    (5, 10)
"""

from __future__ import annotations

from typing import Iterator, Protocol

import torch

from .config import TrainConfig
from .ddp import DistEnv
from .errors import TrainConfigError

__all__ = ["Batch", "BatchSource", "local_batch_size", "eval_shard"]

Batch = tuple[torch.Tensor, torch.Tensor]


class BatchSource(Protocol):
    """What the training loop needs from a dataset.

    Example:
        >>> from relu_surgery.train.sources import make_source
        >>> from relu_surgery.train.tiny import smoke_config
        >>> source: BatchSource = make_source(smoke_config("mnist", batch_size=16), DistEnv(0, 1, 0, torch.device("cpu")))
        >>> source.num_classes, source.steps_per_epoch, source.num_test
        (10, 4, 32)
    """

    name: str
    num_classes: int
    in_chans: int
    image_size: int
    steps_per_epoch: int
    num_test: int

    def train_batches(self, epoch: int, start_step: int) -> Iterator[Batch]: ...

    def eval_batches(self) -> Iterator[Batch]: ...

    def state(self) -> dict: ...

    def load_state(self, state: dict) -> None: ...


def local_batch_size(config: TrainConfig, env: DistEnv, num_train: int) -> int:
    """This rank's share of the global batch; checks divisibility and dataset size.

    Example:
        >>> cfg = TrainConfig(dataset="mnist", batch_size=128)
        >>> local_batch_size(cfg, DistEnv(rank=0, world_size=2, local_rank=0, device=None), num_train=1000)
        64
    """
    if config.batch_size % env.world_size:
        raise TrainConfigError(
            f"batch size {config.batch_size} does not split evenly over {env.world_size} processes"
        )
    if num_train < config.batch_size:
        raise TrainConfigError(
            f"batch size {config.batch_size} is larger than the {num_train} training samples; lower --batch-size"
        )
    return config.batch_size // env.world_size


def eval_shard(num: int, env: DistEnv) -> tuple[int, int]:
    """The contiguous ``[start, stop)`` of ``num`` test samples that this rank evaluates.

    Example:
        >>> [eval_shard(10, DistEnv(rank=r, world_size=3, local_rank=r, device=None)) for r in range(3)]
        [(0, 3), (3, 6), (6, 10)]
    """
    return num * env.rank // env.world_size, num * (env.rank + 1) // env.world_size

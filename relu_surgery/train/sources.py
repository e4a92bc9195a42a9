"""Batch sources: where training and evaluation batches come from, already on the device.

:class:`TensorSource` keeps a small dataset on the device as uint8 and augments there;
:class:`~relu_surgery.train.folder.FolderSource` reads an ImageFolder tree with DataLoader workers.
Both cut each epoch into ``steps_per_epoch`` global batches of ``batch_size`` samples (an
incomplete last batch is dropped) and hand rank ``r`` of ``W`` the slice
``[r * B / W, (r + 1) * B / W)`` of every global batch; the test set is split into contiguous
shards whose sums the loop adds up across ranks.

Example:
    >>> from relu_surgery.train.ddp import init_distributed
    >>> from relu_surgery.train.tiny import smoke_config
    >>> source = make_source(smoke_config(), init_distributed("cpu"))
    >>> x, y = next(iter(source.train_batches(epoch=0, start_step=0)))
    >>> x.shape, source.steps_per_epoch
    (torch.Size([32, 1, 28, 28]), 2)
"""

from __future__ import annotations

from typing import Iterator

import torch

from .augment import DeviceAugment, epoch_permutation
from .config import TrainConfig
from ..data.datasets import ArrayData, download_dataset, load_arrays
from .batching import Batch, BatchSource, eval_shard, local_batch_size
from .ddp import DistEnv, barrier
from .folder import FolderSource

__all__ = ["TensorSource", "make_source"]

class TensorSource:
    """A tensor dataset held on the device, augmented there (see ``augment.py``).

    Example:
        See the module example; a source holds the dataset on the device as uint8:

        >>> from relu_surgery.data.datasets import ArrayData, get_dataset_spec
        >>> from relu_surgery.train.ddp import init_distributed
        >>> data = ArrayData(get_dataset_spec("mnist"), torch.zeros(8, 1, 28, 28, dtype=torch.uint8), torch.zeros(8).long(),
        ...                  torch.zeros(4, 1, 28, 28, dtype=torch.uint8), torch.zeros(4).long())
        >>> TensorSource(data, TrainConfig(dataset="mnist", batch_size=4), init_distributed("cpu")).steps_per_epoch
        2
    """

    def __init__(self, data: ArrayData, config: TrainConfig, env: DistEnv,
                 memory_format: torch.memory_format = torch.contiguous_format) -> None:
        spec = data.spec
        self.name, self.num_classes, self.in_chans = spec.name, spec.num_classes, spec.in_chans
        self.image_size = int(data.train_x.shape[-1])
        self.config, self.env, self.memory_format = config, env, memory_format
        self.local_bs = local_batch_size(config, env, len(data.train_x))
        self.steps_per_epoch = len(data.train_x) // config.batch_size
        self.num_test = len(data.test_x)
        device = env.device
        self.train_x, self.train_y = data.train_x.to(device), data.train_y.to(device)
        start, stop = eval_shard(self.num_test, env)
        self.test_x, self.test_y = data.test_x[start:stop].to(device), data.test_y[start:stop].to(device)
        augment = spec.augment if config.augment is None else config.augment
        self.augment = DeviceAugment(spec.mean, spec.std, 4 if augment else 0, augment, device)

    def train_batches(self, epoch: int, start_step: int) -> Iterator[Batch]:
        """This rank's batches of ``epoch``, from global step ``start_step`` on (for resume)."""
        cfg, rank = self.config, self.env.rank
        perm = epoch_permutation(len(self.train_x), cfg.seed, epoch).to(self.train_x.device)
        lo, hi = rank * self.local_bs, (rank + 1) * self.local_bs
        for step in range(start_step, self.steps_per_epoch):
            idx = perm[step * cfg.batch_size:(step + 1) * cfg.batch_size][lo:hi]
            params = None
            if self.augment.active:
                params = self.augment.sample(cfg.batch_size, cfg.seed, epoch, step).slice(lo, hi)
            x = self.augment.apply(self.train_x[idx], params)
            yield x.contiguous(memory_format=self.memory_format), self.train_y[idx]

    def eval_batches(self) -> Iterator[Batch]:
        """This rank's shard of the test set, normalised, in fixed order."""
        size = self.config.eval_batch_size
        for start in range(0, len(self.test_x), size):
            x = self.augment.apply(self.test_x[start:start + size])
            yield x.contiguous(memory_format=self.memory_format), self.test_y[start:start + size]

    def state(self) -> dict:
        """The on-device augmentation generator's state (it is also re-seeded every step)."""
        return {"augment_generator": self.augment.generator.get_state()}

    def load_state(self, state: dict) -> None:
        """Restore what :meth:`state` returned."""
        try:
            if "augment_generator" in state:
                self.augment.generator.set_state(state["augment_generator"])
        except RuntimeError:  # saved on another device type; harmless, batches re-seed it anyway
            pass


def make_source(config: TrainConfig, env: DistEnv,
                memory_format: torch.memory_format = torch.contiguous_format) -> BatchSource:
    """The batch source for ``config.dataset``: tensors on the device, or an ImageFolder reader.

    Example:
        >>> from relu_surgery.train.ddp import init_distributed
        >>> make_source(TrainConfig(dataset="mnist", data_dir="/nowhere"), init_distributed("cpu"))
        Traceback (most recent call last):
        ...
        relu_surgery.errors.DatasetError: mnist data directory /nowhere does not exist (pass --download to fetch it)
    """
    if config.dataset == "imagefolder":

        return FolderSource(config, env, memory_format)
    if config.download:
        if env.is_main:
            download_dataset(config.dataset, config.data_dir)
        barrier(env)
    data = load_arrays(config.dataset, config.data_dir, limit_train=config.limit_train,
                       limit_test=config.limit_test)
    return TensorSource(data, config, env, memory_format)

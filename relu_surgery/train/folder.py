"""ImageFolder (ImageNet layout) batches through a DataLoader with workers.

``ROOT/train/<class>/<image>`` and ``ROOT/val/<class>/<image>`` (``validation`` or ``test`` also
accepted). Images of ``image_size`` > 64 get the ImageNet recipe (RandomResizedCrop + flip; test:
resize to size/0.875 + centre crop); smaller ones (CIFAR-like PNG trees) get resize + random crop
with padding size/8 + flip. Each sample's augmentation is seeded with ``(seed, epoch, index)``,
so the result does not depend on the number of workers or ranks, and a resumed run matches.

Example:
    >>> import os, tempfile
    >>> from PIL import Image
    >>> from relu_surgery.train.config import TrainConfig
    >>> from relu_surgery.train.ddp import init_distributed
    >>> root = tempfile.mkdtemp()
    >>> for split in ("train", "val"):
    ...     for label in ("cat", "dog"):
    ...         os.makedirs(f"{root}/{split}/{label}")
    ...         for i in range(2):
    ...             Image.new("RGB", (32, 32)).save(f"{root}/{split}/{label}/{i}.png")
    >>> cfg = TrainConfig(dataset="imagefolder", data_dir=root, batch_size=2, image_size=32, num_workers=0)
    >>> source = FolderSource(cfg, init_distributed("cpu"))
    >>> source.num_classes, source.steps_per_epoch, source.num_test
    (2, 2, 4)
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .augment import epoch_permutation, mix_seed
from .config import TrainConfig
from ..data.datasets import get_dataset_spec
from .ddp import DistEnv
from ..errors import DatasetError
from .batching import eval_shard, local_batch_size

__all__ = ["FolderSource", "find_split_dirs"]

_TEST_NAMES = ("val", "validation", "test")


def find_split_dirs(root: str | Path | None) -> tuple[Path, Path]:
    """``(train_dir, test_dir)`` of an ImageFolder tree, or one clear :class:`DatasetError`.

    Example:
        >>> find_split_dirs("/nowhere")
        Traceback (most recent call last):
        ...
        relu_surgery.errors.DatasetError: imagefolder data directory /nowhere does not exist
    """
    if root is None:
        raise DatasetError("no data directory for imagefolder: pass --data-dir PATH")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetError(f"imagefolder data directory {path} does not exist")
    test = next((path / n for n in _TEST_NAMES if (path / n).is_dir()), None)
    if not (path / "train").is_dir() or test is None:
        raise DatasetError(f"{path} is not an ImageFolder tree: expected train/ and val/ (or test/) with one folder per class")
    return path / "train", test


def _load_rgb(path: str):
    from PIL import Image

    try:
        with open(path, "rb") as handle:
            return Image.open(handle).convert("RGB")
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable image ({exc})") from None


def _transforms(size: int, augment: bool, mean, std):
    import torchvision.transforms as T

    tail = [T.ToTensor(), T.Normalize(mean, std)]
    if size <= 64:
        test = [T.Resize((size, size))]
        train = test + [T.RandomCrop(size, padding=size // 8), T.RandomHorizontalFlip()]
    else:
        test = [T.Resize(int(round(size / 0.875))), T.CenterCrop(size)]
        train = [T.RandomResizedCrop(size), T.RandomHorizontalFlip()]
    return T.Compose((train if augment else test) + tail), T.Compose(test + tail)


class _Samples(Dataset):
    """A view of ``base`` at ``indices``; a key ``(pos, seed)`` seeds the transform's randomness."""

    def __init__(self, base, indices: list[int]) -> None:
        self.base, self.indices = base, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key):
        pos, seed = key if isinstance(key, tuple) else (key, None)
        if seed is None:
            return self.base[self.indices[pos]]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.base[self.indices[pos]]


class _RankBatches(Sampler):
    """This rank's slice of each global batch of one epoch, as ``(position, sample_seed)`` keys."""

    def __init__(self, source: "FolderSource", epoch: int, start_step: int) -> None:
        self.src, self.epoch, self.start = source, epoch, start_step

    def __len__(self) -> int:
        return self.src.steps_per_epoch - self.start

    def __iter__(self):
        cfg, src = self.src.config, self.src
        perm = epoch_permutation(len(src.train_set), cfg.seed, self.epoch)
        lo, hi = src.env.rank * src.local_bs, (src.env.rank + 1) * src.local_bs
        for step in range(self.start, src.steps_per_epoch):
            chunk = perm[step * cfg.batch_size:(step + 1) * cfg.batch_size][lo:hi].tolist()
            yield [(i, mix_seed(cfg.seed, self.epoch, i)) for i in chunk]


def _spread(n: int, limit: int | None) -> list[int]:
    """``limit`` evenly spaced indices of ``range(n)`` (ImageFolder lists samples class by class)."""
    if limit is None or limit >= n:
        return list(range(n))
    return torch.linspace(0, n - 1, limit).round().long().tolist()


class FolderSource:
    """Batches from an ImageFolder tree, read by DataLoader workers and moved to the device.

    Example:
        See the module example (a two-class tree of PNG files).

        >>> FolderSource.__name__
        'FolderSource'
    """

    def __init__(self, config: TrainConfig, env: DistEnv,
                 memory_format: torch.memory_format = torch.contiguous_format) -> None:
        import torchvision.datasets as tvd

        spec = get_dataset_spec("imagefolder")
        train_dir, test_dir = find_split_dirs(config.data_dir)
        size = config.image_size or spec.image_size
        augment = spec.augment if config.augment is None else config.augment
        train_tf, test_tf = _transforms(size, augment, spec.mean, spec.std)
        try:
            train = tvd.ImageFolder(str(train_dir), transform=train_tf, loader=_load_rgb)
            test = tvd.ImageFolder(str(test_dir), transform=test_tf, loader=_load_rgb)
        except (FileNotFoundError, OSError) as exc:
            raise DatasetError(f"cannot read ImageFolder tree {config.data_dir}: {exc}") from None
        if train.classes != test.classes:
            raise DatasetError(f"{train_dir} and {test_dir} hold different class folders")
        self.name, self.num_classes, self.in_chans, self.image_size = "imagefolder", len(train.classes), 3, size
        self.config, self.env, self.memory_format = config, env, memory_format
        self.train_set = _Samples(train, _spread(len(train), config.limit_train))
        test_idx = _spread(len(test), config.limit_test)
        self.num_test = len(test_idx)
        start, stop = eval_shard(self.num_test, env)
        self.test_set = _Samples(test, test_idx[start:stop])
        self.local_bs = local_batch_size(config, env, len(self.train_set))
        self.steps_per_epoch = len(self.train_set) // config.batch_size

    def _loader(self, dataset: Dataset, **kwargs) -> DataLoader:
        workers = self.config.num_workers
        return DataLoader(dataset, num_workers=workers, pin_memory=self.env.device.type == "cuda",
                          persistent_workers=False, prefetch_factor=4 if workers else None, **kwargs)

    def _to_device(self, loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = iter(loader)
        try:
            for x, y in batches:
                x = x.to(self.env.device, non_blocking=True).contiguous(memory_format=self.memory_format)
                yield x, y.to(self.env.device, non_blocking=True)
        except DatasetError as exc:  # from a worker: keep the original one-line message
            message = str(exc).strip().splitlines()[-1].split("DatasetError: ", 1)[-1]
            del batches  # stop the workers now, not when the traceback is collected
            raise DatasetError(message) from None

    def train_batches(self, epoch: int, start_step: int):
        """This rank's batches of ``epoch`` from ``start_step`` on."""
        return self._to_device(self._loader(self.train_set, batch_sampler=_RankBatches(self, epoch, start_step)))

    def eval_batches(self):
        """This rank's shard of the test split, in fixed order."""
        return self._to_device(self._loader(self.test_set, batch_size=self.config.eval_batch_size))

    def state(self) -> dict:
        """Nothing beyond (seed, epoch, step): per-sample seeds make the order and crops reproducible."""
        return {}

    def load_state(self, state: dict) -> None:
        """Nothing to restore (see :meth:`state`)."""

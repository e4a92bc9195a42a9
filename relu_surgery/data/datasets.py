"""Dataset registry: what each dataset is, where its files live on disk, and how to load them.

Small datasets (CIFAR, SVHN, MNIST, Fashion-MNIST) load as uint8 tensors (:class:`ArrayData`) that
the runner moves to the device once; ImageFolder trees are read by a DataLoader (``folder.py``).

Accepted layouts (``ROOT`` = ``--data-dir``):

- cifar10: ``ROOT/cifar-10-batches-py/`` or ``ROOT/`` with ``data_batch_1..5``, ``test_batch``
- cifar100: ``ROOT/cifar-100-python/`` or ``ROOT/`` with ``train``, ``test``
- svhn: ``ROOT/`` with ``train_32x32.mat``, ``test_32x32.mat`` (needs scipy)
- mnist / fashion-mnist: IDX files (.gz or raw) in ``ROOT``, ``ROOT/raw``, ``ROOT/MNIST/raw`` /
  ``ROOT/FashionMNIST/raw`` (torchvision's layout) or ``ROOT/mnist`` / ``ROOT/fashion-mnist``
- imagefolder: ``ROOT/train/<class>/*`` and ``ROOT/val/<class>/*`` (or ``test``/``validation``)

Example:
    >>> from relu_surgery.data.datasets import get_dataset_spec
    >>> spec = get_dataset_spec("cifar10")
    >>> spec.num_classes, spec.in_chans, spec.augment
    (10, 3, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import torch

from ..errors import DatasetError
from .readers import read_cifar_batch, read_idx, read_svhn_mat

__all__ = ["DatasetSpec", "ArrayData", "DATASETS", "get_dataset_spec", "load_arrays", "download_dataset"]


@dataclass(frozen=True)
class DatasetSpec:
    """Static facts about a dataset: classes, channels, size, normalisation, default augmentation.

    Example:
        >>> spec = get_dataset_spec("cifar10")
        >>> spec.num_classes, spec.in_chans, spec.image_size, spec.augment
        (10, 3, 32, True)
    """

    name: str
    title: str
    num_classes: int
    in_chans: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool
    in_memory: bool = True


@dataclass
class ArrayData:
    """A dataset held as tensors: uint8 images ``[N, C, H, W]`` and int64 labels ``[N]``.

    Example:
        >>> data = ArrayData(get_dataset_spec("mnist"), torch.zeros(2, 1, 28, 28, dtype=torch.uint8),
        ...                  torch.tensor([3, 5]), torch.zeros(1, 1, 28, 28, dtype=torch.uint8), torch.tensor([7]))
        >>> data.spec.title, len(data.train_y)
        ('MNIST', 2)
    """

    spec: DatasetSpec
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


_CIFAR10_MEAN = tuple(v / 255 for v in (125.3, 123.0, 113.9))  # fb.resnet.torch, as the papers
_CIFAR10_STD = tuple(v / 255 for v in (63.0, 62.1, 66.7))
_CIFAR100_MEAN = tuple(v / 255 for v in (129.3, 124.1, 112.4))
_CIFAR100_STD = tuple(v / 255 for v in (68.2, 65.4, 70.4))

DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec("cifar10", "CIFAR-10", 10, 3, 32, _CIFAR10_MEAN, _CIFAR10_STD, True),
    "cifar100": DatasetSpec("cifar100", "CIFAR-100", 100, 3, 32, _CIFAR100_MEAN, _CIFAR100_STD, True),
    "svhn": DatasetSpec("svhn", "SVHN", 10, 3, 32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), False),
    "mnist": DatasetSpec("mnist", "MNIST", 10, 1, 28, (0.1307,), (0.3081,), False),
    "fashion-mnist": DatasetSpec("fashion-mnist", "Fashion-MNIST", 10, 1, 28, (0.2860,), (0.3530,), False),
    "imagefolder": DatasetSpec(
        "imagefolder", "ImageFolder", 0, 3, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), True,
        in_memory=False,
    ),
}


def get_dataset_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name``; :class:`DatasetError` for an unknown name.

    Example:
        >>> get_dataset_spec("fashion-mnist").mean
        (0.286,)
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def _require_root(name: str, root: str | Path | None) -> Path:
    if root is None:
        raise DatasetError(f"no data directory for {name}: pass --data-dir PATH (add --download to fetch it)")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{name} data directory {path} does not exist (pass --download to fetch it)")
    return path


def _find_files(name: str, candidates: list[Path], files: list[str], gz: bool = False) -> list[Path]:
    """The first candidate directory holding every file (raw preferred, ``.gz`` accepted)."""
    for folder in candidates:
        found = []
        for fname in files:
            options = [folder / fname] + ([folder / (fname + ".gz")] if gz else [])
            hit = next((p for p in options if p.is_file()), None)
            if hit is None:
                break
            found.append(hit)
        else:
            return found
    looked = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise DatasetError(
        f"no {DATASETS[name].title} files found (looked in {looked} for {', '.join(files)}"
        f"{' [.gz]' if gz else ''}); check --data-dir or pass --download"
    )


_IDX_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
_CIFAR = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], "labels"),
    "cifar100": ("cifar-100-python", ["train", "test"], "fine_labels"),
}


def _locate(name: str, root: Path) -> list[Path]:
    """The files of dataset ``name`` under ``root`` (train files first, test files last)."""
    if name in ("mnist", "fashion-mnist"):
        sub = "MNIST" if name == "mnist" else "FashionMNIST"
        candidates = [root, root / "raw", root / sub / "raw", root / name, root / name / "raw"]
        return _find_files(name, candidates, _IDX_FILES, gz=True)
    if name in _CIFAR:
        folder, files, _ = _CIFAR[name]
        return _find_files(name, [root / folder, root], files)
    return _find_files(name, [root, root / "svhn"], ["train_32x32.mat", "test_32x32.mat"])


def _read_idx_set(paths: list[Path], limit_train: int | None, limit_test: int | None):
    limits = [limit_train, limit_train, limit_test, limit_test]
    arrays = [read_idx(p, limit) for p, limit in zip(paths, limits)]
    for images, labels, path in ((arrays[0], arrays[1], paths[0]), (arrays[2], arrays[3], paths[2])):
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetError(f"{path}: image and label files do not match ({tuple(images.shape)} vs {len(labels)})")
    return arrays[0][:, None], arrays[1].long(), arrays[2][:, None], arrays[3].long()


def _read_cifar_set(paths: list[Path], key: str, limit_train: int | None, limit_test: int | None):
    xs, ys, left = [], [], limit_train
    for path in paths[:-1]:
        if left is not None and left <= 0:
            break
        x, y = read_cifar_batch(path, key, left)
        xs.append(x)
        ys.append(y)
        left = None if left is None else left - len(x)
    test_x, test_y = read_cifar_batch(paths[-1], key, limit_test)
    return torch.cat(xs), torch.cat(ys), test_x, test_y


def _read(name: str, paths: list[Path], limit_train: int | None, limit_test: int | None):
    if name in ("mnist", "fashion-mnist"):
        return _read_idx_set(paths, limit_train, limit_test)
    if name in _CIFAR:
        return _read_cifar_set(paths, _CIFAR[name][2], limit_train, limit_test)
    train_x, train_y = read_svhn_mat(paths[0])
    test_x, test_y = read_svhn_mat(paths[1])
    return train_x[:limit_train], train_y[:limit_train], test_x[:limit_test], test_y[:limit_test]


_CACHE: dict[tuple, tuple] = {}


def load_arrays(name: str, root: str | Path | None, *, limit_train: int | None = None,
                limit_test: int | None = None, download: bool = False) -> ArrayData:
    """Load a small dataset from ``root`` as tensors (downloading first if asked).

    Results are cached per process (keyed on the files' paths, sizes and times), so repeated runs
    on the same data (``--compare``, sweeps, tests) read the files once.

    Example:
        >>> import tempfile
        >>> from relu_surgery.data.synthetic import fake_idx_dataset
        >>> data = load_arrays("fashion-mnist", fake_idx_dataset(tempfile.mkdtemp(), train=8, test=4), limit_train=4)
        >>> tuple(data.train_x.shape), tuple(data.test_y.shape), data.spec.num_classes
        ((4, 1, 28, 28), (4,), 10)
    """
    spec = get_dataset_spec(name)
    if not spec.in_memory:
        raise DatasetError(f"{name} is not a tensor dataset; it is read with a DataLoader")
    if download:
        download_dataset(name, root)
    paths = _locate(name, _require_root(name, root))
    key = (name, (limit_train, limit_test), tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths))
    if key not in _CACHE:
        arrays = _read(name, paths, limit_train, limit_test)
        _check_labels(spec, arrays[1], arrays[3], paths[0].parent)
        if len(_CACHE) >= 4:
            _CACHE.clear()
        _CACHE[key] = arrays
    return ArrayData(spec, *_CACHE[key])


def _check_labels(spec: DatasetSpec, train_y: torch.Tensor, test_y: torch.Tensor, root: Path) -> None:
    for split, labels in (("train", train_y), ("test", test_y)):
        if len(labels) == 0:
            raise DatasetError(f"{spec.title} {split} split in {root} is empty")
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= spec.num_classes:
            raise DatasetError(
                f"{spec.title} {split} labels in {root} lie in [{low}, {high}], expected [0, {spec.num_classes - 1}]; "
                "the files are corrupt or belong to another dataset"
            )


def download_dataset(name: str, root: str | Path | None) -> None:
    """Fetch ``name`` into ``root`` with torchvision's downloaders (needs network).

    Example:
        >>> download_dataset("imagefolder", "/tmp")  # download_dataset("cifar10", "~/data") needs a network
        Traceback (most recent call last):
        ...
        relu_surgery.errors.DatasetError: imagefolder cannot be downloaded; put the files under --data-dir yourself
    """
    import torchvision.datasets as tvd

    if root is None:
        raise DatasetError(f"--download needs --data-dir to know where to put {name}")
    classes = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100, "mnist": tvd.MNIST,
               "fashion-mnist": tvd.FashionMNIST, "svhn": tvd.SVHN}
    if name not in classes:
        raise DatasetError(f"{name} cannot be downloaded; put the files under --data-dir yourself")
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    try:
        for split in (True, False):
            if name == "svhn":
                classes[name](str(path), split="train" if split else "test", download=True)
            else:
                classes[name](str(path), train=split, download=True)
    except ImportError as exc:
        raise DatasetError(f"downloading {name} needs an extra package: {exc}") from None
    except Exception as exc:  # urllib/http/checksum errors come in many types
        raise DatasetError(f"could not download {name} into {path}: {exc}") from None

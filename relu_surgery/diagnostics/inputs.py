"""Inputs for the probe: real images from a dataset on disk, or seeded random inputs.

Datasets are read with the training runner's readers (``relu_surgery.data.datasets``): the first
``count`` test images, scaled to [0, 1] and normalised with the dataset's mean and std, as the
papers train. ``images`` reads a folder of image files (PNG/JPEG, e.g. the CIFAR-10 samples).

Example:
    >>> x = probe_inputs(count=4, size=(3, 32, 32))
    >>> tuple(x.shape)
    (4, 3, 32, 32)
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import SurgeryError

__all__ = ["ProbeError", "probe_inputs", "check_fits", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class ProbeError(SurgeryError):
    """Bad probe input: unknown dataset, no images, inputs that do not fit the model.

    Example:
        >>> probe_inputs(count=0)
        Traceback (most recent call last):
        ...
        relu_surgery.diagnostics.inputs.ProbeError: the probe needs at least one input, got count=0
    """


def _image_folder(root: Path, count: int) -> tuple[torch.Tensor, str]:
    from PIL import Image  # noqa: PLC0415 (pillow comes with torchvision)
    from torchvision.transforms.functional import pil_to_tensor  # noqa: PLC0415

    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:count]
    if not files:
        raise ProbeError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {root}")
    arrays = []
    for f in files:
        try:
            with Image.open(f) as img:
                arrays.append(pil_to_tensor(img.convert("RGB")))
        except OSError as exc:
            raise ProbeError(f"{f}: cannot be read as an image ({exc})") from None
    if len({tuple(a.shape) for a in arrays}) != 1:
        raise ProbeError(f"images in {root} differ in size; the probe needs one size")
    x = torch.stack(arrays).float() / 255
    name = "cifar10" if x.shape[-2:] == (32, 32) else "imagefolder"
    return x, name


def _normalise(x: torch.Tensor, dataset: str) -> torch.Tensor:
    from ..data.datasets import get_dataset_spec  # noqa: PLC0415

    spec = get_dataset_spec(dataset)
    mean = torch.tensor(spec.mean[: x.shape[1]]).reshape(1, -1, 1, 1)
    std = torch.tensor(spec.std[: x.shape[1]]).reshape(1, -1, 1, 1)
    return (x - mean) / std


def probe_inputs(dataset: str | None = None, data_dir: str | Path | None = None, count: int = 16,
                 size: tuple[int, ...] | None = None, seed: int = 0) -> torch.Tensor:
    """``count`` probe inputs: dataset test images (normalised) or, without ``dataset``, seeded N(0, 1).

    ``dataset`` is one of the training runner's tensor datasets (cifar10, cifar100, svhn, mnist,
    fashion-mnist) or ``images`` (a folder of image files). ``size`` (no batch) is required for
    random inputs.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> folder = tempfile.mkdtemp()
        >>> for i in range(3):
        ...     Image.new("RGB", (32, 32), (80 * i, 0, 0)).save(f"{folder}/{i}.png")
        >>> tuple(probe_inputs("images", folder, count=2).shape)
        (2, 3, 32, 32)
    """
    if count < 1:
        raise ProbeError(f"the probe needs at least one input, got count={count}")
    if dataset is None:
        if size is None:
            raise ProbeError("random inputs need a size (pass --input-size C,H,W or a dataset)")
        return torch.randn((count, *size), generator=torch.Generator().manual_seed(seed))
    if data_dir is None:
        raise ProbeError(f"dataset {dataset!r} needs a data directory (--data-dir PATH)")
    root = Path(data_dir).expanduser()
    if dataset == "images":
        if not root.is_dir():
            raise ProbeError(f"image folder {root} does not exist")
        x, stats = _image_folder(root, count)
        return _normalise(x, stats)
    from ..data.datasets import load_arrays  # noqa: PLC0415

    data = load_arrays(dataset, root, limit_train=1, limit_test=count)
    return _normalise(data.test_x[:count].float() / 255, dataset)


def check_fits(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Raise :class:`ProbeError` when the first conv's input channels differ from the data's.

    Example:
        >>> check_fits(torch.nn.Conv2d(1, 4, 3), torch.zeros(2, 3, 8, 8))
        Traceback (most recent call last):
        ...
        relu_surgery.diagnostics.inputs.ProbeError: the model takes 1-channel input but the data has 3 channels ...
    """
    first = next((m for m in model.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d,
                                                                   torch.nn.Conv3d))), None)
    if first is not None and x.dim() >= 3 and first.in_channels != x.shape[1]:
        raise ProbeError(f"the model takes {first.in_channels}-channel input but the data has {x.shape[1]} "
                         "channels (build it with -a in_chans=... or pick another dataset)")

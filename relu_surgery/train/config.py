"""The resolved settings of one training run, as a dataclass that round-trips through JSON.

Example:
    >>> from relu_surgery.train.config import TrainConfig
    >>> cfg = TrainConfig(dataset="fashion-mnist", data_dir="data/fashion-mnist", epochs=2)
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..errors import DatasetError
from .errors import TrainConfigError

__all__ = ["TrainConfig", "DATASET_NAMES", "RUNTIME_FIELDS"]

DATASET_NAMES = ("cifar10", "cifar100", "svhn", "mnist", "fashion-mnist", "imagefolder")

#: Fields that may change when a run is resumed (they do not change the numbers it computes).
RUNTIME_FIELDS = frozenset(
    {"data_dir", "download", "device", "num_workers", "progress", "compile", "compile_backend", "save_every_steps"}
)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a training run computes, plus a few runtime switches.

    Learning-rate milestones are read in ``milestone_unit``: ``fraction`` of all iterations
    (0.5, 0.75 = the papers' /10 at 50% and 75%), ``epoch`` or ``iter`` (seed 003's 32k/48k).
    ``amp="auto"`` means bf16 autocast on CUDA and float32 elsewhere; ``channels_last=None`` means
    on for CUDA; ``amp="none"`` forces float32 there. ``compile_backend`` is handed to ``torch.compile``
    when ``compile`` is on (``"eager"`` checks the compiled path quickly on a CPU). ``limit_train``/``limit_test`` keep the first N samples (smoke tests).

    Example:
        >>> TrainConfig(dataset="cifar10", data_dir="~/data", epochs=164, warmup_iters=400).lr
        0.1
    """

    dataset: str
    data_dir: str | None = None
    download: bool = False
    epochs: int = 1
    batch_size: int = 128
    eval_batch_size: int = 512
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    schedule: str = "step"
    milestones: tuple[float, ...] = (0.5, 0.75)
    milestone_unit: str = "fraction"
    gamma: float = 0.1
    warmup_iters: int = 0
    warmup_lr: float = 0.01
    label_smoothing: float = 0.0
    seed: int = 0
    augment: bool | None = None
    limit_train: int | None = None
    limit_test: int | None = None
    image_size: int | None = None
    num_workers: int = 4
    device: str = "auto"
    amp: str = "auto"
    channels_last: bool | None = None
    compile: bool = False
    compile_backend: str = "inductor"
    save_every_steps: int = 0
    progress: bool | None = None
    preset: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(float(m) for m in self.milestones))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`TrainConfigError` (``DatasetError`` for an unknown dataset) for a bad setting."""
        if self.dataset not in DATASET_NAMES:
            raise DatasetError(
                f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASET_NAMES)}"
            )
        self._validate_numbers()
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.eval_batch_size >= 1, f"eval batch size must be >= 1, got {self.eval_batch_size}"),
            (self.schedule in ("step", "cosine", "constant"),
             f"schedule must be step, cosine or constant, got {self.schedule!r}"),
            (self.milestone_unit in ("fraction", "epoch", "iter"),
             f"milestone unit must be fraction, epoch or iter, got {self.milestone_unit!r}"),
            (self.amp in ("auto", "bf16", "none"), f"amp must be auto, bf16 or none, got {self.amp!r}"),
            (isinstance(self.compile_backend, str) and bool(self.compile_backend),
             f"compile backend must be a backend name, got {self.compile_backend!r}"),
            (self.warmup_iters >= 0, f"warm-up iterations must be >= 0, got {self.warmup_iters}"),
            (self.save_every_steps >= 0, "save-every-steps must be >= 0"),
            (self.limit_train is None or self.limit_train >= 1, "limit-train must be >= 1"),
            (self.limit_test is None or self.limit_test >= 1, "limit-test must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainConfigError(message)
        if self.milestone_unit == "fraction" and any(not 0 < m <= 1 for m in self.milestones):
            raise TrainConfigError(f"fraction milestones must lie in (0, 1], got {self.milestones}")

    #: (field, label, low, high, low open, high open): the interval each float setting must lie in.
    _RANGES = (("lr", "learning rate", 0.0, math.inf, True, True),
               ("momentum", "momentum", 0.0, 1.0, False, True),
               ("weight_decay", "weight decay", 0.0, math.inf, False, True),
               ("gamma", "gamma (the learning-rate decay factor)", 0.0, 1.0, True, False),
               ("warmup_lr", "warm-up learning rate", 0.0, math.inf, True, True),
               ("label_smoothing", "label smoothing", 0.0, 1.0, False, True))

    def _validate_numbers(self) -> None:
        """Every float setting is a finite number inside its interval (inf and nan are refused)."""
        for name, label, low, high, low_open, high_open in self._RANGES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise TrainConfigError(f"{label} must be a finite number, got {value!r}")
            if value < low or value > high or (low_open and value == low) or (high_open and value == high):
                interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
                raise TrainConfigError(f"{label} must be in {interval}, got {value:g}")
        if any(not math.isfinite(m) for m in self.milestones):
            raise TrainConfigError(f"milestones must be finite numbers, got {self.milestones}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        out = dataclasses.asdict(self)
        out["milestones"] = list(self.milestones)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Rebuild a config from :meth:`to_dict` output; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise TrainConfigError(f"unknown training setting(s) in config: {', '.join(unknown)}")
        data = dict(data)
        if "milestones" in data:
            data["milestones"] = tuple(data["milestones"])
        return cls(**data)

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def numeric_changes(self, other: "TrainConfig") -> list[str]:
        """Names of the fields that differ from ``other`` and change what is computed."""
        mine, theirs = self.to_dict(), other.to_dict()
        return sorted(k for k in mine if k not in RUNTIME_FIELDS and mine[k] != theirs[k])

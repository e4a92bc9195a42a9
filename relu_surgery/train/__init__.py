"""Training runner: retrain or fine-tune original and rewritten models, compare them, sweep settings.

The public names load lazily, so ``relu-surgery --help`` does not import torch through this package.

Example:
    >>> import tempfile
    >>> import relu_surgery.train as rt
    >>> from relu_surgery.train.tiny import smoke_config, tiny_cnn
    >>> cfg = smoke_config()  # a fake Fashion-MNIST on disk; use TrainConfig(dataset=..., data_dir=...) for real data
    >>> result = rt.run_training(tiny_cnn(in_chans=1), cfg, tempfile.mkdtemp() + "/demo")
    >>> sorted(result.final)[:3]
    ['epoch', 'epoch_seconds', 'eval_seconds']
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "TrainConfig", "run_training", "RunResult", "preset_values", "list_presets", "DATASETS", "load_arrays",
    "ModelSpec", "RewriteSpec", "build_model", "resolve_model", "apply_rewrites",
    "run_compare", "run_sweep", "parse_sweep", "CompareResult", "SweepResult",
    "DatasetError", "CheckpointError", "TrainConfigError", "TrainingInterrupted", "train_command",
    "linearize", "train_or_reuse",
]

_WHERE = {
    "TrainConfig": "config", "run_training": "runner", "RunResult": "runner", "preset_values": "presets",
    "list_presets": "presets", "DATASETS": ".data.datasets", "load_arrays": ".data.datasets", "ModelSpec": "models",
    "RewriteSpec": "models", "build_model": "models", "resolve_model": "models", "apply_rewrites": "models",
    "run_compare": "compare", "run_sweep": "compare", "parse_sweep": "compare", "CompareResult": "compare",
    "SweepResult": "compare", "DatasetError": "errors", "CheckpointError": "errors",
    "TrainConfigError": "errors", "TrainingInterrupted": "errors", "train_command": "command",
    "linearize": "linearize", "train_or_reuse": "linearize",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'relu_surgery.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

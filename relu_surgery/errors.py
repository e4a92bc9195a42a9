"""User-facing errors: each carries one clear line for the CLI to print.

Example:
    >>> from relu_surgery.errors import SurgeryError
    >>> str(SurgeryError("proportion must be in (0, 1], got 1.5"))
    'proportion must be in (0, 1], got 1.5'
"""

from __future__ import annotations

__all__ = [
    "SurgeryError",
    "ModelNotFoundError",
    "SelectionError",
    "NoBlocksError",
    "WeightsError",
    "TraceError",
    "OutputExistsError",
    "DatasetError",
]


class SurgeryError(Exception):
    """Base class for errors caused by user input; the CLI prints them as one line, exit code 2."""


class ModelNotFoundError(SurgeryError):
    """A model name that no source (zoo, timm, torchvision, module:callable, directory) knows."""


class SelectionError(SurgeryError):
    """Bad block / site selection: proportion outside (0, 1], unknown block, bad location."""


class NoBlocksError(SurgeryError):
    """Block discovery found nothing to rewrite."""


class WeightsError(SurgeryError):
    """A checkpoint that is missing, unreadable, unsafe to load or does not fit the model."""


class TraceError(SurgeryError):
    """A model torch.fx cannot trace even with its failing parts made leaves."""


class OutputExistsError(SurgeryError):
    """The output directory already exists and is not empty."""


class DatasetError(SurgeryError):
    """A dataset that is missing, incomplete, corrupt, unknown or cannot be downloaded."""

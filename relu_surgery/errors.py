"""The two kinds of failure: the user's (:class:`SurgeryError`) and relu_surgery's own (:class:`InternalError`).

A :class:`SurgeryError` is caused by the input (a model name, a setting, a file): the CLI prints
its one line and exits with code 2. An :class:`InternalError` means relu_surgery contradicted
itself (a plan that does not fit the graph it was made for, a rewritten graph that fails its
lint): the CLI prints ``internal error in relu_surgery (please report): ...`` and exits with
code 1, with the traceback under ``--debug`` or ``RELU_SURGERY_DEBUG=1``.

Example:
    >>> from relu_surgery.errors import SurgeryError
    >>> str(SurgeryError("proportion must be in (0, 1], got 1.5"))
    'proportion must be in (0, 1], got 1.5'
    >>> issubclass(InternalError, SurgeryError)
    False
"""

from __future__ import annotations

__all__ = [
    "InternalError",
    "SurgeryError",
    "ModelNotFoundError",
    "SelectionError",
    "NoBlocksError",
    "WeightsError",
    "TraceError",
    "OutputExistsError",
    "DatasetError",
]


class InternalError(Exception):
    """relu_surgery broke its own rules (a bug to report); not caused by the user's input.

    Example:
        >>> str(InternalError("plan names node 'relu_9', which the graph does not have"))
        "plan names node 'relu_9', which the graph does not have"
    """


class SurgeryError(Exception):
    """Base class for errors caused by user input; the CLI prints them as one line, exit code 2.

    Example:
        >>> isinstance(SelectionError("bad location"), SurgeryError)
        True
    """


class ModelNotFoundError(SurgeryError):
    """A model name that no source (zoo, timm, torchvision, module:callable, directory) knows.

    Example:
        >>> isinstance(ModelNotFoundError("unknown model 'resnet15'"), SurgeryError)
        True
    """


class SelectionError(SurgeryError):
    """Bad block / site selection: proportion outside (0, 1], unknown block, bad location.

    Example:
        >>> isinstance(SelectionError("proportion must be in (0, 1], got 2"), SurgeryError)
        True
    """


class NoBlocksError(SurgeryError):
    """Block discovery found nothing to rewrite.

    Example:
        >>> isinstance(NoBlocksError("no blocks found in Linear"), SurgeryError)
        True
    """


class WeightsError(SurgeryError):
    """A checkpoint that is missing, unreadable, unsafe to load or does not fit the model.

    Example:
        >>> isinstance(WeightsError("weights file not found: w.pt"), SurgeryError)
        True
    """


class TraceError(SurgeryError):
    """A model torch.fx cannot trace even with its failing parts made leaves.

    Example:
        >>> isinstance(TraceError("cannot trace SSD"), SurgeryError)
        True
    """


class OutputExistsError(SurgeryError):
    """The output directory already exists and is not empty.

    Example:
        >>> isinstance(OutputExistsError("output directory runs/x exists"), SurgeryError)
        True
    """


class DatasetError(SurgeryError):
    """A dataset that is missing, incomplete, corrupt, unknown or cannot be downloaded.

    Example:
        >>> isinstance(DatasetError("no fashion-mnist under data/"), SurgeryError)
        True
    """

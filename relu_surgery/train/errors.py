"""Errors of the training runner; all are :class:`~relu_surgery.errors.SurgeryError` (one CLI line, exit 2).

Example:
    >>> from relu_surgery.train.errors import DatasetError
    >>> from ..errors import DatasetError, SurgeryError
    >>> issubclass(DatasetError, SurgeryError)
    True
"""

from __future__ import annotations

from ..errors import DatasetError, SurgeryError

__all__ = ["DatasetError", "CheckpointError", "TrainConfigError", "TrainingInterrupted", "TrainingDiverged"]


class CheckpointError(SurgeryError):
    """A run directory without a usable checkpoint, or one that does not fit the model or config.

    Example:
        >>> isinstance(CheckpointError("no checkpoint at runs/x"), SurgeryError)
        True
    """


class TrainConfigError(SurgeryError):
    """Training options that are invalid or contradict each other.

    Example:
        >>> str(TrainConfigError("batch size 100 does not split evenly over 3 processes"))
        'batch size 100 does not split evenly over 3 processes'
    """


class TrainingInterrupted(SurgeryError):
    """Training stopped on SIGTERM/SIGINT after saving a resumable checkpoint.

    Example:
        >>> str(TrainingInterrupted("runs/x", 3, 10)).split(";")[0]
        'training interrupted at epoch 3, step 10'
    """

    def __init__(self, run_dir: str, epoch: int, step: int) -> None:
        super().__init__(
            f"training interrupted at epoch {epoch}, step {step}; checkpoint saved. "
            f"Continue with: relu-surgery train --resume {run_dir}"
        )
        self.run_dir, self.epoch, self.step = run_dir, epoch, step


class TrainingDiverged(SurgeryError):
    """The training loss became NaN or infinite; the run stops there (1-based epoch and step).

    Example:
        >>> err = TrainingDiverged(float("inf"), epoch=2, step=7, lr=0.5)
        >>> isinstance(err, SurgeryError), (err.epoch, err.step), str(err).split(";")[0]
        (True, (2, 7), 'the training loss became non-finite (inf) at epoch 2, step 7 (learning rate 0.5)')
    """

    def __init__(self, loss: float, epoch: int, step: int, lr: float) -> None:
        super().__init__(
            f"the training loss became non-finite ({loss}) at epoch {epoch}, step {step} (learning rate {lr:g}); "
            "the run is stopped: lower --lr, or check the data and the model"
        )
        self.loss, self.epoch, self.step = loss, epoch, step

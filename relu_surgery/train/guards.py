"""Guards of a training loop: stop on SIGTERM/SIGINT after the current step, stop at a non-finite loss.

Example:
    >>> import torch
    >>> guard = LossGuard(lambda epoch, step: 0.1)
    >>> guard.check(torch.tensor(0.5), epoch=1, step=1)
    >>> guard.check(torch.tensor(float("nan")), epoch=1, step=2)
    >>> guard.flush()
    Traceback (most recent call last):
    ...
    relu_surgery.train.errors.TrainingDiverged: the training loss became non-finite (nan) at epoch 1, step 2 \
(learning rate 0.1); the run is stopped: lower --lr, or check the data and the model
"""

from __future__ import annotations

import signal
import threading
from typing import Callable

import torch

from .errors import TrainingDiverged

__all__ = ["StopFlag", "LossGuard"]


class StopFlag:
    """SIGTERM/SIGINT handler that asks the loop to checkpoint and stop (main thread, one process).

    Example:
        >>> before = signal.getsignal(signal.SIGTERM)
        >>> with StopFlag(enabled=True) as flag:
        ...     signal.raise_signal(signal.SIGTERM)  # what `kill PID` sends: noted, the process goes on
        ...     flag.requested
        True
        >>> signal.getsignal(signal.SIGTERM) is before  # the previous handler is back
        True
    """

    def __init__(self, enabled: bool) -> None:
        self.requested, self.enabled, self.previous = False, enabled, {}

    def __enter__(self) -> "StopFlag":
        if self.enabled and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second signal: stop now, without waiting for the step to end
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class LossGuard:
    """Stops the run at the first non-finite training loss (:class:`TrainingDiverged`, naming epoch and step).

    Each step's loss is checked when the next step has been queued (or at :meth:`flush`), so the
    check does not make the loop wait for the device: by then that loss is computed.
    ``lr_at(epoch, step)`` (both 1-based) gives the learning rate the message names.

    Example:
        >>> guard = LossGuard(lambda epoch, step: 0.01)
        >>> guard.check(torch.tensor(float("inf")), epoch=3, step=1)  # remembered, not checked yet
        >>> try:
        ...     guard.check(torch.tensor(0.2), epoch=3, step=2)  # checks step 1's loss
        ... except TrainingDiverged as err:
        ...     print(err.epoch, err.step, err.loss)
        3 1 inf
    """

    def __init__(self, lr_at: Callable[[int, int], float]) -> None:
        self.lr_at, self.pending = lr_at, None

    def check(self, loss: torch.Tensor, epoch: int, step: int) -> None:
        """Remember this step's loss; check the previous one."""
        self.flush()
        self.pending = (loss.detach(), epoch, step)

    def flush(self) -> None:
        """Check the remembered loss now (before a checkpoint, at the end of an epoch)."""
        if self.pending is None:
            return
        loss, epoch, step = self.pending
        self.pending = None
        if not bool(torch.isfinite(loss)):
            raise TrainingDiverged(float(loss), epoch, step, self.lr_at(epoch, step))

"""Progress display of the training loop: rich progress bars on a terminal, one line per epoch.

The loop talks to a :class:`Reporter`; the silent base class is used on ranks other than 0 and
with ``progress=False``. Bars appear only when stdout is a terminal (or ``progress=True``); the
per-epoch summary line is printed in both cases.

Example:
    >>> reporter = make_reporter(progress=False, is_main=True)
    >>> reporter.epoch_end({"epoch": 1})  # silent
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["Reporter", "RichReporter", "make_reporter", "format_row"]

LOSS_EVERY = 20  # steps between loss read-outs for the bar (each one syncs the device)


def format_row(row: dict[str, Any], epochs: int) -> str:
    """One line summarising an epoch's metrics row.

    Example:
        >>> row = {"epoch": 1, "lr": 0.1, "train_loss": 0.5, "train_acc": 80.0, "test_loss": 0.6, "test_top1_err": 21.0,
        ...        "test_top5_err": 2.0, "samples_per_s": 1000.0, "epoch_seconds": 12.3}
        >>> line = format_row(row, epochs=10)
        >>> line.startswith("epoch   1/10"), "top-1 err 21.00%" in line
        (True, True)
    """
    return (
        f"epoch {row['epoch']:>3}/{epochs}  lr {row['lr']:.4g}  "
        f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.2f}%  "
        f"test loss {row['test_loss']:.4f} top-1 err {row['test_top1_err']:.2f}% "
        f"top-5 err {row['test_top5_err']:.2f}%  {row['samples_per_s']:.0f} samples/s  {row['epoch_seconds']:.1f}s"
    )


class Reporter:
    """Silent reporter; subclasses draw progress.

    Example:
        >>> Reporter().message("saved")  # silent: prints nothing
    """

    def start(self, title: str, epochs: int, steps_per_epoch: int, start_epoch: int, start_step: int) -> None:
        """The run begins (or resumes) at ``start_epoch`` (0-based), step ``start_step``."""

    def epoch_start(self, epoch: int, start_step: int) -> None:
        """Epoch ``epoch`` (0-based) starts at ``start_step``."""

    def step(self, step: int, loss: Callable[[], float]) -> None:
        """Step ``step`` (0-based, within the epoch) finished; ``loss()`` syncs to read its loss."""

    def epoch_end(self, row: dict[str, Any]) -> None:
        """An epoch's metrics row is final."""

    def message(self, text: str) -> None:
        """A one-line note (resumed from ..., saved ...)."""

    def close(self) -> None:
        """The run is over (normally or not)."""


class RichReporter(Reporter):
    """Rich progress bars (overall and current epoch) plus one printed line per epoch.

    Example:
        >>> reporter = RichReporter(bars=False)
        >>> reporter.message("resumed from epoch 3")
        resumed from epoch 3
    """

    def __init__(self, bars: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console()
        self.bars = bars
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=self.console, disable=not bars, transient=False,
        )
        self.run_task = self.epoch_task = None
        self.epochs, self.label = 0, "epoch"

    def start(self, title, epochs, steps_per_epoch, start_epoch, start_step):
        self.epochs, self.steps = epochs, steps_per_epoch
        self.progress.start()
        self.run_task = self.progress.add_task(title, total=epochs, completed=start_epoch)
        self.epoch_task = self.progress.add_task("epoch", total=steps_per_epoch, completed=start_step)

    def epoch_start(self, epoch, start_step):
        self.label = f"epoch {epoch + 1}/{self.epochs}"
        self.progress.update(self.epoch_task, description=self.label, completed=start_step)

    def step(self, step, loss):
        if self.bars:
            fields = {"description": f"{self.label}  loss {loss():.4f}"} if step % LOSS_EVERY == 0 else {}
            self.progress.update(self.epoch_task, completed=step + 1, **fields)

    def epoch_end(self, row):
        self.progress.update(self.run_task, completed=row["epoch"])
        self.console.print(format_row(row, self.epochs), highlight=False)

    def message(self, text):
        self.console.print(text, highlight=False)

    def close(self):
        self.progress.stop()


def make_reporter(progress: bool | None, is_main: bool) -> Reporter:
    """The reporter for this rank: silent off rank 0 or with ``progress=False``.

    Example:
        >>> type(make_reporter(progress=True, is_main=False)).__name__, type(make_reporter(None, True)).__name__
        ('Reporter', 'RichReporter')
    """
    if not is_main or progress is False:
        return Reporter()
    import sys

    return RichReporter(bars=bool(progress) or sys.stdout.isatty())

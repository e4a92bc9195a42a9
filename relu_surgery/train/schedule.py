"""Learning-rate schedules as a pure function of the global iteration (exact on resume).

``step``: ``lr * gamma ** (milestones passed)``; ``cosine``: half-cosine from ``lr`` to 0 over the
run; ``constant``. A constant warm-up (``warmup_lr`` for the first ``warmup_iters`` iterations, as
seed 003 does for its 110/1001-layer nets) overrides the first iterations of any schedule.

Example:
    >>> from relu_surgery.train.config import TrainConfig
    >>> cfg = TrainConfig(dataset="cifar10", epochs=164, warmup_iters=400)
    >>> sched = LRSchedule(cfg, steps_per_epoch=390)
    >>> sched.milestone_iters, sched.lr_at(0), sched.lr_at(400), sched.lr_at(32000)
    ((31980, 47970), 0.01, 0.1, 0.01)
"""

from __future__ import annotations

import math

from .config import TrainConfig

__all__ = ["LRSchedule"]


class LRSchedule:
    """Maps a global iteration to a learning rate; ``state_dict`` records where the run is.

    Example:
        >>> cfg = TrainConfig(dataset="cifar10", lr=0.1, epochs=4, milestones=(0.5, 0.75), warmup_iters=0)
        >>> schedule = LRSchedule(cfg, steps_per_epoch=10)
        >>> [schedule.lr_at(i) for i in (0, 20, 30)]
        [0.1, 0.01, 0.001]
    """

    def __init__(self, config: TrainConfig, steps_per_epoch: int) -> None:
        self.config = config
        self.total_iters = config.epochs * steps_per_epoch
        unit = {"fraction": self.total_iters, "epoch": steps_per_epoch, "iter": 1}[config.milestone_unit]
        self.milestone_iters = tuple(int(round(m * unit)) for m in config.milestones)
        self.iteration = 0

    def lr_at(self, iteration: int) -> float:
        """The learning rate used for the update of global iteration ``iteration`` (0-based)."""
        cfg = self.config
        if iteration < cfg.warmup_iters:
            return cfg.warmup_lr
        if cfg.schedule == "constant":
            return cfg.lr
        if cfg.schedule == "cosine":
            span = max(1, self.total_iters - cfg.warmup_iters)
            progress = min(1.0, (iteration - cfg.warmup_iters) / span)
            return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * progress))
        passed = sum(iteration >= m for m in self.milestone_iters)
        return float(f"{cfg.lr * cfg.gamma ** passed:.12g}")  # 0.01, not 0.010000000000000002

    def apply(self, optimizer, iteration: int) -> float:
        """Set every parameter group's lr for ``iteration``; returns it."""
        lr = self.lr_at(iteration)
        self.iteration = iteration
        for group in optimizer.param_groups:
            if group["lr"] != lr:
                group["lr"] = lr
        return lr

    def state_dict(self) -> dict:
        """The position and the resolved milestones (checked on resume)."""
        return {"iteration": self.iteration, "total_iters": self.total_iters,
                "milestone_iters": list(self.milestone_iters)}

    def load_state_dict(self, state: dict) -> None:
        """Restore the position saved by :meth:`state_dict`."""
        self.iteration = int(state["iteration"])

"""The model side of training: device placement, DDP, ``torch.compile``, autocast, one step, evaluation.

GPU first: on CUDA the model runs in channels_last with bf16 autocast and a fused SGD; on CPU the
same code runs in float32 (``amp="bf16"`` forces bf16 autocast there too).

Example:
    >>> import torch, torch.nn as nn
    >>> from relu_surgery.train.config import TrainConfig
    >>> from relu_surgery.train.ddp import init_distributed
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> engine = Engine(model, TrainConfig(dataset="mnist"), init_distributed("cpu"))
    >>> loss, logits = engine.train_step(torch.randn(8, 1, 2, 2), torch.randint(0, 3, (8,)))
    >>> logits.shape
    torch.Size([8, 3])
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import TrainConfig
from .ddp import DistEnv, all_reduce_sum
from .metrics import topk_correct

__all__ = ["Engine", "build_optimizer", "amp_dtype", "logits_of"]


def amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 for ``amp="bf16"`` or ``"auto"`` on CUDA; ``None`` (float32) otherwise.

    Example:
        >>> cfg = TrainConfig(dataset="mnist", amp="auto")
        >>> amp_dtype(cfg, torch.device("cpu")), amp_dtype(cfg, torch.device("cuda"))
        (None, torch.bfloat16)
    """
    if config.amp == "bf16" or (config.amp == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def build_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """SGD with momentum and weight decay on every trainable parameter (fused on CUDA).

    Example:
        >>> opt = build_optimizer(nn.Linear(2, 2), TrainConfig(dataset="mnist", lr=0.05), torch.device("cpu"))
        >>> type(opt).__name__, opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]
        ('SGD', 0.05, 0.9)
    """
    params = [p for p in model.parameters() if p.requires_grad]
    kwargs = dict(lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                  nesterov=config.nesterov)
    if device.type == "cuda":
        try:
            return torch.optim.SGD(params, fused=True, **kwargs)
        except (TypeError, RuntimeError):
            pass
    return torch.optim.SGD(params, **kwargs)


def logits_of(output) -> torch.Tensor:
    """The logits of a model output (tensor, tuple/namedtuple with logits first, or ``.logits``).

    Example:
        >>> logits_of((torch.ones(1, 3), "aux")).shape
        torch.Size([1, 3])
    """
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits
    return output[0]


class Engine:
    """Holds the model as trained (maybe DDP + compiled) and the raw module whose state is saved.

    Example:
        >>> from relu_surgery.train.ddp import init_distributed
        >>> engine = Engine(nn.Linear(4, 3), TrainConfig(dataset="mnist", lr=0.1), init_distributed("cpu"))
        >>> loss, logits = engine.train_step(torch.randn(8, 4), torch.randint(0, 3, (8,)))
        >>> tuple(logits.shape), sorted(engine.evaluate([(torch.randn(4, 4), torch.tensor([0, 1, 2, 0]))]))[:2]
        ((8, 3), ['test_acc', 'test_loss'])
    """

    def __init__(self, model: nn.Module, config: TrainConfig, env: DistEnv) -> None:
        self.config, self.env, self.device = config, env, env.device
        self.channels_last = config.channels_last if config.channels_last is not None else env.device.type == "cuda"
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model = model.to(env.device, memory_format=self.memory_format)
        self.optimizer = build_optimizer(self.model, config, env.device)
        self.dtype = amp_dtype(config, env.device)
        self.train_model, self.eval_model = self._wrap()
        if env.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.set_float32_matmul_precision("high")

    def _wrap(self) -> tuple[nn.Module, nn.Module]:
        train_model: nn.Module = self.model
        if self.env.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            train_model = DDP(self.model, device_ids=ids)
        if not self.config.compile:
            return train_model, self.model
        backend = self.config.compile_backend
        compiled = torch.compile(train_model, backend=backend)
        return compiled, (compiled if not self.env.distributed else torch.compile(self.model, backend=backend))

    def autocast(self):
        """The autocast context of this run (a no-op in float32)."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def train_step(self, x: torch.Tensor, y: torch.Tensor, extra_loss=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, backward and SGD update on one (local) batch; returns (cross-entropy, logits).

        ``extra_loss()`` (a training hook's term, see :mod:`relu_surgery.train.hooks`) is added to
        the loss that is backpropagated, not to the one returned.
        """
        with self.autocast():
            logits = logits_of(self.train_model(x))
            loss = F.cross_entropy(logits, y, label_smoothing=self.config.label_smoothing)
            extra = extra_loss() if extra_loss is not None else None
        self.optimizer.zero_grad(set_to_none=True)
        (loss if extra is None else loss + extra).backward()
        self.optimizer.step()
        return loss, logits

    def sync_buffers(self) -> None:
        """Give every rank rank 0's buffers (BatchNorm statistics drift apart per rank)."""
        if self.env.distributed:
            import torch.distributed as dist

            for buffer in self.model.buffers():
                dist.broadcast(buffer, src=0)

    @torch.no_grad()
    def evaluate(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
        """Loss and top-1/top-5 error (%) over all ranks' shards of the test set."""
        self.sync_buffers()
        self.model.eval()
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)
        with self.autocast():
            for x, y in batches:
                logits = logits_of(self.eval_model(x)).float()
                top1, top5 = topk_correct(logits, y)
                loss = F.cross_entropy(logits, y, reduction="sum")
                sums += torch.stack([loss.double(), top1.double(), top5.double(), sums.new_tensor(len(y))])
        self.model.train()
        loss_sum, top1, top5, count = all_reduce_sum(sums, self.env).tolist()
        return {"test_loss": loss_sum / count, "test_acc": 100.0 * top1 / count,
                "test_top1_err": 100.0 - 100.0 * top1 / count, "test_top5_err": 100.0 - 100.0 * top5 / count}

    def check_output(self, in_chans: int, image_size: int, num_classes: int) -> None:
        """One eval-mode forward on zeros: the model must give ``[N, num_classes]`` logits."""
        from .errors import TrainConfigError

        was_training = self.model.training
        self.model.eval()
        x = torch.zeros(2, in_chans, image_size, image_size, device=self.device)
        try:
            with torch.no_grad(), self.autocast():
                out = logits_of(self.model(x.contiguous(memory_format=self.memory_format)))
        except RuntimeError as exc:
            raise TrainConfigError(
                f"the model does not accept {in_chans}x{image_size}x{image_size} inputs: {str(exc).splitlines()[0]}"
            ) from None
        finally:
            self.model.train(was_training)
        if out.ndim != 2 or out.shape[1] != num_classes:
            raise TrainConfigError(
                f"the model outputs shape {tuple(out.shape)} but the dataset has {num_classes} classes; "
                f"build it with num_classes={num_classes}"
            )

"""The gradient-correlation study of seed 000, Sec. 3.3 and Fig. 4 (after Balduzzi et al.'s shattered gradients).

A network f: R -> R of ``depth`` residual modules: a fully connected input layer (1 -> width, ReLU),
then modules ``x -> ReLU(x + LN(FC(ReLU(LN(FC(x))))))`` (the simple residual module of seed 000
Fig. 2(b) with conv -> fully connected and BN -> LayerNorm), then a fully connected output layer
(width -> 1). Weights are He-initialised (normal, fan-in); biases are drawn like the weight of an
extra constant input (N(0, 2/fan_in)) so the units switch at different inputs. The EraseReLU twin is
the same network with the same weights and the ReLU after every add removed (what
:func:`relu_surgery.erase` makes of it; a test checks the two agree).

For each depth and both networks, at ``points`` inputs evenly spaced on [-2, 2]:

- ``gradients``: df/dx at each input;
- ``covariance``: C_ij = (g_i - mean g)(g_j - mean g), averaged over ``runs`` initialisations;
- ``activation levels``: for each unit of the last hidden layer (the input of the output layer),
  the fraction of inputs where it is above zero ("activated"). With ReLU this distribution
  becomes bimodal (units always on or always off) as depth grows; with EraseReLU it does not.

Summaries: ``neighbour_correlation`` (Pearson correlation of g_i and g_{i+1}: near 1 for smooth
gradients, near 0 for white noise, the "shattering"), ``correlation_length`` (the input distance
at which that correlation falls below 0.5: shorter means more shattered), ``bimodal_fraction`` (units active on fewer
than 5% or more than 95% of inputs), ``mean_level``.

Example:
    >>> study = gradient_study(depths=(2,), points=50, width=8)
    >>> [(r.depth, r.variant) for r in study.runs]
    [(2, 'ReLU'), (2, 'EraseReLU')]
    >>> study.runs[0].gradients.shape, study.runs[0].covariance.shape
    (torch.Size([50]), torch.Size([50, 50]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn

__all__ = ["ScalarResNet", "GradientRun", "GradientStudy", "gradient_study", "gradient_covariance",
           "neighbour_correlation", "autocorrelation", "correlation_length", "activation_levels",
           "DEFAULT_DEPTHS"]

DEFAULT_DEPTHS = (2, 10, 50, 300)


class ResidualFC(nn.Module):
    """x -> ReLU(x + LN(FC(ReLU(LN(FC(x)))))): seed 000's simple residual module, fully connected.

    ``erased=True`` drops the ReLU after the addition (EraseReLU).
    """

    def __init__(self, width: int, erased: bool = False):
        super().__init__()
        self.fc1, self.ln1, self.relu1 = nn.Linear(width, width), nn.LayerNorm(width), nn.ReLU()
        self.fc2, self.ln2 = nn.Linear(width, width), nn.LayerNorm(width)
        self.relu2 = nn.Identity() if erased else nn.ReLU()

    def forward(self, x):
        out = self.ln2(self.fc2(self.relu1(self.ln1(self.fc1(x)))))
        return self.relu2(out + x)


class ScalarResNet(nn.Module):
    """f: R -> R with ``depth`` :class:`ResidualFC` modules of ``width`` units, He-initialised.

    ``erased=True`` builds the EraseReLU twin (the same parameters, so ``load_state_dict`` of the
    ReLU network gives the same weights; it computes what :func:`relu_surgery.erase` makes of it).

    Example:
        >>> ScalarResNet(depth=3, width=4)(torch.zeros(5, 1)).shape
        torch.Size([5, 1])
    """

    def __init__(self, depth: int, width: int = 200, generator: torch.Generator | None = None,
                 erased: bool = False):
        super().__init__()
        self.first, self.act = nn.Linear(1, width), nn.ReLU()
        self.blocks = nn.Sequential(*[ResidualFC(width, erased) for _ in range(depth)])
        self.last = nn.Linear(width, 1)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                std = math.sqrt(2.0 / m.in_features)
                with torch.no_grad():
                    m.weight.normal_(0.0, std, generator=generator)
                    m.bias.normal_(0.0, std, generator=generator)

    def forward(self, x):
        return self.last(self.blocks(self.act(self.first(x))))


def gradient_covariance(gradients: torch.Tensor) -> torch.Tensor:
    """C_ij = (g_i - mean g)(g_j - mean g) for ``[points]``, averaged over rows for ``[runs, points]``.

    Example:
        >>> gradient_covariance(torch.tensor([1.0, 2.0, 3.0])).abs().tolist()  # signs: [[+, 0, -], [0, 0, 0], [-, 0, +]]
        [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 1.0]]
    """
    g = gradients.reshape(-1, gradients.shape[-1]).double()
    g = g - g.mean(dim=1, keepdim=True)
    return (g.T @ g / g.shape[0]).float()


def neighbour_correlation(gradients: torch.Tensor) -> float:
    """Pearson correlation between g_i and g_{i+1} along the input grid (mean over runs).

    Example:
        >>> round(neighbour_correlation(torch.tensor([1.0, -1.0, 1.0, -1.0])), 6)
        -1.0
    """
    return autocorrelation(gradients, 1)


def autocorrelation(gradients: torch.Tensor, lag: int) -> float:
    """Pearson correlation between g_i and g_{i+lag} along the input grid (mean over runs).

    Example:
        >>> round(autocorrelation(torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0]), 2), 6)
        1.0
    """
    g = gradients.reshape(-1, gradients.shape[-1]).double()
    values = []
    for row in g:
        a, b = row[:-lag] - row[:-lag].mean(), row[lag:] - row[lag:].mean()
        denom = float(a.norm() * b.norm())
        values.append(float(a @ b) / denom if denom > 0 else math.nan)
    return float(sum(values) / len(values))


def correlation_length(gradients: torch.Tensor, spacing: float) -> float:
    """The input distance over which gradients stay correlated: the first lag (times ``spacing``)
    where :func:`autocorrelation` drops below 0.5; the whole grid when it never does.

    Example:
        >>> correlation_length(torch.tensor([1.0, -1.0, 1.0, -1.0]), spacing=0.5)
        0.5
    """
    points = gradients.shape[-1]
    for lag in range(1, points - 1):
        if not autocorrelation(gradients, lag) >= 0.5:
            return lag * spacing
    return (points - 1) * spacing


def activation_levels(hidden: torch.Tensor) -> torch.Tensor:
    """Fraction of inputs (rows) on which each unit (column) is above zero.

    Example:
        >>> activation_levels(torch.tensor([[1.0, -1.0], [2.0, -2.0], [-1.0, -3.0], [0.5, -1.0]])).tolist()
        [0.75, 0.0]
    """
    return (hidden > 0).double().mean(dim=0).float()


@dataclass(frozen=True)
class GradientRun:
    """One network of the study: depth, ``ReLU`` or ``EraseReLU``, and what was measured.

    Example:
        >>> run = gradient_study(depths=(2,), points=16, width=4).runs[1]
        >>> run.variant, tuple(run.gradients.shape), tuple(run.covariance.shape)
        ('EraseReLU', (16,), (16, 16))
    """

    depth: int
    variant: str
    inputs: torch.Tensor
    gradients: torch.Tensor
    covariance: torch.Tensor
    levels: torch.Tensor

    @property
    def neighbour_correlation(self) -> float:
        return neighbour_correlation(self.gradients)

    @property
    def correlation_length(self) -> float:
        spacing = float(self.inputs[1] - self.inputs[0]) if len(self.inputs) > 1 else 0.0
        return correlation_length(self.gradients, spacing)

    @property
    def bimodal_fraction(self) -> float:
        return float(((self.levels < 0.05) | (self.levels > 0.95)).float().mean())

    def to_dict(self) -> dict:
        return {"depth": self.depth, "variant": self.variant,
                "neighbour_correlation": self.neighbour_correlation,
                "correlation_length": self.correlation_length,
                "gradient_std": float(self.gradients.std()), "mean_level": float(self.levels.mean()),
                "bimodal_fraction": self.bimodal_fraction}


@dataclass
class GradientStudy:
    """All runs of the study and its settings.

    Example:
        >>> study = gradient_study(depths=(1, 2), points=8, width=4)
        >>> [(r.depth, r.variant) for r in study.runs]
        [(1, 'ReLU'), (1, 'EraseReLU'), (2, 'ReLU'), (2, 'EraseReLU')]
    """

    depths: tuple[int, ...]
    points: int
    width: int
    runs_per_net: int
    seed: int
    runs: list[GradientRun] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-ready dict of the study and its runs."""
        return {"depths": list(self.depths), "points": self.points, "width": self.width,
                "initialisations": self.runs_per_net, "seed": self.seed,
                "interval": [-2.0, 2.0], "runs": [r.to_dict() for r in self.runs]}


def _measure(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(df/dx at every input, last hidden layer [points, width])."""
    hidden = []
    handle = net.get_submodule("last").register_forward_pre_hook(lambda m, args: hidden.append(args[0].detach()))
    try:
        x = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(net(x).sum(), x)
    finally:
        handle.remove()
    return grad.detach().reshape(-1), hidden[0]


def gradient_study(depths=DEFAULT_DEPTHS, points: int = 1000, width: int = 200, runs: int = 1,
                   seed: int = 0) -> GradientStudy:
    """Run seed 000's study (see the module docstring) for each depth, with and without EraseReLU.

    Defaults are the paper's: 1000 inputs on [-2, 2], 200 rectifier units per hidden layer.
    ``runs`` > 1 averages the covariance over that many initialisations (gradients and levels
    shown are the first initialisation's).

    Example:
        >>> s = gradient_study(depths=(1,), points=20, width=4, seed=1)
        >>> sorted(s.runs[0].to_dict())[:3]
        ['bimodal_fraction', 'correlation_length', 'depth']
    """
    study = GradientStudy(tuple(int(d) for d in depths), points, width, runs, seed)
    x = torch.linspace(-2.0, 2.0, points).reshape(-1, 1)
    gen = torch.Generator().manual_seed(seed)
    for depth in study.depths:
        measured: dict[str, list] = {"ReLU": [], "EraseReLU": []}
        for _ in range(max(1, runs)):
            net = ScalarResNet(depth, width, gen).eval()
            erased = ScalarResNet(depth, width, torch.Generator(), erased=True).eval()
            erased.load_state_dict(net.state_dict())
            measured["ReLU"].append(_measure(net, x))
            measured["EraseReLU"].append(_measure(erased.eval(), x))
        for variant, pairs in measured.items():
            grads = torch.stack([g for g, _ in pairs])
            study.runs.append(GradientRun(depth, variant, x.reshape(-1), grads[0], gradient_covariance(grads),
                                          activation_levels(pairs[0][1])))
    return study

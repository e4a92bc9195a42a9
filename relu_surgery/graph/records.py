"""What analysis finds: activation sites and the blocks that hold them.

Both are small frozen dataclasses; analysis builds them, rewrites plan on them, reports render them.

Example:
    >>> site = Site(name="layer1.0.act3", kind="relu", spelling="nn.ReLU", location="last",
    ...             index=3, node="layer1_0_act3")
    >>> block = Block(index=1, name="layer1.0", type="Bottleneck", stage="layer1", sites=(site,))
    >>> [s.name for s in block.last_sites]
    ['layer1.0.act3']
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Site", "Block"]


@dataclass(frozen=True)
class Site:
    """One call of an activation in the traced graph.

    ``name`` is the qualified name users know (``layer1.0.relu_2``), ``kind`` the canonical
    activation ("relu"), ``spelling`` how the code wrote it (``nn.ReLU``, ``F.relu``, ``Tensor.relu_``,
    ``BatchNormAct2d.act (ReLU)``), ``location`` first / middle / last within its block, ``index``
    its 1-based position in the block's execution order, ``node`` the FX node name (internal),
    ``composite`` the norm+act leaf holding it, if any.

    Example:
        >>> Site("layer1.0.relu", "relu", "nn.ReLU", "first", 1, "layer1_0_relu").to_dict()["name"]
        'layer1.0.relu'
    """

    name: str
    kind: str
    spelling: str
    location: str
    index: int
    node: str
    composite: str | None = None
    channels: int | None = None

    def to_dict(self) -> dict:
        """JSON-ready dict (without the internal node name)."""
        out = asdict(self)
        out.pop("node")
        return out


@dataclass(frozen=True)
class Block:
    """A basic module (the papers' f_i): where it is, what it is, its activation sites.

    ``rule`` says why it is a block; ``form`` is ``after-activation`` (it has a last activation),
    ``pre-activation`` (an activation comes before its first weight layer and none is last),
    ``linear-output`` (it ends with a weight or norm layer), ``no-activation``, or ``opaque`` (a leaf
    the tracer does not enter).

    Example:
        >>> Block(1, "layer1.0", "BasicBlock", "layer1", ()).to_dict(selected=True)["selected"]
        True
    """

    index: int
    name: str
    type: str
    stage: str | None
    sites: tuple[Site, ...]
    rule: str = ""
    form: str = ""

    @property
    def last_sites(self) -> tuple[Site, ...]:
        """Sites from which the block output is reached through no weight, norm or activation."""
        return tuple(s for s in self.sites if s.location == "last")

    def to_dict(self, selected: bool | None = None) -> dict:
        """JSON-ready dict; ``selected`` is added when given."""
        out = {"index": self.index, "name": self.name, "type": self.type, "stage": self.stage,
               "rule": self.rule, "form": self.form}
        if selected is not None:
            out["selected"] = selected
        out["sites"] = [s.to_dict() for s in self.sites]
        return out

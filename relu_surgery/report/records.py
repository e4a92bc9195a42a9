"""What a rewrite does to one activation site, as the report shows it.

Example:
    >>> SiteChange(block=2, site="layer1.1.relu_1", before="nn.ReLU", after="Identity (erased)").to_dict()
    {'block': 2, 'site': 'layer1.1.relu_1', 'before': 'nn.ReLU', 'after': 'Identity (erased)'}
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SiteChange"]


@dataclass(frozen=True)
class SiteChange:
    """What a rewrite does to one site: ``before`` -> ``after`` (spellings).

    ``kind`` is the site's activation kind before, ``new_kind`` the kind it has after ("" when the
    site is removed or is not an activation), so a dry run can predict the site counts.

    Example:
        >>> SiteChange(1, "layer1.0.relu", "nn.ReLU", "nn.GELU", "layer1_0_relu", "relu", "gelu").new_kind
        'gelu'
    """

    block: int
    site: str
    before: str
    after: str
    node: str = ""
    kind: str = ""
    new_kind: str = ""

    def to_dict(self) -> dict:
        return {"block": self.block, "site": self.site, "before": self.before, "after": self.after}

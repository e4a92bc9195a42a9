"""relu_surgery: rewrite the activations of existing PyTorch networks, see what changed, retrain.

Example:
    >>> import relu_surgery as rs
    >>> model = rs.create_model("tv:resnet18")
    >>> new_model, report = rs.erase(model, proportion=0.5)
    >>> len(rs.find_blocks(model)), len(report.changes)
    (8, 4)
"""

from ._version import __version__
from .analysis import find_blocks
from .blocks import register_block_type
from .diagnostics import probe
from .errors import SurgeryError
from .models import create_model, list_models
from .plan import Block, Site, SiteChange
from .report import Report
from .rewrites.convert import convert, to_after_activation, to_pre_activation
from .rewrites.crelu import crelu
from .rewrites.erase import erase
from .rewrites.normprop import normprop
from .rewrites.swap import swap
from .saving import load, save
from .selection import uniform_indices

__all__ = [
    "__version__",
    "find_blocks",
    "erase",
    "convert",
    "to_after_activation",
    "to_pre_activation",
    "crelu",
    "normprop",
    "swap",
    "probe",
    "create_model",
    "list_models",
    "load",
    "save",
    "register_block_type",
    "uniform_indices",
    "Block",
    "Site",
    "SiteChange",
    "Report",
    "SurgeryError",
]

"""relu_surgery: rewrite the activations of existing PyTorch networks, see what changed, retrain.

Example:
    >>> import relu_surgery as rs
    >>> model = rs.create_model("tv:resnet18")
    >>> new_model, report = rs.erase(model, proportion=0.5)
    >>> len(rs.find_blocks(model)), len(report.changes)
    (8, 4)
"""

from ._version import __version__
from .graph.analysis import find_blocks
from .graph.blocks import register_block_type
from .diagnostics import probe
from .errors import SurgeryError
from .models.resolve import create_model, list_models
from .graph.records import Block, Site
from .graph.relu_count import relu_count
from .report.records import SiteChange
from .report.report import Report
from .surgery.convert.api import convert, to_after_activation, to_pre_activation
from .surgery.crelu import crelu
from .surgery.erase import erase
from .surgery.fold import fold
from .surgery.normprop import normprop
from .surgery.swap import swap
from .train.linearize import linearize
from .models.saving import load, save
from .surgery.selection import uniform_indices

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
    "fold",
    "linearize",
    "relu_count",
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

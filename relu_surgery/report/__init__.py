"""What a rewrite changed: the report records, costs, and their renderings (text, rich, drawings)."""

from .records import SiteChange
from .report import Report, StepReport

__all__ = ["Report", "StepReport", "SiteChange"]

"""Fold: norms into weights, linear neighbours and summed branches merged, checked against the original.

See :mod:`.api` (the rewrite), :mod:`.planner` (decisions), :mod:`.geometry` and :mod:`.kernels`
(the arithmetic), :mod:`.execute` (the graph edits).
"""

from .api import fold, fold_step

__all__ = ["fold", "fold_step"]

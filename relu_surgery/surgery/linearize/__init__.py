"""Linearize to a ReLU budget: uniform site erasure, DeepReDuce-style stages, SNL's learned masks.

Example:
    >>> from relu_surgery.surgery.linearize import resolve_budget
    >>> resolve_budget(0.05, 557056)
    27852
"""

from .actions import EraseSite, LinearizePlan, MaskSite, site_actions
from .api import METHODS, linearize_sites, linearize_step, plan_count
from .budget import fewest_uniform, resolve_budget, site_groups, uniform_pick
from .masked import MaskedReLU
from .methods import GRANULARITIES, choose_stages, choose_uniform, mask_shape

__all__ = ["EraseSite", "MaskSite", "LinearizePlan", "site_actions", "METHODS", "GRANULARITIES", "linearize_sites",
           "linearize_step", "plan_count", "resolve_budget", "fewest_uniform", "uniform_pick", "site_groups",
           "MaskedReLU", "choose_uniform", "choose_stages", "mask_shape"]

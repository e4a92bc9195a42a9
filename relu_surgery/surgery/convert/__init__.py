"""Pre-activation <-> after-activation conversion (seed 003's unit variants), used by EraseReLU first."""

from .api import convert, convert_step, preactivation_prelude, to_after_activation, to_pre_activation

__all__ = ["convert", "convert_step", "preactivation_prelude", "to_after_activation", "to_pre_activation"]

"""The papers' measurements: Delta per block, last activation, filter coherence, gradient study.

Example:
    >>> from relu_surgery.diagnostics import filter_coherence
    >>> import torch
    >>> filter_coherence(torch.eye(3))
    0.0
"""

from .coherence import LayerCoherence, conv_coherence, filter_coherence
from .delta import BlockDelta, block_deltas, delta_value
from .gradients import GradientStudy, ScalarResNet, gradient_study
from .inputs import ProbeError, probe_inputs
from .last_activation import LastActivation, activation_stats, last_activation
from .probing import ModelProbe, ProbeResult, models_from_directory, probe, probe_model

__all__ = [
    "probe",
    "probe_model",
    "ProbeResult",
    "ModelProbe",
    "models_from_directory",
    "probe_inputs",
    "ProbeError",
    "block_deltas",
    "delta_value",
    "BlockDelta",
    "last_activation",
    "activation_stats",
    "LastActivation",
    "conv_coherence",
    "filter_coherence",
    "LayerCoherence",
    "gradient_study",
    "GradientStudy",
    "ScalarResNet",
]

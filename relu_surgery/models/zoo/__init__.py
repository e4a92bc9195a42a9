"""The papers' CIFAR/SVHN/MNIST networks, registered by name (one file per family).

Importing this package registers every family; only torch is needed.

Example:
    >>> from relu_surgery.models.zoo import create_zoo_model, list_zoo_models
    >>> "preact_resnet164" in list_zoo_models()
    True
    >>> model = create_zoo_model("cifar_resnet110", num_classes=100, norm="none")
"""

from ._registry import ZooEntry, create_zoo_model, get_zoo_entry, list_zoo_models, register_zoo_model
# importing the family modules registers their builders
from . import inception, mlp, pi_resnet, preact_resnet, resnet, resnext, stacked, wide_resnet  # noqa: F401

__all__ = ["ZooEntry", "create_zoo_model", "get_zoo_entry", "list_zoo_models", "register_zoo_model"]

"""Where models come from and go to: name resolution, the papers' zoo, weights, save and load."""

from .resolve import create_model, list_models
from .saving import load, save

__all__ = ["create_model", "list_models", "load", "save"]

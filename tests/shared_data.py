"""Where the real datasets are: ``../shared/data`` beside the repository, ``shared/data`` inside it,
or ``$RELU_SURGERY_DATA``. Tests that need them skip cleanly when none exists."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

__all__ = ["DATA", "needs_data", "data_root", "one_thread"]


def data_root() -> Path | None:
    """The first candidate folder holding the Fashion-MNIST files, or None."""
    here = Path(__file__).resolve()
    env = os.environ.get("RELU_SURGERY_DATA")
    candidates = ([Path(env)] if env else []) + [here.parents[2] / "shared" / "data", here.parents[1] / "shared" / "data"]
    return next((c for c in candidates if (c / "fashion-mnist").is_dir()), None)


DATA = data_root()
needs_data = pytest.mark.skipif(DATA is None, reason="shared/data (real datasets) not found")


@pytest.fixture
def one_thread():
    """One intra-op thread: fast and steady on small CI machines shared with other jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

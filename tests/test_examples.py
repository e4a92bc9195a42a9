"""The scripts in examples/ run as a user would run them: exit 0 and print what they promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .shared_data import DATA

ROOT = Path(__file__).resolve().parents[1]
CASES = [
    ("own_module.py", "erased: blocks.0.relu_1, blocks.2.relu_1"),
    ("timm_local_weights.py", "strict reload of the original checkpoint: ok"),
    ("crelu_function_check.py", "function preserved: yes"),
    pytest.param("train_compare.py", "EraseReLU minus original, test error: ",
                 marks=pytest.mark.skipif(DATA is None, reason="shared/data (real datasets) not found")),
]


def test_every_example_has_a_case():
    assert sorted(p.name for p in (ROOT / "examples").glob("*.py")) == sorted(
        c.values[0] if hasattr(c, "values") else c[0] for c in CASES)


@pytest.mark.parametrize("script, line", CASES)
def test_example_runs(script, line):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert any(out.startswith(line) for out in proc.stdout.splitlines()), proc.stdout[-2000:]

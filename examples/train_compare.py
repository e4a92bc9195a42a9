"""Train a model and its EraseReLU rewrite on Fashion-MNIST with the same seed, and compare.

Finds the dataset like the tests do: $RELU_SURGERY_DATA, else ../shared/data or shared/data
beside the repository (a folder holding fashion-mnist/). Tiny sizes, so it runs in under a minute
on a CPU; raise the limits and epochs for a real comparison.

    python examples/train_compare.py
"""

import os
import sys
import tempfile
from pathlib import Path

import relu_surgery as rs
from relu_surgery.train import TrainConfig, run_compare


def find_data() -> Path | None:
    repo = Path(__file__).resolve().parents[1]
    env = os.environ.get("RELU_SURGERY_DATA")
    candidates = ([Path(env)] if env else []) + [repo.parent / "shared" / "data", repo / "shared" / "data"]
    return next((c / "fashion-mnist" for c in candidates if (c / "fashion-mnist").is_dir()), None)


def build(seed: int):
    return rs.create_model("cifar_resnet20", in_chans=1, num_classes=10)


def erased(seed: int):
    return rs.erase(build(seed), proportion=1.0, check=False)[0]


def main() -> int:
    data = find_data()
    if data is None:
        print("Fashion-MNIST not found: set RELU_SURGERY_DATA to a folder holding fashion-mnist/", file=sys.stderr)
        return 2
    config = TrainConfig(dataset="fashion-mnist", data_dir=str(data), epochs=1, batch_size=64, lr=0.05,
                         limit_train=256, limit_test=128, progress=False)
    with tempfile.TemporaryDirectory() as out:
        result = run_compare(build, erased, config, out, seeds=(0,))
    print(result.to_markdown())
    print(f"EraseReLU minus original, test error: {result.difference:+.2f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A timm model with weights from a local file: load, erase, and reload the checkpoint strictly.

Pretrained weights usually come as a local safetensors file; here a random state dict stands in
for one (written to a temporary file first), so the script runs without a network.

    python examples/timm_local_weights.py
"""

import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import relu_surgery as rs
from relu_surgery.models.weights import load_weights


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "resnet18.safetensors"
        save_file({k: v.contiguous() for k, v in rs.create_model("timm:resnet18").state_dict().items()}, checkpoint)

        model = rs.create_model("timm:resnet18")
        loaded = load_weights(model, checkpoint)  # safetensors or weights-only torch files; strict
        new_model, report = rs.erase(model, proportion=1.0, example_input=torch.randn(1, 3, 64, 64))
        print(f"loaded {loaded} tensors; erased {len(report.changes)} sites "
              f"({report.target_sites()} -> {report.target_sites(after=True)} ReLU sites)")

        # EraseReLU keeps every state-dict key and value: the original checkpoint loads strictly
        new_model.load_state_dict(load_file(checkpoint), strict=True)
        print("strict reload of the original checkpoint: ok")


if __name__ == "__main__":
    main()

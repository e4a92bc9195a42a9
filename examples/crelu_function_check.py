"""CReLU (seed 002) with init="preserve": the widened network computes the same function.

    python examples/crelu_function_check.py
"""

import torch

import relu_surgery as rs


def main() -> None:
    torch.manual_seed(0)
    model = rs.create_model("cifar_resnet20").eval()
    wide, report = rs.crelu(model, init="preserve")
    print(f"{len(report.changes)} CReLU sites, parameters {report.params_before:,} -> {report.params_after:,}")
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        diff = (wide.eval()(x) - model(x)).abs().max().item()
    print(f"max abs output difference: {diff:.2e}")
    assert diff < 1e-4, diff
    print("function preserved: yes")


if __name__ == "__main__":
    main()

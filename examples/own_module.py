"""EraseReLU on your own nn.Module: find its blocks, erase, read the report.

    python examples/own_module.py
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

import relu_surgery as rs


class Block(nn.Module):
    """A residual block written the way you would: ReLU after the addition."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(out)))


class Net(nn.Module):
    def __init__(self, channels: int = 16, depth: int = 4, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.blocks = nn.Sequential(*[Block(channels) for _ in range(depth)])
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


def main() -> None:
    model = Net()
    print([(b.index, b.name, b.type) for b in rs.find_blocks(model)])
    new_model, report = rs.erase(model, proportion=0.5, example_input=torch.randn(1, 3, 32, 32))
    print(report)  # the diff report as text; report.to_json() / to_markdown() / code_diff() too
    x = torch.randn(2, 3, 32, 32)
    assert new_model(x).shape == model(x).shape and report.state_dict["unchanged"]
    print("erased:", ", ".join(c.site for c in report.changes))


if __name__ == "__main__":
    main()

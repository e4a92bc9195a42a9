"""Hand-written models whose blocks the dataflow rule must find (ShuffleNet-V2 units with an untraceable split,
residual sums in a top-level loop, an attention-like merge nested in each residual block)."""

import torch, torch.nn as nn, torch.nn.functional as F

class SplitBlock(nn.Module):
    def __init__(self, ratio):
        super().__init__()
        self.ratio = ratio
    def forward(self, x):
        c = int(x.size(1) * self.ratio)
        return x[:, :c, :, :], x[:, c:, :, :]

class BasicBlock(nn.Module):  # kuangliu-style ShuffleNetV2 unit
    def __init__(self, ch):
        super().__init__()
        self.split = SplitBlock(0.5)
        half = ch // 2
        self.conv1 = nn.Conv2d(half, half, 1, bias=False); self.bn1 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, half, 3, padding=1, groups=half, bias=False); self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = nn.Conv2d(half, half, 1, bias=False); self.bn3 = nn.BatchNorm2d(half)
    def forward(self, x):
        x1, x2 = self.split(x)
        out = F.relu(self.bn1(self.conv1(x2)))
        out = self.bn2(self.conv2(out))
        out = F.relu(self.bn3(self.conv3(out)))
        return torch.cat([x1, out], 1)

class Shuffle(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False); self.bn1 = nn.BatchNorm2d(8)
        self.layers = nn.Sequential(*[BasicBlock(8) for _ in range(3)])
        self.fc = nn.Linear(8, 10)
    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        return self.fc(self.layers(x).mean((2, 3)))

class Loop(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1); self.sbn = nn.BatchNorm2d(8)
        self.convs = nn.ModuleList([nn.Conv2d(8, 8, 3, padding=1) for _ in range(3)])
        self.bns = nn.ModuleList([nn.BatchNorm2d(8) for _ in range(3)])
        self.fc = nn.Linear(8, 10)
    def forward(self, x):
        x = F.relu(self.sbn(self.stem(x)))
        for conv, bn in zip(self.convs, self.bns):
            x = F.relu(bn(conv(x)) + x)
        return self.fc(x.mean((2, 3)))

class Gate(nn.Module):  # attention-like: its own merge (x + softmax-weighted mix)
    def __init__(self, ch):
        super().__init__()
        self.q = nn.Conv2d(ch, ch, 1); self.v = nn.Conv2d(ch, ch, 1)
    def forward(self, x):
        return x + self.v(x) * torch.sigmoid(self.q(x))

class AttnBlock(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1); self.bn1 = nn.BatchNorm2d(ch)
        self.attn = Gate(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1); self.bn2 = nn.BatchNorm2d(ch)
    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(self.attn(out)))
        return F.relu(out + x)

class AttnNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.stage = nn.Sequential(AttnBlock(8), AttnBlock(8))
        self.fc = nn.Linear(8, 10)
    def forward(self, x):
        return self.fc(self.stage(torch.relu(self.stem(x))).mean((2, 3)))

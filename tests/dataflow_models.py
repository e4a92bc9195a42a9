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


class Residual(nn.Module):  # a wrapper adding its input: iFormer's / ConvMixer's ``Residual``
    def __init__(self, fn):
        super().__init__()
        self.fn = fn
    def forward(self, x):
        return self.fn(x) + x

class Wrapped(nn.Module):  # iFormer's ConvBlock: its forward only calls its Residual
    def __init__(self, ch):
        super().__init__()
        self.mixer = Residual(nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.BatchNorm2d(ch), nn.ReLU()))
    def forward(self, x):
        return self.mixer(x)

class WrapNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.Sequential(Wrapped(8), Wrapped(8))
    def forward(self, x):
        return self.blocks(self.stem(x))

def mixer_net(ch=8, depth=3):  # ConvMixer: Sequential(Residual(depthwise, act, bn), pointwise, act, bn) per block
    return nn.Sequential(
        nn.Conv2d(3, ch, 2, stride=2), nn.ReLU(), nn.BatchNorm2d(ch),
        nn.Sequential(*[nn.Sequential(
            Residual(nn.Sequential(nn.Conv2d(ch, ch, 3, groups=ch, padding=1), nn.ReLU(), nn.BatchNorm2d(ch))),
            nn.Conv2d(ch, ch, 1), nn.ReLU(), nn.BatchNorm2d(ch)) for _ in range(depth)]),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(ch, 10))

class SqueezeExcite(nn.Module):  # x * sigmoid(fc(mean(x))): a gate, not a layer on the data path
    def __init__(self, ch):
        super().__init__()
        self.fc = nn.Conv2d(ch, ch, 1)
    def forward(self, x):
        return x * torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)))

class SepConv(nn.Module):  # LCNet's DepthwiseSeparableConv: no residual; an SE in some of them
    def __init__(self, ch, se=False):
        super().__init__()
        self.dw = nn.Conv2d(ch, ch, 3, padding=1, groups=ch); self.bn1 = nn.BatchNorm2d(ch)
        self.se = SqueezeExcite(ch) if se else nn.Identity()
        self.pw = nn.Conv2d(ch, ch, 1); self.bn2 = nn.BatchNorm2d(ch)
    def forward(self, x):
        x = self.se(F.relu(self.bn1(self.dw(x))))
        return F.relu(self.bn2(self.pw(x)))

class SepNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.Sequential(nn.Sequential(SepConv(8), SepConv(8)), nn.Sequential(SepConv(8, True), SepConv(8, True)))
    def forward(self, x):
        return self.blocks(self.stem(x))

class GatedOut(nn.Module):  # VoVNet's eSE after the last ReLU, then a shortcut
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1); self.bn = nn.BatchNorm2d(ch)
        self.ese = SqueezeExcite(ch)
    def forward(self, x):
        return self.ese(F.relu(self.bn(self.conv(x)))) + x

class InceptionMixer(nn.Module):  # InceptionNeXt's token mixer: a registered ``Inception*`` type
    def __init__(self, ch):
        super().__init__()
        self.a = nn.Conv2d(ch // 2, ch // 2, 3, padding=1, groups=ch // 2)
        self.b = nn.Conv2d(ch // 2, ch // 2, 1)
    def forward(self, x):
        x1, x2 = x.chunk(2, dim=1)
        return torch.cat([self.a(x1), self.b(x2)], dim=1)

class MetaNeXt(nn.Module):  # InceptionNeXt's block: mixer, norm, MLP, plus the shortcut
    def __init__(self, ch):
        super().__init__()
        self.token_mixer = InceptionMixer(ch); self.norm = nn.BatchNorm2d(ch)
        self.fc1 = nn.Conv2d(ch, 2 * ch, 1); self.fc2 = nn.Conv2d(2 * ch, ch, 1)
    def forward(self, x):
        return self.fc2(F.relu(self.fc1(self.norm(self.token_mixer(x))))) + x

class RopeEncoder(nn.Module):  # DeepSeek-ViT: a table built from x.shape only, concatenated in the encoder
    def __init__(self, ch=8):
        super().__init__()
        self.stem = nn.Conv2d(ch, ch, 3, padding=1)
        self.blocks = nn.ModuleList([Residual(nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU()))
                                     for _ in range(2)])
    def table(self, h, w):
        ys = torch.arange(h).float().repeat_interleave(w)
        xs = torch.arange(w).float().repeat(h)
        return torch.cat([ys, xs])
    def forward(self, x):
        x = self.stem(x)
        b, c, h, w = x.shape  # the shape of a weighted tensor, not its values
        rope = self.table(h, w)
        for blk in self.blocks:
            x = blk(x)
        return x * rope.sum()

class Untraceable(nn.Module):  # TinyViT's attention block: data-dependent Python control flow
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)
    def forward(self, x):
        if int(x.size(1)) > 0:
            return x + F.relu(self.conv(x))
        return x

class UntraceableStage(nn.Module):  # a downsample conv, then a Sequential of untraceable blocks
    def __init__(self, ch):
        super().__init__()
        self.down = nn.Conv2d(ch, ch, 3, stride=2, padding=1); self.act = nn.ReLU()
        self.blocks = nn.Sequential(Untraceable(ch), Untraceable(ch))
    def forward(self, x):
        return self.blocks(self.act(self.down(x)))

class DenseUnit(nn.Module):  # RDNet's DenseBlock: called on the list of earlier features
    def __init__(self, cin, grow):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin); self.conv = nn.Conv2d(cin, grow, 3, padding=1)
    def forward(self, xs):
        return self.conv(F.relu(self.bn(torch.cat(xs, 1))))

class DenseStage(nn.Sequential):  # RDNet's DenseStage: a Sequential concatenating its children's outputs
    def forward(self, x):
        features = [x]
        for module in self:
            features.append(module(features))
        return torch.cat(features, 1)

class ParallelAttn(nn.Module):  # MaxViT-PM: a concat of two branches, then the shortcut add
    def __init__(self, ch):
        super().__init__()
        self.a = nn.Conv2d(ch, ch // 2, 1); self.b = nn.Conv2d(ch, ch // 2, 3, padding=1)
    def forward(self, x):
        return x + F.relu(torch.cat([self.a(x), self.b(x)], 1))

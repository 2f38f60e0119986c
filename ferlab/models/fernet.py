"""FerNet: residual CNNs sized for FER-resolution faces on a CPU.

Why this shape: at 48x48 the cost is dominated by the 3x3 convolutions, which oneDNN runs near
peak in channels_last (and with bfloat16 on CPUs that have AMX). Plain 3x3 convs beat depthwise
separable ones here because depthwise kernels are memory-bound on CPU. Downsampling with max-pool
before each stage keeps the expensive full-resolution work to one thin stem.
"""
from __future__ import annotations

from torch import nn

from .layers import Dropout, MaxPool2d
from .registry import FERModel, register


def _conv_bn(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _stochastic_depth(branch, rate: float):
    from torchvision.ops import stochastic_depth  # only runs with --drop-path pay torchvision's import

    return stochastic_depth(branch, rate, "row", training=True)


class _Residual(nn.Module):
    #: probability of dropping the branch per sample in training (FerNet.set_drop_path); a float, not
    #: a module, so summaries and diagrams of the network do not change
    drop_path: float = 0.0

    def __init__(self, c):
        super().__init__()
        self.conv1 = _conv_bn(c, c)
        self.conv2 = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))
        nn.init.zeros_(self.conv2[1].weight)  # each block starts as identity: stable early training
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        branch = self.conv2(self.conv1(x))
        if self.training and self.drop_path:
            branch = _stochastic_depth(branch, self.drop_path)
        return self.act(x + branch)


class FerNet(FERModel):
    """stem conv -> stages of [maxpool, conv to width, `depth` residual blocks] -> GAP -> linear."""

    head_modules = ("drop", "fc")
    classifier = "fc"

    def __init__(self, num_classes, in_chans, input_size, stem: int, widths: tuple[int, ...],
                 depths: tuple[int, ...], stem_stride: int = 1, dropout: float = 0.2, s2d: bool = False):
        super().__init__(num_classes, in_chans, input_size)
        if s2d:
            # Space-to-depth stem: fold each 2x2 pixel patch into channels, then convolve at half
            # resolution. Lossless (unlike a strided conv), and it removes the full-resolution
            # BN/ReLU/max-pool that took ~40% of a fernet_s training step for <1% of its FLOPs.
            self.stem = nn.Sequential(nn.PixelUnshuffle(2), _conv_bn(in_chans * 4, stem))
        else:
            self.stem = _conv_bn(in_chans, stem, stem_stride)
        stages, c = [], stem
        for i, (w, d) in enumerate(zip(widths, depths)):
            # with the s2d stem, the first stage already runs at half resolution: no pool before it
            pool = [] if (s2d and i == 0) else [MaxPool2d(2)]
            entry = [] if c == w else [_conv_bn(c, w)]
            stages.append(nn.Sequential(*pool, *entry, *[_Residual(w) for _ in range(d)]))
            c = w
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = Dropout(dropout)
        self.fc = nn.Linear(c, num_classes)
        self.num_features = c
        self.cam_layer = f"stages.{len(stages) - 1}"
        self.stage_names = ("stem", *(f"stages.{i}" for i in range(len(stages))))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def set_drop_path(self, rate: float) -> None:
        # The paper's linear rule (Huang et al. 2016, as timm's drop_path_rate): block i of n drops its
        # branch with probability rate * i / n, so the last block drops most and the stem never.
        blocks = [m for m in self.modules() if isinstance(m, _Residual)]
        if not blocks:
            super().set_drop_path(rate)
        for i, block in enumerate(blocks, 1):
            block.drop_path = rate * i / len(blocks)

    def forward_features(self, x):
        return self.stages(self.stem(x))  # (B, C, H/2^k, W/2^k)

    def forward_head(self, x):
        return self.fc(self.drop(self.pool(x).flatten(1)))  # (B, num_classes)


@register("fernet_tiny", input_size=48, in_chans=1, description=
          "FerNet tiny: stride-2 stem 16, widths 32-64-128, one residual block (middle stage); for >=20k faces/s inference")
def fernet_tiny(num_classes, in_chans, input_size):
    return FerNet(num_classes, in_chans, input_size, stem=16, widths=(32, 64, 128), depths=(0, 1, 0),
                  stem_stride=2, dropout=0.1)


@register("fernet_tiny_deep", input_size=48, in_chans=1, description=
          "FerNet tiny with a residual block in the last stage too (issue 12's lever: capacity at 6x6)")
def fernet_tiny_deep(num_classes, in_chans, input_size):
    return FerNet(num_classes, in_chans, input_size, stem=16, widths=(32, 64, 128), depths=(0, 1, 1),
                  stem_stride=2, dropout=0.1)


@register("fernet_tiny_wide", input_size=48, in_chans=1, description=
          "FerNet tiny at 1.5x width: stride-2 stem 24, widths 48-96-192 (issue 12's lever: width)")
def fernet_tiny_wide(num_classes, in_chans, input_size):
    return FerNet(num_classes, in_chans, input_size, stem=24, widths=(48, 96, 192), depths=(0, 1, 0),
                  stem_stride=2, dropout=0.1)


@register("fernet_s", input_size=48, in_chans=1, description=
          "FerNet small: stem 32, widths 64-128-256 with one residual block each; fast accurate default")
def fernet_s(num_classes, in_chans, input_size):
    return FerNet(num_classes, in_chans, input_size, stem=32, widths=(64, 128, 256), depths=(1, 1, 1))


@register("fernet_m", input_size=48, in_chans=1, description=
          "FerNet medium: stem 48, widths 96-192-384, two residual blocks in the last two stages")
def fernet_m(num_classes, in_chans, input_size):
    return FerNet(num_classes, in_chans, input_size, stem=48, widths=(96, 192, 384), depths=(1, 2, 2), dropout=0.3)


@register("fernet2_s", input_size=48, in_chans=1, description=
          "FerNet2 small: space-to-depth stem at 24x24, widths 64-128-256, one residual block each")
def fernet2_s(num_classes, in_chans, input_size):
    return FerNet(num_classes, in_chans, input_size, stem=64, widths=(64, 128, 256), depths=(1, 1, 1), s2d=True)

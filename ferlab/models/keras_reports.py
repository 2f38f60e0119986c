"""The architectures of the course reports, layer for layer as their Keras code built them.

Keras defaults reproduced: 'valid' padding unless a report says 'same', 2x2 max-pooling with
floor, Flatten in channels-last order (irrelevant for parameter counts, kept for fidelity of
weight layouts only where it matters). Trainable parameter counts are the contract and are
asserted in the tests.

Where a report writes Conv, ReLU, MaxPool, the stack here is Conv, MaxPool, ReLU: the same
function (max and ReLU commute, ReLU being monotone) and the same gradients (both send a window's
gradient to its first maximum, or nowhere when it is not positive), with the ReLU and its backward
on a quarter of the pixels. Dropout and MaxPool are `layers`' faster, exact equivalents.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import Dropout, MaxPool2d, Sequential, flatten
from .registry import FERModel, register

# one node in torch.fx graphs (the architecture diagram), not its memory-format branches
torch.fx.wrap("flatten")


def _flat_dim(features: nn.Module, in_chans: int, size: int) -> int:
    with torch.no_grad():
        return features(torch.zeros(1, in_chans, size, size)).flatten(1).shape[1]


class _Sequential(FERModel):
    """A conv/pool feature stack followed by a flatten + dense head."""

    def __init__(self, features: nn.Module, head_fn, num_classes, in_chans, input_size, cam_layer=None):
        super().__init__(num_classes, in_chans, input_size)
        self.features = features
        self.head = head_fn(_flat_dim(features, in_chans, input_size))
        self.cam_layer = cam_layer
        self.classifier = f"head.{len(self.head) - 1}"
        # each layer with weights is a stage, as Keras' `layer.trainable` sees it
        self.stage_names = tuple(f"features.{n}" for n, m in features.named_children() if next(m.parameters(), None) is not None)

    def forward_features(self, x):
        return self.features(x)

    def forward_head(self, x):
        return self.head(flatten(x))  # (B, C*H*W)


@register("seed_cnn_a", input_size=48, in_chans=3, description=
          "Report CNN: 3x [Conv 32 2x2 relu + MaxPool], Dense 512 relu, Dense 7 (422,375 params at 48x48x3)")
def seed_cnn_a(num_classes, in_chans, input_size):
    layers = []
    c = in_chans
    for _ in range(3):
        layers += [nn.Conv2d(c, 32, 2), MaxPool2d(2), nn.ReLU(inplace=True)]
        c = 32
    head = lambda n: nn.Sequential(nn.Linear(n, 512), nn.ReLU(inplace=True), nn.Linear(512, num_classes))
    return _Sequential(Sequential(*layers), head, num_classes, in_chans, input_size, cam_layer="features.6")


def _two_conv(in_chans, pool_dropout: bool):
    def block(cin, cout):  # Conv, ReLU[, MaxPool, Dropout] as Conv[, MaxPool], ReLU[, Dropout]
        pool = [MaxPool2d(2)] if pool_dropout else []
        return [nn.Conv2d(cin, cout, 3), *pool, nn.ReLU(inplace=True), *([Dropout(0.25)] if pool_dropout else [])]

    return Sequential(*block(in_chans, 32), *block(32, 64))


@register("seed_cnn_b", input_size=100, in_chans=3, num_classes=6, description=
          "Report CNN without pooling/dropout: Conv 32 3x3, Conv 64 3x3, Dense 128, Dense 6 "
          "(75,517,766 params at 100x100x3)")
def seed_cnn_b(num_classes, in_chans, input_size):
    head = lambda n: nn.Sequential(nn.Linear(n, 128), nn.ReLU(inplace=True), nn.Linear(128, num_classes))
    return _Sequential(_two_conv(in_chans, False), head, num_classes, in_chans, input_size, cam_layer="features.3")


@register("seed_cnn_b_pool", input_size=100, in_chans=3, num_classes=6, description=
          "seed_cnn_b with MaxPool + Dropout 0.25 after each conv and Dropout 0.5 after Dense 128 "
          "(4,353,862 params at 100x100x3)")
def seed_cnn_b_pool(num_classes, in_chans, input_size):
    head = lambda n: nn.Sequential(nn.Linear(n, 128), nn.ReLU(inplace=True), Dropout(0.5),
                                   nn.Linear(128, num_classes))
    return _Sequential(_two_conv(in_chans, True), head, num_classes, in_chans, input_size, cam_layer="features.4")


@register("seed_dnn", input_size=48, in_chans=1, description=
          "Report 'DNN': MaxPool-Dropout-ReLU-MaxPool-Dropout, Flatten, Dense 1028, Dropout, Dense 7 "
          "(156,263 params at 48x48x1)")
def seed_dnn(num_classes, in_chans, input_size):
    features = nn.Sequential(MaxPool2d(2), Dropout(0.25), nn.ReLU(), MaxPool2d(2), Dropout(0.25))
    head = lambda n: nn.Sequential(nn.Linear(n, 1028), nn.ReLU(inplace=True), Dropout(0.5),
                                   nn.Linear(1028, num_classes))
    return _Sequential(features, head, num_classes, in_chans, input_size, cam_layer=None)


@register("seed_cnn_c", input_size=48, in_chans=1, description=
          "Report CNN: Conv 32, Conv 32, ReLU, MaxPool, Dropout, Conv 64, ReLU, MaxPool, Dropout, "
          "Dense 1028, Dropout, Dense 7 (head as in the report's DNN twin)")
def seed_cnn_c(num_classes, in_chans, input_size):
    features = Sequential(
        nn.Conv2d(in_chans, 32, 3), nn.Conv2d(32, 32, 3), MaxPool2d(2), nn.ReLU(inplace=True), Dropout(0.25),
        nn.Conv2d(32, 64, 3), MaxPool2d(2), nn.ReLU(inplace=True), Dropout(0.25),
    )
    head = lambda n: nn.Sequential(nn.Linear(n, 1028), nn.ReLU(inplace=True), Dropout(0.5),
                                   nn.Linear(1028, num_classes))
    return _Sequential(features, head, num_classes, in_chans, input_size, cam_layer="features.5")


def _bn_block(cin, cout, dropout):
    layers = [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.01, inplace=True),
              MaxPool2d(2)]
    if dropout:
        layers.append(Dropout(dropout))
    return nn.Sequential(*layers)


def _dense_bn(cin, cout, dropout):
    layers = [nn.Linear(cin, cout), nn.BatchNorm1d(cout), nn.LeakyReLU(0.01, inplace=True)]
    if dropout:
        layers.append(Dropout(dropout))
    return layers


@register("seed_cnn_bn", input_size=48, in_chans=1, description=
          "Report CNN: 4 blocks Conv 3x3 same 32-64-128-256 + BN + LeakyReLU + MaxPool, Dense 512, "
          "Dense 256 with BN (1,703,623 params at 48x48x1)")
def seed_cnn_bn(num_classes, in_chans, input_size):
    features = nn.Sequential(_bn_block(in_chans, 32, 0), _bn_block(32, 64, 0.1), _bn_block(64, 128, 0.2),
                             _bn_block(128, 256, 0.2))
    head = lambda n: Sequential(*_dense_bn(n, 512, 0.5), *_dense_bn(512, 256, 0.1), nn.Linear(256, num_classes))
    return _Sequential(features, head, num_classes, in_chans, input_size, cam_layer="features.3.2")


@register("seed_dense_bn", input_size=48, in_chans=1, description=
          "Report dense-only net: Dense 512 x3, 256 x3 with BN + LeakyReLU, dropout 0.1 "
          "(1,974,791 params at 48x48x1)")
def seed_dense_bn(num_classes, in_chans, input_size):
    widths = [512, 512, 512, 256, 256, 256]

    def head(n):
        layers, c = [], n
        for w in widths:
            layers += _dense_bn(c, w, 0.1)
            c = w
        return Sequential(*layers, nn.Linear(c, num_classes))

    return _Sequential(nn.Identity(), head, num_classes, in_chans, input_size, cam_layer=None)


@register("known_bad_relu_head", input_size=96, in_chans=3, known_bad=True, description=
          "KNOWN BAD (kept on purpose): the report's 96x96x3 CNN with 256 4x4 filters and a ReLU output "
          "layer that produced NaN losses; training guards refuse it")
def known_bad_relu_head(num_classes, in_chans, input_size):
    features = nn.Sequential(nn.Conv2d(in_chans, 256, 4), nn.ReLU(inplace=True), MaxPool2d(2))
    head = lambda n: nn.Sequential(nn.Linear(n, num_classes), nn.ReLU())
    m = _Sequential(features, head, num_classes, in_chans, input_size, cam_layer="features.1")
    m.head_activation = "relu"
    m.classifier = "head.0"
    return m

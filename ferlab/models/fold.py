"""Inference copies of models with BatchNorm folded into the layer before it.

In evaluation mode a BatchNorm after a convolution or linear layer is a fixed per-channel affine
map, so it can live in that layer's weights and bias (torch's `fuse_conv_bn_eval` /
`fuse_linear_bn_eval`); torch's BatchNorm kernel is slow on bfloat16 channels_last tensors.
Logits change by rounding only (up to ~5e-4 in bfloat16, ~1e-6 in float32; the bundled models'
val accuracy is unchanged). Training, explanation (hooks on the BatchNorm layers, gradients) and
export keep the model as it is; evaluation (`predict_logits`) and prediction (`TorchClassifier`)
run the copy, with channels_last weights. A batch-64 bfloat16 pass over 3,589 faces, against the
model as a checkpoint loads it: report BN CNN 8,341 vs 2,609 img/s, FerNet-S 2,517 vs 2,014,
FerNet-tiny 41,531 vs 31,702 (`benchmarks/eval_pass.py`, results/eval_pass.json).
"""
from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval


def _foldable(layer: nn.Module, bn: nn.Module) -> bool:
    pair = (type(layer), type(bn))
    return pair in ((nn.Conv2d, nn.BatchNorm2d), (nn.Linear, nn.BatchNorm1d)) and bn.running_mean is not None


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An evaluation-mode copy of `model` in which every BatchNorm that directly follows a Conv2d or
    Linear in an `nn.Sequential` is folded into it (and replaced by `nn.Identity`, so module names
    stay). `model` itself is left untouched; with nothing to fold it is returned as is (in eval mode)."""
    model.eval()
    pairs = [(seq, a, b) for seq in model.modules() if isinstance(seq, nn.Sequential)
             for a, b in zip(list(seq._modules), list(seq._modules)[1:]) if _foldable(seq._modules[a], seq._modules[b])]
    if not pairs:
        return model
    folded = copy.deepcopy(model)
    index = {id(m): name for name, m in model.named_modules()}
    for seq, a, b in pairs:
        target = folded.get_submodule(index[id(seq)]) if index[id(seq)] else folded
        layer, bn = target._modules[a], target._modules[b]
        target._modules[a] = (fuse_conv_bn_eval if isinstance(layer, nn.Conv2d) else fuse_linear_bn_eval)(layer, bn)
        target._modules[b] = nn.Identity()
    return folded

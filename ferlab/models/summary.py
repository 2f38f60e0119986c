"""Keras-style layer summary: output shapes from forward hooks, FLOPs from torch's own counter
(`torch.utils.flop_counter.FlopCounterMode`, which counts convolutions and matmuls)."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .registry import FERModel, count_params


def _leaf_modules(model: nn.Module):
    for name, m in model.named_modules():
        if name and not list(m.children()):
            yield name, m


@torch.no_grad()
def summarize(model: FERModel) -> dict:
    """Rows (layer, type, output shape, params, MACs) for one input at the model's declared size,
    plus totals: trainable/non-trainable parameters and forward MACs per image (FLOPs / 2)."""
    rows, handles = [], []
    for name, m in _leaf_modules(model):
        def hook(mod, inp, out, name=name):
            rows.append({"layer": name, "type": type(mod).__name__, "output": tuple(out.shape[1:]),
                         "params": sum(p.numel() for p in mod.parameters())})
        handles.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            model(torch.zeros(1, model.in_chans, model.input_size, model.input_size))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    # The counter keys modules as "<RootClass>.<qualified name>"
    per_module = {k.split(".", 1)[1]: sum(v.values()) for k, v in counter.get_flop_counts().items() if "." in k}
    for r in rows:
        r["macs"] = per_module.get(r["layer"], 0) // 2
    trainable = count_params(model)
    total = count_params(model, trainable_only=False)
    buffers = sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    return {"rows": rows, "trainable": trainable, "non_trainable": total - trainable + buffers,
            "macs": counter.get_total_flops() // 2}


def format_summary(name: str, s: dict, input_shape: tuple) -> str:
    lines = [f'Model: "{name}"   input {input_shape}', "-" * 78,
             f"{'Layer (type)':<40}{'Output Shape':<24}{'Param #':>12}", "=" * 78]
    for r in s["rows"]:
        lines.append(f"{r['layer'] + ' (' + r['type'] + ')':<40}{str((None,) + r['output']):<24}{r['params']:>12,}")
    lines += ["=" * 78, f"Trainable params: {s['trainable']:,}",
              f"Non-trainable params (BatchNorm statistics): {s['non_trainable']:,}",
              f"Forward MACs per image: {s['macs'] / 1e6:,.1f} M ({2 * s['macs'] / 1e6:,.1f} MFLOPs)"]
    return "\n".join(lines)

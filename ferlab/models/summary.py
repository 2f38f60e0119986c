"""Keras-style layer summary: output shapes from forward hooks, FLOPs from torch's own counter
(`torch.utils.flop_counter.FlopCounterMode`, which counts convolutions and matmuls)."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from . import layers
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


#: Layers drawn inside the box of the layer before them (as a Keras diagram of Conv2D with a
#: fused activation), when that layer feeds only them.
_FUSED = (nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
          nn.Softmax, nn.Dropout, nn.Dropout2d)


def _describe(m: nn.Module) -> str:
    kind = type(m).__name__
    if isinstance(m, nn.Conv2d):
        k, s = m.kernel_size, m.stride
        return f"{kind} {k[0]}x{k[1]}" + (f"/{s[0]}" if s[0] > 1 else "") + f" -> {m.out_channels}"
    if isinstance(m, nn.Linear):
        return f"{kind} -> {m.out_features}"
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
        return f"{kind} {k}x{k}"
    if isinstance(m, (nn.Dropout, nn.Dropout2d)):
        return f"Dropout {m.p:g}"
    if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
        return "BN"
    return kind


@torch.no_grad()
def layer_graph(model: FERModel) -> list[dict]:
    """The model's forward graph (traced by `torch.fx`) as nodes in execution order, each
    {"name", "kind" ("input", "module" or "function"), "ops": [layer descriptions], "layers": [the
    module names merged in it], "shape": output shape without the batch, "params", "inputs":
    [indices of the nodes it reads]}. A normalisation, activation or dropout layer
    that is the only reader of the layer before it is merged into that layer's node, so a
    conv-BN-ReLU is one box; additions (residual connections) are nodes with two inputs."""
    from torch import fx
    from torch.fx.passes.shape_prop import ShapeProp

    class Tracer(fx.Tracer):
        # ferlab's drop-in Dropout/MaxPool2d (models.layers) are layers, like torch's own; its
        # Sequential is a container, traced through like torch's
        def is_leaf_module(self, m, qualname):
            return (type(m).__module__ == layers.__name__ and not isinstance(m, torch.nn.Sequential)) \
                or super().is_leaf_module(m, qualname)

    graph = fx.GraphModule(model, Tracer().trace(model))
    was_training = model.training
    model.eval()
    try:
        ShapeProp(graph).propagate(torch.zeros(1, model.in_chans, model.input_size, model.input_size))
    finally:
        model.train(was_training)
    modules = dict(model.named_modules())
    nodes: list[dict] = []
    index: dict[fx.Node, int] = {}
    attrs: dict[fx.Node, int] = {}  # parameters read outside a layer (ConvNeXt's layer scale)
    for n in graph.graph.nodes:
        if n.op == "output":
            continue
        if n.op == "get_attr":
            attrs[n] = graph.get_parameter(n.target).numel() if isinstance(
                _attr(graph, n.target), torch.nn.Parameter) else 0
            continue
        meta = n.meta.get("tensor_meta")
        shape = tuple(meta.shape[1:]) if meta is not None and hasattr(meta, "shape") else ()
        inputs = [index[a] for a in n.all_input_nodes if a in index]
        if n.op == "call_module":
            m = modules[n.target]
            prev = nodes[inputs[0]] if len(inputs) == 1 else None
            if (isinstance(m, _FUSED) and prev is not None and prev["name"] != "input"
                    and len(n.all_input_nodes[0].users) == 1):
                prev["ops"].append(_describe(m))
                prev["layers"].append(n.target)
                prev["shape"] = shape
                prev["params"] += sum(p.numel() for p in m.parameters())
                index[n] = inputs[0]
                continue
            node = {"name": n.target, "kind": "module", "ops": [_describe(m)], "layers": [n.target],
                    "params": sum(p.numel() for p in m.parameters())}
        elif n.op == "placeholder":
            node = {"name": "input", "kind": "input", "ops": ["Input"], "layers": [], "params": 0}
        else:  # a function or tensor method in forward: add (a residual connection), flatten, cat...
            node = {"name": n.name, "kind": "function", "ops": [getattr(n.target, "__name__", str(n.target))],
                    "layers": [], "params": sum(attrs.pop(a, 0) for a in n.all_input_nodes)}
        node.update(shape=shape, inputs=inputs)
        index[n] = len(nodes)
        nodes.append(node)
    return nodes


def _attr(module: nn.Module, target: str):
    for part in target.split("."):
        module = getattr(module, part)
    return module

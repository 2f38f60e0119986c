"""`ferlab export`: a checkpoint to a deployable file (ONNX)."""
from __future__ import annotations

import argparse
import json

from ..export.config import ExportConfig
from .options import add_options, build


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export a checkpoint to ONNX",
        description="Export a checkpoint to a self-describing ONNX file (input 'input' float32 (B, C, H, W), "
                    "normalised per the checkpoint; output 'logits'), checked against PyTorch after writing.")
    add_options(p, ExportConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export.onnx import OnnxClassifier, export

    cfg = build(args, ExportConfig)
    path = export(cfg.model, cfg.onnx, fmt=cfg.format, quantize=cfg.quantize, opset=cfg.opset)
    clf = OnnxClassifier(path, threads=1)
    check = json.loads(clf.meta["verification"])
    pre = clf.preprocess
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {clf.model_name}, quantization: {clf.meta['quantization']})")
    centre = "the per-pixel mean image in the metadata" if pre.pixel_mean else f"mean {list(pre.mean)}"
    print(f"input 'input' float32 (B, {pre.channels}, {pre.size}, {pre.size}) normalised with {centre}, "
          f"std {list(pre.std)} after scaling pixels to [0, 1]; output 'logits' (B, {len(clf.classes)})")
    print(f"classes: {', '.join(clf.classes)}")
    print(f"check vs PyTorch on {check['batch']} {check['inputs']}: max |logit diff| {check['max_abs_diff']:.2g}, "
          f"top-1 agreement {check['top1_agreement']:.1%} ({check['distinct_top1']} distinct classes predicted)")
    return 0

"""`ferlab export`: a checkpoint to a deployable file (ONNX)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parsers(subparsers) -> None:
    from ..export import FORMATS, QUANTIZATIONS

    p = subparsers.add_parser(
        "export", help="export a checkpoint to ONNX",
        description="Export a checkpoint to a self-describing ONNX file (input 'input' float32 (B, C, H, W), "
                    "normalised per the checkpoint; output 'logits'), checked against PyTorch after writing.")
    p.add_argument("checkpoint", metavar="CKPT", help="a .pt checkpoint, a run directory, or 'default'")
    # No argparse `choices`: the library validates, so the CLI and Python callers get one message.
    p.add_argument("--format", dest="fmt", default="onnx", metavar="FORMAT",
                   help=f"output format, one of: {', '.join(FORMATS)} (default: onnx)")
    p.add_argument("--out", type=Path, default=None,
                   help="output file (default: beside the checkpoint, e.g. best.onnx / best.int8.onnx)")
    p.add_argument("--quantize", default=None, metavar="MODE",
                   help=f"quantize weights and activations: {', '.join(QUANTIZATIONS)} (static, random calibration)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version (default: 17)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export import OnnxClassifier, export

    path = export(args.checkpoint, args.out, fmt=args.fmt, quantize=args.quantize, opset=args.opset)
    clf = OnnxClassifier(path, threads=1)
    check = json.loads(clf.meta["verification"])
    pre = clf.preprocess
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {clf.model_name}, quantization: {clf.meta['quantization']})")
    print(f"input 'input' float32 (B, {pre.channels}, {pre.size}, {pre.size}) normalised with mean {list(pre.mean)} "
          f"std {list(pre.std)} after scaling pixels to [0, 1]; output 'logits' (B, {len(clf.classes)})")
    print(f"classes: {', '.join(clf.classes)}")
    print(f"check vs PyTorch on {check['batch']} {check['inputs']}: max |logit diff| {check['max_abs_diff']:.2g}, "
          f"top-1 agreement {check['top1_agreement']:.1%} ({check['distinct_top1']} distinct classes predicted)")
    return 0

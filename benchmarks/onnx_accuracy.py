"""Val accuracy of exported ONNX files (fp32 and int8) next to their PyTorch checkpoint, no TTA.

    ferlab export default --out /tmp/default.onnx
    ferlab export default --quantize int8 --out /tmp/default.int8.onnx
    .venv/bin/python benchmarks/onnx_accuracy.py default /tmp/default.onnx /tmp/default.int8.onnx \
        --data ../shared/datasets/fer2013 --out benchmarks/results/onnx_accuracy.json
"""
from __future__ import annotations

import argparse

import numpy as np

from ferlab import checkpoint, data
from ferlab.fileio import write_json
from ferlab.evaluate import predict_logits
from ferlab.export import OnnxClassifier


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("onnx_files", nargs="+")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--out", default="benchmarks/results/onnx_accuracy.json")
    args = ap.parse_args()
    loaded = checkpoint.load(args.checkpoint)
    pp = loaded.preprocess
    split = data.load(args.data, args.split, size=pp.size, channels=pp.channels, classes=list(loaded.classes))
    y = split.labels.numpy()
    res = {"checkpoint": args.checkpoint, "split": args.split, "faces": len(y),
           "torch_fp32": float((predict_logits(loaded.model, split.images, pp).argmax(1).numpy() == y).mean())}
    for path in args.onnx_files:
        clf = OnnxClassifier(path)
        if clf.classes != list(loaded.classes) or clf.preprocess != pp:
            raise SystemExit(f"{path} was not exported from {args.checkpoint} (classes or preprocessing differ)")
        preds = [clf(pp.normalize(split.images[i:i + 256]).numpy().astype(np.float32)).argmax(1)
                 for i in range(0, len(y), 256)]
        res[path] = float((np.concatenate(preds) == y).mean())
    for k, v in res.items():
        print(k, v)
    write_json(args.out, res)


if __name__ == "__main__":
    main()

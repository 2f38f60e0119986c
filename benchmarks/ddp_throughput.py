"""Training images/s of one process against several (torchrun, gloo) on this machine.

    .venv/bin/python benchmarks/ddp_throughput.py --data ../shared/datasets/fer2013 \
        --out benchmarks/results/ddp_throughput.json

Each setting runs `ferlab train` for `--epochs` epochs of `--arch` with the cores split evenly
between the processes (threads = cores / processes) and reports the median global images/s of its
epochs (metrics.csv: every rank's images summed, divided by the epoch's seconds). On 2 cores no
speed-up is expected: the point of the check is that the distributed path is correct and what it
costs; the figures say how much the gradient all-reduce takes.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ferlab.fileio import write_json
from ferlab import history


def run(nproc: int, args, root: Path) -> dict:
    threads = max(1, (os.cpu_count() or 1) // nproc)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           "-m", "ferlab", "train", "--data", args.data, "--arch", args.arch, "--epochs", str(args.epochs),
           "--batch-size", str(args.batch_size), "--threads", str(threads), "--tta", "none",
           "--out", str(root), "--name", f"p{nproc}"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    rows = history.read(root / f"p{nproc}" / "metrics.csv")
    return {"processes": nproc, "threads_per_process": threads, "global_batch": nproc * args.batch_size,
            "images_per_s_median": statistics.median(r["images_per_s"] for r in rows),
            "images_per_s": [r["images_per_s"] for r in rows], "val_acc": [r["val_acc"] for r in rows],
            "wall_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--arch", default="fernet_tiny")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", default="benchmarks/results/ddp_throughput.json")
    args = ap.parse_args()
    res = {"arch": args.arch, "epochs": args.epochs, "batch_size_per_process": args.batch_size,
           "cpu_count": os.cpu_count(), "loadavg_before": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M"),
           "settings": []}
    with tempfile.TemporaryDirectory(prefix="ferlab-ddp-") as tmp:
        for n in args.processes:
            r = run(n, args, Path(tmp))
            res["settings"].append(r)
            print(f"{n} process(es): {r['images_per_s_median']:.0f} img/s, val acc {r['val_acc']}", flush=True)
    res["loadavg_after"] = os.getloadavg()
    write_json(args.out, res)


if __name__ == "__main__":
    main()

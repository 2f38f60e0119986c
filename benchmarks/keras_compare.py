"""Training and evaluation images/s of the course reports' networks: ferlab against Keras, on the
same CPU, the same images and the same batch size, in one run (issue 14).

    python3 -m venv /tmp/kerasvenv          # Keras' own venv, never ferlab's (see keras_side.py)
    /tmp/kerasvenv/bin/pip install tensorflow-cpu==2.21.0 keras==3.15.1 numpy
    .venv/bin/python benchmarks/keras_compare.py --data ../shared/datasets/fer2013 \
        --out benchmarks/results/keras_compare.json
    .venv/bin/python benchmarks/keras_compare.py --table benchmarks/results/keras_compare.json

For each network the first `--limit` training images (in the order of the numbers in FER2013's
file names, which mixes the classes) become a FER2013-style folder of symlinks with the full val
split beside it; ferlab trains on that folder and the Keras process on the very arrays ferlab
loads from it (`ferlab.train.inputs.load_data`, as `fit` does), saved as float32 NHWC / 255.
`seed_cnn_b_pool` has the report's 6 classes: disgust is merged into angry (`class_map`).

ferlab's side is the `report` recipe as a user runs it, `train.build("report", arch=..., epochs=2)`
then `train.fit`, with `--ferlab-set KEY=VALUE` overrides of any TrainConfig field (`amp=true`,
`channels_last=false`; `ARCH:KEY=VALUE` for one network only). Training images/s is epoch 2's
(metrics.csv), evaluation images/s the median of `--eval-passes` timed `predict_logits` passes over
val from best.pt after a warm-up pass, at the training batch size. Keras and ferlab runs alternate
(K F, F K, K F, ...); every repetition is recorded with the load average, CPU steal and the cores
other processes used around it. On a 2-core machine any other job halves the speed of whichever side
runs beside it, so each run first waits (`--max-wait`) until other processes use under
`--idle-cores`, and a run they disturbed anyway is recorded under `discarded` and made again
(`--retries`).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

HERE = Path(__file__).resolve().parent
NETWORKS = ("seed_cnn_a", "seed_cnn_b_pool", "seed_dnn", "seed_cnn_bn", "seed_dense_bn")
EPOCHS = 2
#: how FER2013's 7 classes become a 6-class network's
SIX_CLASSES = "disgust=angry"


def _cpu_times() -> tuple[float, float, float]:
    """(all, busy, steal) CPU seconds of the whole machine so far, from /proc/stat."""
    try:
        v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError, IndexError):
        return 0.0, 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = v
    return sum(v) / tick, (user + nice + system + irq + softirq) / tick, steal / tick


def _own_cpu() -> float:
    """CPU seconds of this process and its finished children (the Keras runs)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def others_busy(seconds: float = 2.0) -> float:
    """Cores kept busy by other processes over the next `seconds` (this one sleeps meanwhile)."""
    t0, own0, w0 = _cpu_times(), _own_cpu(), time.perf_counter()
    time.sleep(seconds)
    t1, own1 = _cpu_times(), _own_cpu()
    return max(0.0, (t1[1] - t0[1]) - (own1 - own0)) / (time.perf_counter() - w0)


def wait_idle(max_cores: float, max_wait: float) -> dict:
    """Wait (at most `max_wait` s) until other processes use under `max_cores` cores: another
    job on a 2-core machine halves either side's speed, whichever is running."""
    t, busy = time.perf_counter(), others_busy()
    while busy >= max_cores and time.perf_counter() - t < max_wait:
        print(f"  waiting: other processes keep {busy:.2f} cores busy", flush=True)
        busy = others_busy(10.0)
    return {"waited_s": time.perf_counter() - t, "others_cores_at_start": busy}


class Probe:
    """Load average, CPU steal and the cores other processes used around one run."""

    def __enter__(self):
        self.load_before, self._t0, self._own0 = list(os.getloadavg()), _cpu_times(), _own_cpu()
        self._w0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.load_after, t1, own1 = list(os.getloadavg()), _cpu_times(), _own_cpu()
        total, wall = t1[0] - self._t0[0], time.perf_counter() - self._w0
        self.steal = (t1[2] - self._t0[2]) / total if total > 0 else None
        self.others = max(0.0, (t1[1] - self._t0[1]) - (own1 - self._own0)) / wall if wall > 0 else None
        return False

    def record(self) -> dict:
        return {"loadavg_before": self.load_before, "loadavg_after": self.load_after, "cpu_steal": self.steal,
                "others_cores": self.others}


def _number_key(path: Path) -> tuple:
    digits = re.findall(r"\d+", path.stem)
    return (int(digits[-1]) if digits else -1, path.name)


def make_subset(source: Path, limit: int, root: Path) -> Path:
    """`root/fer2013_first<limit>`: train/<class>/ links to the first `limit` training images,
    val/ a link to the source's val. Kept between runs (so ferlab's decoded cache, keyed by the
    listing, is reused) and rebuilt when its manifest differs."""
    from ferlab.data.folders import class_folders, listing, split_dir

    train = split_dir(source, "train")
    val = split_dir(source, "val")
    if train is None or val is None:
        raise SystemExit(f"{source} needs train/ and val/ folders of class folders")
    entries, bad = listing(class_folders(train))
    if bad:
        raise SystemExit(f"{source}: unreadable entries {bad[:3]}")
    chosen = sorted(entries, key=lambda e: _number_key(e.path))[:limit]
    manifest = {"source": str(source.resolve()), "limit": limit,
                "files": sorted(f"{e.path.parent.name}/{e.path.name}" for e in chosen)}
    out = root / f"fer2013_first{limit}"
    mf = out / "subset.json"
    if mf.exists() and json.loads(mf.read_text()) == manifest:
        return out
    if out.exists():
        shutil.rmtree(out)
    for e in chosen:
        link = out / "train" / e.path.parent.name / e.path.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(e.path.resolve())
    (out / "val").symlink_to(val.resolve(), target_is_directory=True)
    mf.write_text(json.dumps(manifest) + "\n")
    return out


def parse_sets(items: list[str]) -> dict[str, dict]:
    """['amp=true', 'seed_cnn_a:channels_last=false'] -> {'*': {'amp': True}, 'seed_cnn_a': {...}},
    each value converted to its TrainConfig field's type."""
    from ferlab.train.config import TrainConfig

    types = {f.name: type(f.default) for f in fields(TrainConfig) if f.name != "aug"}
    out: dict[str, dict] = {}
    for item in items:
        target, _, kv = item.rpartition(":") if ":" in item.partition("=")[0] else ("", "", item)
        key, sep, value = kv.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in types:
            raise SystemExit(f"--ferlab-set {item!r}: write [ARCH:]KEY=VALUE with KEY one of: {', '.join(sorted(types))}")
        if target and target not in NETWORKS:
            raise SystemExit(f"--ferlab-set {item!r}: unknown network {target!r}; choose one of: {', '.join(NETWORKS)}")
        t = types[key]
        if t is bool:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise SystemExit(f"--ferlab-set {item!r}: {key} takes true or false")
            v = value.lower() in ("true", "1", "yes", "on")
        elif t in (int, float):
            v = t(value)
        else:  # str, or a tuple that train.build splits on commas
            v = value
        out.setdefault(target or "*", {})[key] = v
    return out


def _summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def _save_arrays(train, val, folder: Path) -> None:
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    for name, d in (("train", train), ("val", val)):
        # the reports' input: NHWC float32 pixels / 255
        np.save(folder / f"{name}_x.npy", (d.images.permute(0, 2, 3, 1).float() / 255.0).numpy())
        np.save(folder / f"{name}_y.npy", d.labels.numpy())


def keras_run(a, arch: str, arrays: Path, num_classes: int, params: int, seed: int, work: Path) -> dict:
    out = work / f"keras-{arch}-{seed}.json"
    cmd = [str(a.keras_python), str(HERE / "keras_side.py"), "--arch", arch, "--data", str(arrays),
           "--num-classes", str(num_classes), "--expect-params", str(params), "--epochs", str(EPOCHS),
           "--batch-size", str(a.batch_size), "--threads", str(a.threads), "--eval-passes", str(a.eval_passes),
           "--seed", str(seed), "--out", str(out)]
    with Probe() as probe:
        t = time.perf_counter()
        proc = subprocess.run(cmd, check=False, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
        wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"the Keras run of {arch} failed (exit {proc.returncode}): {' '.join(cmd)}")
    res = json.loads(out.read_text())
    return {**res, "process_seconds": wall, **probe.record()}


def ferlab_run(a, arch: str, data_dir: Path, overrides: dict, val, seed: int, work: Path) -> dict:
    import torch

    from ferlab import checkpoint, history, train
    from ferlab.evaluate.tta import predict_logits

    cfg = train.build("report", arch=arch, data=str(data_dir), epochs=EPOCHS, batch_size=a.batch_size,
                      threads=a.threads, seed=seed, device="cpu", out=str(work / "runs"),
                      name=f"{arch}-seed{seed}-{time.strftime('%H%M%S')}", **overrides)
    with Probe() as probe:
        t = time.perf_counter()
        run_dir = train.fit(cfg, log=lambda m: print(f"  ferlab {m}", flush=True))
        wall = time.perf_counter() - t
        rows = history.read(run_dir / "metrics.csv")
        loaded = checkpoint.load(run_dir)
        torch.set_num_threads(a.threads)
        predict = lambda: predict_logits(loaded.model, val.images, loaded.preprocess, "none",
                                         batch_size=a.batch_size, channels_last=cfg.channels_last, amp=cfg.amp)
        predict()  # warm-up
        eval_seconds = []
        for _ in range(a.eval_passes):
            t = time.perf_counter()
            logits = predict()
            eval_seconds.append(time.perf_counter() - t)
    last = rows[-1]
    return {
        "run_dir": str(run_dir), "fit_seconds": wall, "train_size": int(loaded.meta["metrics"]["train_size"]),
        "val_size": len(val), "epoch_seconds": [r["seconds"] for r in rows],
        "epoch_images_per_s": [r["images_per_s"] for r in rows], "train_images_per_s": last["images_per_s"],
        "train_loss": [r["train_loss"] for r in rows], "train_acc": [r["train_acc"] for r in rows],
        "val_acc": last["val_acc"], "val_loss": last["val_loss"], "val_acc_epochs": [r["val_acc"] for r in rows],
        "best_epoch": loaded.meta["metrics"].get("best_epoch"),
        "precision": loaded.meta["metrics"].get("precision"),
        "eval_seconds": eval_seconds, "eval_images_per_s": len(val) / statistics.median(eval_seconds),
        "eval_val_acc_best_pt": float((logits.argmax(1) == val.labels).float().mean()),
        "config": {k: getattr(cfg, k) for k in ("amp", "channels_last", "batch_size", "threads", "optimizer", "lr",
                                                "schedule", "augment", "class_map", "seed")},
        "preprocess": {k: getattr(loaded.preprocess, k) for k in ("size", "channels", "mean", "std")},
        "torch_threads": torch.get_num_threads(), **probe.record(),
    }


def _line(r: dict) -> str:
    return (f"train {r['train_images_per_s']:8.0f} img/s  eval {r['eval_images_per_s']:8.0f} img/s  val acc "
            f"{r['val_acc']:.4f}  load {r['loadavg_before'][0]:.2f}->{r['loadavg_after'][0]:.2f}  others "
            f"{r['others_cores']:.2f} cores")


def _one_run(a, side: str, arch: str, arrays: Path, data_dir: Path, overrides: dict, tr, val, params: int, rep: int,
             work: Path) -> dict:
    if side == "keras":
        r = keras_run(a, arch, arrays, len(tr.classes), params, rep, work)
        if r["params_trainable"] != params:
            raise SystemExit(f"{arch}: Keras {r['params_trainable']:,} params, ferlab {params:,}")
    elif side == "ferlab":
        r = ferlab_run(a, arch, data_dir, overrides, val, rep, work)
        if r["train_size"] != len(tr):
            raise SystemExit(f"{arch}: ferlab trained on {r['train_size']} images, Keras on {len(tr)}")
    else:
        raise ValueError(f"unknown side {side!r}; choose one of: keras, ferlab")
    return r


def _measured(a, side: str, run, discarded: list) -> dict:
    """`run()` on an idle machine: a run during which other processes used `--idle-cores` or more
    is kept in `discarded` and made again, up to `--retries` times (the last one is kept)."""
    for attempt in range(a.retries + 1):
        idle = wait_idle(a.idle_cores, a.max_wait) if a.max_wait else {}
        r = {**run(), **idle, "attempt": attempt}
        if not a.max_wait or r["others_cores"] is None or r["others_cores"] < a.idle_cores or attempt == a.retries:
            return r
        print(f"  discarded ({side}): {_line(r)}", flush=True)
        discarded.append({"side": side, **r})
    raise AssertionError("unreachable")


def compare(a) -> dict:
    import torch

    import ferlab
    from ferlab import train
    from ferlab.models import count_params, create_model, get_spec
    from ferlab.train.inputs import load_data

    sets = parse_sets(a.ferlab_set)
    source = a.data.resolve()
    work = Path(tempfile.mkdtemp(prefix="keras_compare_"))
    res: dict = {
        "issue": 14, "command": [sys.executable, *sys.argv], "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "data": str(source), "limit": a.limit, "batch_size": a.batch_size, "epochs": EPOCHS, "threads": a.threads,
        "repeats": a.repeats, "eval_passes": a.eval_passes, "ferlab_set": sets, "six_class_map": SIX_CLASSES,
        "versions": {"torch": str(torch.__version__), "ferlab": ferlab.__version__, "python": platform.python_version()},
        "cpu": {"count": os.cpu_count(), "model": _cpu_model(), **_cpu_generation(),
                "torch_capability": torch.backends.cpu.get_cpu_capability()},
        "loadavg_start": list(os.getloadavg()), "networks": {},
    }
    try:
        data_dir = make_subset(source, a.limit, a.subset_root) if a.limit else source
        res["subset"] = str(data_dir)
        t_all = time.perf_counter()
        for arch in a.archs:
            spec = get_spec(arch)
            overrides = {**({"class_map": SIX_CLASSES} if spec.num_classes == 6 else {}),
                         **sets.get("*", {}), **sets.get(arch, {})}
            cfg = train.build("report", arch=arch, data=str(data_dir), epochs=EPOCHS, batch_size=a.batch_size,
                              **overrides)
            size, channels = cfg.image_size or spec.input_size, cfg.channels or spec.in_chans
            tr, val = load_data(cfg, size, channels)  # what fit will train on (from ferlab's cache)
            if len(tr.classes) != spec.num_classes:
                raise SystemExit(f"{arch} has {spec.num_classes} classes, the data {len(tr.classes)}: {tr.classes}")
            params = count_params(create_model(arch, num_classes=len(tr.classes), in_chans=channels, input_size=size))
            arrays = work / f"arrays-{arch}"
            _save_arrays(tr, val, arrays)
            print(f"{arch}: {params:,} params, {len(tr)} train / {len(val)} val images at {size}x{size}x{channels}, "
                  f"ferlab overrides {overrides}", flush=True)
            net = {"params": params, "input": [size, size, channels], "classes": tr.classes,
                   "train_size": len(tr), "val_size": len(val), "ferlab_overrides": overrides, "order": [],
                   "keras": [], "ferlab": [], "discarded": []}
            for rep in range(a.repeats):
                order = ("keras", "ferlab") if rep % 2 == 0 else ("ferlab", "keras")
                for side in order:
                    run = functools.partial(_one_run, a, side, arch, arrays, data_dir, overrides, tr, val, params, rep,
                                            work)
                    r = _measured(a, side, run, net["discarded"])
                    net[side].append(r)
                    net["order"].append(side)
                    print(f"  {arch} rep {rep} {side:6s}: {_line(r)}", flush=True)
            for key in ("train_images_per_s", "eval_images_per_s", "val_acc"):
                net[key] = {side: _summary([r[key] for r in net[side]]) for side in ("keras", "ferlab")}
                net[key]["ratio_ferlab_over_keras"] = net[key]["ferlab"]["median"] / net[key]["keras"]["median"]
            net["train_ratio_paired"] = _summary(paired_ratios(net))
            net["keras_versions"] = net["keras"][0]["versions"]
            net["keras_threads"] = net["keras"][0]["threads"]
            res["networks"][arch] = net
            print(f"{arch}: train ratio {net['train_images_per_s']['ratio_ferlab_over_keras']:.2f}, eval ratio "
                  f"{net['eval_images_per_s']['ratio_ferlab_over_keras']:.2f}", flush=True)
            shutil.rmtree(arrays)
            shutil.rmtree(work / "runs", ignore_errors=True)
        res["seconds"] = time.perf_counter() - t_all
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res["loadavg_end"] = list(os.getloadavg())
    return res


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_generation() -> dict:
    """CPU family/model/stepping and the vector extensions that decide either side's kernels. This
    VM's "AMD EPYC" has been more than one generation (family 25 is Zen 3/4, 26 Zen 5), and the
    two sides' speeds move differently between them."""
    info = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            names = {"cpu family": "family", "model": "model_number", "stepping": "stepping"}
            if key in names and names[key] not in info:
                info[names[key]] = value
            elif key == "flags":
                info["flags"] = sorted(f for f in value.split() if f.startswith(("avx512", "amx", "avx_vnni")))
                break
    except OSError:
        pass
    return info


def _generation(cpu: dict) -> str:
    return f" (family {cpu['family']} model {cpu['model_number']})" if "family" in cpu else ""


def paired_ratios(net: dict) -> list[float]:
    """Each repetition's ferlab training img/s over the Keras run beside it (the two ran back to
    back), so that the VM's drift between repetitions cancels."""
    return [f["train_images_per_s"] / k["train_images_per_s"] for k, f in zip(net["keras"], net["ferlab"])]


def table(r: dict) -> str:
    """The Markdown table of a keras_compare JSON: medians over the repetitions, min-max after."""
    def rate(s: dict) -> str:
        return f"{s['median']:,.0f} ({s['min']:,.0f}-{s['max']:,.0f})"

    def acc(s: dict) -> str:
        return f"{100 * s['median']:.1f} %"

    head = ("| network | params | ferlab settings | Keras train img/s | ferlab train img/s | ratio | paired ratios "
            "| Keras eval img/s | ferlab eval img/s | ratio | val acc Keras | val acc ferlab | load avg "
            "| other processes (cores) |")
    lines = [head, "|---" * head.count(" | ") + "|---|"]
    for arch, n in r["networks"].items():
        f = n["ferlab"][0]["config"]
        settings = f"amp {'on' if f['amp'] else 'off'}, channels_last {'on' if f['channels_last'] else 'off'}"
        chosen = sorted({x.get("precision") for x in n["ferlab"]} - {None})
        if chosen:  # what train.precision chose in each repetition
            settings += f", steps {'/'.join(chosen)}"
        runs = [x for side in ("keras", "ferlab") for x in n[side]]
        loads = [x["loadavg_before"][0] for x in runs]
        seen = [x["others_cores"] for x in runs if x.get("others_cores") is not None]
        others = f"{max(seen):.2f} max" if seen else "-"
        tr, ev, va = n["train_images_per_s"], n["eval_images_per_s"], n["val_acc"]
        paired = _summary(paired_ratios(n))
        lines.append(f"| `{arch}` | {n['params']:,} | {settings} | {rate(tr['keras'])} | {rate(tr['ferlab'])} | "
                     f"**{tr['ratio_ferlab_over_keras']:.2f}x** | {paired['median']:.2f}x ({paired['min']:.2f}-"
                     f"{paired['max']:.2f}) | {rate(ev['keras'])} | {rate(ev['ferlab'])} | "
                     f"{ev['ratio_ferlab_over_keras']:.2f}x | {acc(va['keras'])} | {acc(va['ferlab'])} | "
                     f"{min(loads):.1f}-{max(loads):.1f} | {others} |")
    first = next(iter(r["networks"].values()), None)
    kv = first["keras_versions"] if first else {}
    lines.append(f"\n{r['repeats']} repetitions each side (median, min-max), batch {r['batch_size']}, "
                 f"{r['threads']} threads each side, {r['limit'] or 'all'} training images, epoch {r['epochs']} of "
                 f"{r['epochs']} timed; torch {r['versions']['torch']}, TensorFlow {kv.get('tensorflow', '?')} + "
                 f"Keras {kv.get('keras', '?')}; {r['cpu']['model']}{_generation(r['cpu'])}, {r['cpu']['count']} cores; "
                 f"{r['seconds'] / 60:.1f} minutes in all.")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path("../shared/datasets/fer2013"),
                   help="FER2013 image folders (train/ and val/ of class folders)")
    p.add_argument("--archs", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    p.add_argument("--limit", type=int, default=8192, help="first N training images (0 = all)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64, help="both sides (the report recipe's 64)")
    p.add_argument("--threads", type=int, default=2, help="both sides")
    p.add_argument("--eval-passes", type=int, default=3, help="timed val passes after the warm-up")
    p.add_argument("--ferlab-set", nargs="*", default=[], metavar="[ARCH:]KEY=VALUE",
                   help="TrainConfig overrides of the report recipe, e.g. amp=true seed_cnn_a:channels_last=false")
    p.add_argument("--idle-cores", type=float, default=0.3,
                   help="before each run, wait until other processes use fewer cores than this...")
    p.add_argument("--max-wait", type=float, default=600.0, help="...but at most this many seconds (0 = never wait "
                                                                  "and never retry)")
    p.add_argument("--retries", type=int, default=2, help="runs again a run during which other processes used "
                                                          "--idle-cores or more, up to this many times")
    p.add_argument("--keras-python", type=Path, default=Path("/tmp/kerasvenv/bin/python"),
                   help="the Python of Keras' own venv (see keras_side.py)")
    p.add_argument("--subset-root", type=Path, default=Path(tempfile.gettempdir()) / "ferlab_keras_compare",
                   help="where the --limit subsets (folders of symlinks) are kept between runs")
    p.add_argument("--out", type=Path, default=HERE / "results" / "keras_compare.json")
    p.add_argument("--table", type=Path, nargs="?", const=HERE / "results" / "keras_compare.json", metavar="JSON",
                   help="print the Markdown table of a result file and exit")
    a = p.parse_args()
    if a.table:
        print(table(json.loads(a.table.read_text())))
        return
    if not a.keras_python.exists():
        raise SystemExit(f"{a.keras_python} does not exist; create Keras' venv as keras_side.py's docstring says")
    from ferlab.fileio import write_json

    # a plain kill then still removes the temp folder (arrays, run dirs) in compare's `finally`
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    res = compare(a)
    write_json(a.out, res)
    print(table(res))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

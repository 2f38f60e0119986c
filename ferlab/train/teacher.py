"""Knowledge distillation: a teacher's soft labels on a training split, written once, read by `fit`.

`ferlab teacher MODEL... --data D` averages the logits of one or more checkpoints (each with its
recorded TTA) over every image of a split and writes an .npz: fp16 logits (N, C), the class
names, and one key per image (its class folder and file name; for a CSV, a hash of its pixels) so a
run finds each of its images' rows by key whatever subset (`--classes`, `--val-fraction`) or order
it trains on. The
file holds no pickles (read with allow_pickle=False): a hostile file cannot run code.

A run with `--teacher FILE` minimises (1 - a) x cross-entropy + a x T^2 x KL(teacher_T || student_T)
(Hinton et al. 2015), a = `--distill`, T = `--distill-temperature`. The teacher sees each image
unaugmented (offline distillation); the student sees its augmented view.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import checkpoint, data, labels
from ..devices import resolve as resolve_device
from ..evaluate.tta import predict_logits
from ..fileio import atomic_write

BUNDLED = {name: path for name, path in {"fer2013": checkpoint.bundled_path("default").with_name(
    "teacher_fer2013.npz")}.items() if path.is_file()}
"""Teachers shipped with the package, by name (`--teacher fer2013`): soft labels of FER2013's training
split from an ensemble of three FerNet-S trained differently (the file's `models` says which), 0.5 MB.
Only a run on FER2013's train split (the Kaggle folders) finds its images in it."""


class TeacherError(ValueError):
    """A teacher file that does not fit the run: other images, other classes, or not a teacher file."""


def image_keys(ds: data.FaceData) -> list[str]:
    """One key per image that survives moving the dataset and taking subsets of it: `<class
    folder>/<file>`, or for images without files (a CSV's rows) a hash of the pixels."""
    if ds.paths:
        return ["/".join(Path(p).parts[-2:]) for p in ds.paths]
    flat = ds.images.reshape(len(ds), -1).numpy()
    return ["sha1 " + hashlib.sha1(row.tobytes()).hexdigest()[:20] for row in flat]


def write(models: list[str], data_path: str, split: str, out: str | Path, tta: str | None = None,
          device: str = "cpu", amp: bool = False, log=print) -> Path:
    """Average logits (with each model's recorded TTA, or `tta`) of `models` on a split -> `out`."""
    out = Path(out)
    if out.suffix != ".npz":
        raise TeacherError(f"the teacher file must end in .npz, got {out}")
    loaded = [checkpoint.load(m) for m in models]
    classes = loaded[0].classes
    for m in loaded[1:]:
        if m.classes != classes:
            raise TeacherError(f"{m.path} predicts {m.classes}, {loaded[0].path} {classes}: an ensemble needs one "
                               "label set")
    total, ds, where = None, None, resolve_device(device)
    for m, name in zip(loaded, models):
        pp = m.preprocess
        ds = data.load(data_path, split, size=pp.size, channels=pp.channels)
        y = torch.tensor(labels.index_map(ds.classes, classes))[ds.labels]
        view = tta or m.meta.get("config", {}).get("tta", "none")
        logits = predict_logits(m.model.to(where), ds.images, pp, view, amp=amp).double()  # back on the CPU
        # average probabilities' logs, not raw logits: models with other temperatures weigh alike
        logp = (logits / m.temperature).log_softmax(1)
        total = logp if total is None else total + logp
        acc = float((logits.argmax(1) == y).double().mean())
        log(f"{name}: {split} accuracy {acc:.4f} (tta {view})")
    logits = (total / len(loaded)).float()
    keys = image_keys(ds)

    def dump(f):
        np.savez_compressed(f, logits=logits.numpy().astype(np.float16), classes=np.array(classes),
                            keys=np.array(keys), models=np.array([str(m.path) for m in loaded]),
                            split=np.array(split))

    atomic_write(out, dump, what="teacher file")
    return out


def resolve(ref: str) -> Path:
    path = BUNDLED.get(ref, Path(ref))
    if not Path(path).is_file():
        raise TeacherError(f"no teacher file {ref!r}: write one with `ferlab teacher MODEL --data DATA --out "
                           f"teacher.npz`, or name a bundled one ({', '.join(BUNDLED) or 'none shipped'})")
    return Path(path)


def load(ref: str, train: data.FaceData, classes: list[str]) -> torch.Tensor:
    """Teacher logits (len(train), len(classes)) in the run's order and label set."""
    path = resolve(ref)
    try:
        with np.load(path, allow_pickle=False) as f:
            logits, t_classes, keys = f["logits"], [str(c) for c in f["classes"]], [str(k) for k in f["keys"]]
    except (OSError, ValueError, KeyError) as e:
        raise TeacherError(f"{path} is not a teacher file written by `ferlab teacher` ({e})") from None
    if logits.ndim != 2 or logits.shape != (len(keys), len(t_classes)):
        raise TeacherError(f"{path}: logits {logits.shape} do not match {len(keys)} keys x {len(t_classes)} classes")
    if not np.isfinite(logits).all():
        raise TeacherError(f"{path} holds NaN or inf logits: rewrite it with `ferlab teacher`")
    missing = [c for c in classes if c not in t_classes]
    if missing:
        raise TeacherError(f"the teacher {path} knows {t_classes}, not the run's class(es) {missing}: distil only "
                           "label sets the teacher predicts (or write a teacher for this label set)")
    row = {k: i for i, k in enumerate(keys)}
    want = image_keys(train)
    absent = [k for k in want if k not in row]
    if absent:
        raise TeacherError(f"{len(absent)} of the run's {len(want)} training images are not in the teacher {path} "
                           f"(first: {absent[0]!r}): the teacher was written on other data; rewrite it on this "
                           "training split" + (f" (the shipped {ref!r} teacher covers FER2013's Kaggle train folders "
                                               "only; --teacher '' trains without one)" if ref in BUNDLED else ""))
    cols = [t_classes.index(c) for c in classes]
    return torch.from_numpy(logits[[row[k] for k in want]][:, cols].astype(np.float32))


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 x KL(softmax(teacher/T) || softmax(student/T)), batch mean: the T^2 keeps its gradients on
    the cross-entropy's scale whatever T is."""
    return F.kl_div(F.log_softmax(student / temperature, 1), F.log_softmax(teacher / temperature, 1),
                    log_target=True, reduction="batchmean") * temperature ** 2

"""Knowledge distillation: a teacher's soft labels on a training split, written once, read by `fit`.

`ferlab teacher MODEL... --data D` averages the logits of one or more checkpoints (each with its
recorded TTA) over every image of a split and writes an .npz: fp16 logits (N, C), the class
names, and one key per image (its class folder and file name; for a CSV, a hash of its pixels) so a
run finds each of its images' rows by key whatever subset (`--classes`, `--val-fraction`) or order
it trains on. The
file holds no pickles (read with allow_pickle=False): a hostile file cannot run code.

A run with `--teacher FILE` minimises (1 - a) x cross-entropy + a x T^2 x KL(teacher_T || student_T)
(Hinton et al. 2015), a = `--distill`, T = `--distill-temperature`. The teacher saw each image
unaugmented (offline distillation); the student sees its augmented view, so the file's labels fit
only the views it labelled (with flip TTA: the face and its mirror).

A run with `--teacher CHECKPOINT` (a run, a .pt file, 'default') runs the teacher on every batch
the student sees, augmented and mixed alike: consistent teaching (Beyer et al. 2022, "Knowledge
distillation: a good teacher is patient and consistent"), for the cost of the teacher's forward
pass each step; `--teacher A,B` averages several checkpoints' log-probabilities (an ensemble,
each member's forward pass paid every step).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import checkpoint, data, labels
from ..devices import keep_freed_memory, resolve as resolve_device
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
    """Average log-probabilities (each checkpoint with its recorded TTA, or `tta`) of `models` on a
    split -> `out`. A member may be a teacher file (.npz, or a bundled name): its members join the
    ensemble as they were averaged there, so a teacher grows without its checkpoints."""
    out = Path(out)
    if out.suffix != ".npz":
        raise TeacherError(f"the teacher file must end in .npz, got {out}")
    keep_freed_memory()  # else each batch of TTA views pays its page faults again: all but idle in the kernel
    files = [m for m in models if m in BUNDLED or str(m).endswith(".npz")]
    refs = [m for m in models if m not in files]
    loaded = [checkpoint.load(m) for m in refs]
    classes = loaded[0].classes if loaded else _describe(files[0])[0]
    for m in loaded[1:]:
        if m.classes != classes:
            raise TeacherError(f"{m.path} predicts {m.classes}, {loaded[0].path} {classes}: an ensemble needs one "
                               "label set")
    total, ds, where, names = 0.0, None, resolve_device(device), []
    for name, m in zip(refs, loaded):
        pp = m.preprocess
        ds = data.load(data_path, split, size=pp.size, channels=pp.channels)
        view = tta or m.meta.get("config", {}).get("tta", "none")
        logits = predict_logits(m.model.to(where), ds.images, pp, view, amp=amp).double()  # back on the CPU
        # average probabilities' logs, not raw logits: models with other temperatures weigh alike
        total = total + (logits / m.temperature).log_softmax(1)
        names.append(str(m.path))
        log(f"{name}: {split} accuracy {_accuracy(logits, ds, classes):.4f} (tta {view})")
    for ref in files:
        known, members = _describe(ref)
        if known != classes:
            raise TeacherError(f"the teacher {ref} knows {known}, the ensemble {classes}: an ensemble needs one "
                               "label set")
        ds = ds if ds is not None else data.load(data_path, split)  # a folder's keys: its file names, at any size
        logp = load(ref, ds, classes).double()  # the average over its members, in this split's order
        total = total + len(members) * logp
        names += members
        log(f"{ref} ({len(members)} members): {split} accuracy {_accuracy(logp, ds, classes):.4f}")
    logits = (total / len(names)).float()
    keys = image_keys(ds)

    def dump(f):
        np.savez_compressed(f, logits=logits.numpy().astype(np.float16), classes=np.array(classes),
                            keys=np.array(keys), models=np.array(names), split=np.array(split))

    atomic_write(out, dump, what="teacher file")
    return out


def _describe(ref: str) -> tuple[list[str], list[str]]:
    """A teacher file's classes and the models it averages."""
    try:
        with np.load(resolve(ref), allow_pickle=False) as f:
            classes, members = [str(c) for c in f["classes"]], [str(m) for m in f["models"].reshape(-1)]
    except (OSError, ValueError, KeyError) as e:
        raise TeacherError(f"{ref} is not a teacher file written by `ferlab teacher` ({e})") from None
    if not members:
        raise TeacherError(f"{ref} is not a teacher file written by `ferlab teacher`: it names no models")
    return classes, members


def _accuracy(logits: torch.Tensor, ds: data.FaceData, classes: list[str]) -> float:
    y = torch.tensor(labels.index_map(ds.classes, classes))[ds.labels]
    return float((logits.argmax(1) == y).double().mean())


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


def is_file(ref: str) -> bool:
    """Whether `--teacher ref` names a teacher file (soft labels written once) rather than a checkpoint."""
    return ref in BUNDLED or str(ref).endswith(".npz")


class Fixed:
    """A teacher file's logits, aligned with the run's training images: a batch's rows by index."""

    def __init__(self, logits: torch.Tensor):
        self.logits = logits

    def __call__(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return self.logits.index_select(0, idx)


class Online:
    """Teacher checkpoints labelling each batch as the student sees it: the mean of their
    log-probabilities (each after its calibration temperature, as `write` averages an ensemble) of
    the run's classes, in the run's order."""

    def __init__(self, members: list[checkpoint.Loaded], classes: list[str], device: torch.device,
                 channels_last: bool):
        fmt = torch.channels_last if channels_last else torch.preserve_format
        self.models = [m.model.to(device, memory_format=fmt).eval().requires_grad_(False) for m in members]
        self.temperatures = [m.temperature for m in members]
        self.cols = [torch.tensor([m.classes.index(c) for c in classes], device=device) for m in members]

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return torch.stack([(model(x).float() / t).log_softmax(1).index_select(1, cols)
                            for model, t, cols in zip(self.models, self.temperatures, self.cols)]).mean(0)


def prepare(ref: str, train: data.FaceData, classes: list[str], pp, device: torch.device,
            channels_last: bool = False) -> Fixed | Online:
    """`--teacher ref` for a run: a file's logits for its images, or checkpoints (comma-separated:
    an ensemble) run on its batches. Each must read the student's inputs and know its classes."""
    refs = [ref] if Path(ref).exists() else [r.strip() for r in ref.split(",") if r.strip()]
    if not refs:
        raise TeacherError(f"--teacher {ref!r} names no teacher")
    if len(refs) == 1 and is_file(refs[0]):
        return Fixed(load(refs[0], train, classes).to(device))
    if any(is_file(r) for r in refs):
        raise TeacherError(f"--teacher {ref!r}: an online ensemble takes checkpoints only; a teacher file cannot "
                           "label the student's views. Average them all into one file with `ferlab teacher "
                           "MODEL... --out teacher.npz`, or name checkpoints alone")
    return Online([_online_member(r, classes, pp) for r in refs], classes, device, channels_last)


def _online_member(ref: str, classes: list[str], pp) -> checkpoint.Loaded:
    try:
        loaded = checkpoint.load(ref)
    except (checkpoint.CheckpointError, FileNotFoundError) as e:
        raise TeacherError(f"--teacher {ref!r} is neither a teacher file (.npz, {', '.join(BUNDLED) or 'none'}) nor "
                           f"a usable checkpoint: {e}") from None
    tp = loaded.preprocess
    mine, theirs = ((p.size, p.channels, tuple(p.mean), tuple(p.std), tuple(p.pixel_mean)) for p in (pp, tp))
    if mine != theirs:
        raise TeacherError(f"the teacher {loaded.path} reads {tp.size}x{tp.size}x{tp.channels} inputs normalised by "
                           f"mean {tp.mean} std {tp.std}, the run {pp.size}x{pp.size}x{pp.channels} by {pp.mean} "
                           f"{pp.std}: an online teacher sees the student's batches, so train with its "
                           "--image-size/--channels/--mean/--std, or write a teacher file with `ferlab teacher`")
    missing = [c for c in classes if c not in loaded.classes]
    if missing:
        raise TeacherError(f"the teacher {loaded.path} knows {loaded.classes}, not the run's class(es) {missing}: "
                           "distil only label sets the teacher predicts")
    return loaded


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 x KL(softmax(teacher/T) || softmax(student/T)), batch mean: the T^2 keeps its gradients on
    the cross-entropy's scale whatever T is."""
    return F.kl_div(F.log_softmax(student / temperature, 1), F.log_softmax(teacher / temperature, 1),
                    log_target=True, reduction="batchmean") * temperature ** 2

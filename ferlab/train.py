"""The fit loop: in-memory uint8 data, batched augmentation, guards, checkpoints, metrics.csv."""
from __future__ import annotations

import copy
import csv
import json
import math
import os
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import checkpoint, config as config_mod, data
from .augment import augment, mix, preset
from .config import TrainConfig
from .evaluate import metrics, predict_logits, write_confusion_csv
from .models import FERModel, count_params, create_model, get_spec
from .preprocess import Preprocess
from .report import plot_confusion, plot_curves

METRIC_FIELDS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_macro_f1", "lr", "seconds",
                 "elapsed", "images_per_s"]


def _log(msg: str) -> None:
    print(msg, flush=True)  # flushed: runs are often followed through a redirected log file


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the message carries a diagnosis."""


class BadHeadError(ValueError):
    """The model's output layer cannot produce logits for cross-entropy."""


# ----------------------------------------------------------------------------- guards

def check_head(model: FERModel, name: str) -> None:
    """Refuse heads that make cross-entropy training fail (the reports' ReLU output layer)."""
    if model.head_activation is not None:
        raise BadHeadError(
            f"model {name!r} ends in a {model.head_activation} activation. Cross-entropy needs raw logits "
            "(any real value); a ReLU output clips them at 0, gradients die and the loss goes to NaN or "
            "stays flat. Remove the output activation (ferlab applies softmax itself), or pick another "
            "model from `ferlab models`.")


def check_logits(logits: torch.Tensor, num_classes: int) -> None:
    """Probe the first batch: wrong width, or rows that already are probabilities."""
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise BadHeadError(f"model output has shape {tuple(logits.shape)}, expected (batch, {num_classes})")
    if logits.shape[0] > 1 and (logits >= 0).all() and torch.allclose(logits.sum(1), torch.ones(len(logits)),
                                                                       atol=1e-3):
        raise BadHeadError("model output rows already sum to 1 (a softmax head); cross-entropy applies "
                           "log-softmax itself, so a softmax head trains poorly. Output raw logits.")


def diagnose_divergence(step: int, epoch: int, lr: float, cfg: TrainConfig) -> str:
    return (f"loss became NaN/inf at epoch {epoch}, step {step} (lr {lr:.3g}). Likely causes: learning rate "
            f"too high for {cfg.optimizer} (try --lr {cfg.lr / 10:g}); an output activation on the model head; "
            "inputs not normalised; bf16 overflow in a custom layer (try --no-bf16). The run stopped; "
            "best.pt, if any, holds the last good weights.")


def chance_warning(val_acc: float, val_labels: torch.Tensor, num_classes: int, epochs: int) -> str | None:
    majority = torch.bincount(val_labels, minlength=num_classes).max().item() / max(len(val_labels), 1)
    chance = max(1.0 / num_classes, majority)
    if val_acc <= chance + 0.01:
        return (f"validation accuracy {val_acc:.3f} is at chance level ({chance:.3f}) after {epochs} epochs. "
                "Likely causes: preprocessing at prediction differs from training (size, colour mode, "
                "scaling); frozen or mismatched BatchNorm statistics; labels in a different order than the "
                "images (check class folders / CSV codes); learning rate far too high or too low.")
    return None


# ----------------------------------------------------------------------------- pieces of the loop

def lr_at(step: int, total_steps: int, warmup_steps: int, cfg: TrainConfig) -> float:
    """Learning rate at an optimizer step (pure function of the schedule)."""
    if cfg.schedule in ("constant", "plateau"):
        return cfg.lr
    if step < warmup_steps:
        return cfg.lr * (0.1 + 0.9 * step / max(warmup_steps, 1))
    t = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    if cfg.schedule in ("onecycle", "cosine"):
        floor = 1e-3 if cfg.schedule == "onecycle" else 1e-2
        return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))
    raise ValueError(f"unknown schedule {cfg.schedule!r}; choose one of: onecycle, cosine, plateau, constant")


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on BatchNorm and biases: decaying them only hurts small nets.
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose one of: sgd, adamw, adam")


class EMA:
    """Exponential moving average of all weights and buffers; evaluated and saved as best."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        self.updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))  # short warm-up
        for e, m in zip(self.model.state_dict().values(), model.state_dict().values()):
            if e.is_floating_point():
                e.mul_(d).add_(m.detach(), alpha=1 - d)
            else:
                e.copy_(m)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, smoothing: float,
                       class_weights: torch.Tensor | None) -> torch.Tensor:
    k = logits.shape[1]
    if smoothing:
        target = target * (1 - smoothing) + smoothing / k
    per_sample = -(target * F.log_softmax(logits.float(), 1)).sum(1)
    if class_weights is None:
        return per_sample.mean()
    w = target @ class_weights
    return (per_sample * w).sum() / w.sum()


def train_one_epoch(model, opt, train: data.FaceData, cfg: TrainConfig, pp: Preprocess, state: dict,
                    ema: EMA | None, class_weights, g: torch.Generator) -> dict:
    model.train()
    aug = preset(cfg.augment)
    n = len(train)
    if cfg.balance == "sampler":
        counts = torch.bincount(train.labels, minlength=len(train.classes)).float()
        order = torch.multinomial((1.0 / counts)[train.labels], n, replacement=True, generator=g)
    else:
        order = torch.randperm(n, generator=g)
    steps = n // cfg.batch_size
    t0 = time.perf_counter()
    loss_sum, correct, seen = 0.0, 0, 0
    bar = tqdm(range(steps), desc=f"epoch {state['epoch']}", leave=False, disable=not sys.stderr.isatty())
    for i in bar:
        lr = lr_at(state["step"], state["total_steps"], state["warmup_steps"], cfg) * state["plateau_scale"]
        for group in opt.param_groups:
            group["lr"] = lr
        idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
        y = train.labels[idx]
        x = augment(pp.normalize(train.images[idx]), aug, g, crop=cfg.train_crop)
        x, target = mix(x, y, len(train.classes), cfg.mixup, cfg.cutmix, g)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            logits = model(x)
        if state["step"] == 0:
            check_logits(logits.detach().float(), len(train.classes))
        loss = soft_cross_entropy(logits, target, cfg.label_smoothing, class_weights)
        if not torch.isfinite(loss):
            raise TrainingDiverged(diagnose_divergence(i, state["epoch"], lr, cfg))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            ema.update(model)
        state["step"] += 1
        loss_sum += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
        if i % 20 == 0:
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
    dt = time.perf_counter() - t0
    return {"train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1), "lr": lr,
            "seconds": dt, "images_per_s": seen / dt}


def validate(model, val: data.FaceData, pp: Preprocess, cfg: TrainConfig, tta: str = "none",
             bf16: bool = False) -> dict:
    logits = predict_logits(model, val.images, pp, tta, channels_last=cfg.channels_last, bf16=bf16)
    m = metrics(val.labels.numpy(), logits.argmax(1).numpy(), val.classes)
    loss = F.cross_entropy(logits, val.labels).item()
    return {"val_loss": loss, "val_acc": m["accuracy"], "val_macro_f1": m["macro_f1"], "full": m}


# ----------------------------------------------------------------------------- fit

def load_data(cfg: TrainConfig, size: int, channels: int) -> tuple[data.FaceData, data.FaceData]:
    classes = list(cfg.classes) or None
    train = data.load(cfg.data, cfg.train_split, size=size, channels=channels, classes=classes,
                      skip_bad=cfg.skip_bad)
    if cfg.val_fraction:
        train, val = data.stratified_split(train, cfg.val_fraction, cfg.seed)
    else:
        val = data.load(cfg.data, cfg.val_split, size=size, channels=channels, classes=train.classes,
                        skip_bad=cfg.skip_bad)
    for d in (train, val):
        for path, why in d.skipped:
            print(f"skipped {path}: {why}", file=sys.stderr)
    return train, val


def _is_better(value: float, best: float | None, monitor: str) -> bool:
    if best is None:
        return True
    return value < best if monitor == "val_loss" else value > best


def fit(cfg: TrainConfig, run_dir: str | Path | None = None, resume: bool = False,
        log=_log) -> Path:
    """Train per `cfg`; returns the run directory holding best.pt, last.pt, metrics.csv and plots."""
    spec = get_spec(cfg.model)
    size = cfg.image_size or spec.input_size
    channels = cfg.channels or spec.in_chans
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    if cfg.train_crop > size:
        raise ValueError(f"train_crop {cfg.train_crop} exceeds the {size}-pixel input of {cfg.model}; "
                         f"choose a crop of at most {size} (or 0 for none)")
    if len(cfg.mean) not in (1, channels):
        cfg = replace(cfg, mean=cfg.mean[:1] * channels, std=cfg.std[:1] * channels)
    pp = Preprocess(size=size, channels=channels, mean=cfg.mean, std=cfg.std, crop_margin=cfg.crop_margin)

    run_dir = Path(run_dir) if run_dir else Path(cfg.out) / (cfg.name or f"{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}")
    if not resume and ((run_dir / "last.pt").exists() or (run_dir / "best.pt").exists()):
        raise FileExistsError(f"{run_dir} already holds a run; resume it with `ferlab train --resume {run_dir}` "
                              "or choose another --name")
    t_load = time.perf_counter()
    train, val = load_data(cfg, size, channels)
    log(f"data: train {len(train)} {train.class_counts()} | val {len(val)} "
        f"({time.perf_counter() - t_load:.2f}s to load)")
    classes = train.classes
    model = create_model(cfg.model, num_classes=len(classes), in_chans=channels, input_size=size)
    check_head(model, cfg.model)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)
    ema = EMA(model, cfg.ema) if cfg.ema else None
    class_weights = None
    if cfg.balance == "weights":
        counts = torch.bincount(train.labels, minlength=len(classes)).float().clamp(min=1)
        class_weights = len(train) / (len(classes) * counts)
    steps_per_epoch = len(train) // cfg.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch size {cfg.batch_size} exceeds the {len(train)} training images; lower --batch-size")
    state = {"epoch": 0, "step": 0, "total_steps": steps_per_epoch * cfg.epochs,
             "warmup_steps": int(steps_per_epoch * cfg.warmup_epochs), "plateau_scale": 1.0, "best": None,
             "bad_epochs": 0, "elapsed": 0.0}
    g = torch.Generator().manual_seed(cfg.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = run_dir / "metrics.csv"
    if resume:
        last = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)
        model.load_state_dict(last["state_dict"])
        opt.load_state_dict(last["optimizer"])
        if ema is not None and last.get("ema") is not None:
            ema.model.load_state_dict(last["ema"])
            ema.updates = last["train_state"]["step"]
        state.update(last["train_state"])
        g.set_state(last["rng"])
        log(f"resuming {run_dir} after epoch {state['epoch']}")
    config_mod.save(cfg, run_dir / "config.yaml")  # on resume too: overrides such as --epochs are recorded
    if not resume:
        with open(metrics_path, "w", newline="") as f:
            csv.writer(f).writerow(METRIC_FIELDS)

    n_params = count_params(model)
    base_meta = {"params": n_params, "train_size": len(train), "val_size": len(val),
                 "class_counts": train.class_counts()}

    def payload(weights_model, metrics_, **extra):
        return checkpoint.make_payload(weights_model, cfg.model, classes, pp, config=cfg.to_dict(),
                                       metrics={**base_meta, **metrics_}, epoch=state["epoch"], extra=extra)

    warned = False
    while state["epoch"] < cfg.epochs:
        state["epoch"] += 1
        t0 = time.perf_counter()
        tr = train_one_epoch(model, opt, train, cfg, pp, state, ema, class_weights, g)
        eval_model = ema.model if ema is not None else model
        va = validate(eval_model, val, pp, cfg, bf16=cfg.bf16)  # per-epoch: bf16 is 3x faster
        state["elapsed"] += time.perf_counter() - t0
        row = {"epoch": state["epoch"], **tr, **{k: v for k, v in va.items() if k != "full"},
               "elapsed": state["elapsed"]}
        with open(metrics_path, "a", newline="") as f:
            csv.writer(f).writerow([row[k] for k in METRIC_FIELDS])
        value = row[cfg.monitor]
        improved = _is_better(value, state["best"], cfg.monitor)
        log(f"epoch {state['epoch']}/{cfg.epochs}  train loss {tr['train_loss']:.3f} acc {tr['train_acc']:.3f}  "
            f"val loss {va['val_loss']:.3f} acc {va['val_acc']:.4f} f1 {va['val_macro_f1']:.3f}  "
            f"{tr['images_per_s']:.0f} img/s  {state['elapsed'] / 60:.1f} min{'  *' if improved else ''}")
        if improved:
            state["best"], state["bad_epochs"] = value, 0
            checkpoint.save(payload(eval_model, {"val_acc": va["val_acc"], "val_macro_f1": va["val_macro_f1"],
                                                 "val_loss": va["val_loss"], "best_epoch": state["epoch"]}),
                            run_dir / "best.pt")
        else:
            state["bad_epochs"] += 1
        if cfg.schedule == "plateau" and state["bad_epochs"] and state["bad_epochs"] % 3 == 0:
            state["plateau_scale"] *= 0.5
        checkpoint.save(payload(model, {"val_acc": va["val_acc"]}, optimizer=opt.state_dict(),
                                ema=ema.model.state_dict() if ema else None, train_state=dict(state),
                                rng=g.get_state()), run_dir / "last.pt")
        if not warned and state["epoch"] >= cfg.chance_epochs:
            msg = chance_warning(va["val_acc"], val.labels, len(classes), state["epoch"])
            if msg:
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
                warned = True
        if cfg.early_stop and state["bad_epochs"] >= cfg.early_stop:
            log(f"early stopping: no {cfg.monitor} improvement for {cfg.early_stop} epochs")
            break
        if cfg.max_minutes and state["elapsed"] >= cfg.max_minutes * 60:
            log(f"time budget of {cfg.max_minutes} min reached")
            break
    finish(run_dir, cfg, val, log)
    return run_dir


def finish(run_dir: Path, cfg: TrainConfig, val: data.FaceData, log=_log) -> dict:
    """Final validation of best.pt with the configured TTA; writes eval, confusion and curves."""
    payload = checkpoint.read(run_dir / "best.pt")
    loaded = checkpoint.build(payload)
    m = metrics(val.labels.numpy(), predict_logits(loaded.model, val.images, loaded.preprocess, cfg.tta)
                .argmax(1).numpy(), val.classes)
    m.update({"split": cfg.val_split or f"train[{cfg.val_fraction}]", "tta": cfg.tta})
    (run_dir / "eval_val.json").write_text(json.dumps(m, indent=1))
    write_confusion_csv(m, run_dir / "confusion_val.csv")
    plot_confusion(m, run_dir / "confusion_val.png", title=f"{cfg.model} val (tta {cfg.tta})")
    plot_curves(run_dir / "metrics.csv", run_dir / "curves.png", title=cfg.model)
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    payload["metrics"].update({"val_acc_tta": m["accuracy"], "val_macro_f1_tta": m["macro_f1"], "tta": cfg.tta,
                               "epochs_run": len(rows),
                               "train_minutes": float(rows[-1]["elapsed"]) / 60 if rows else 0.0})
    checkpoint.save(payload, run_dir / "best.pt")
    log(f"best checkpoint: val acc {payload['metrics']['val_acc']:.4f}, with tta {cfg.tta}: {m['accuracy']:.4f} "
        f"macro-F1 {m['macro_f1']:.4f} -> {run_dir}")
    return m


def resume(run_dir: str | Path, log=_log, **overrides) -> Path:
    """Continue a run from its last.pt with the config saved beside it (epochs may be raised)."""
    run_dir = Path(run_dir)
    if not (run_dir / "last.pt").exists():
        raise FileNotFoundError(f"{run_dir} holds no last.pt to resume from")
    cfg = config_mod.build(file=run_dir / "config.yaml", **overrides)
    return fit(cfg, run_dir=run_dir, resume=True, log=log)

"""The fit loop: in-memory uint8 data, batched augmentation, guards, checkpoints, metrics.csv.

A run directory holds `config.yaml`, `metrics.csv`, `best.pt` (the best validation epoch) and
`last.pt` (everything needed to resume: weights, optimizer, EMA, `TrainState`, RNG states).
"""
from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .. import checkpoint, data
from ..data.augment import augment, mix
from ..data.augment_config import preset
from ..evaluate.metrics import metrics
from ..evaluate.tta import predict_logits
from ..fileio import clean_stale_tmp
from ..models import count_params, create_model, get_spec
from ..preprocess import Preprocess
from . import config as config_mod, history
from .config import TrainConfig, with_channels
from .finish import finish
from .guards import TrainingDiverged, chance_warning, check_head, check_logits, diagnose_divergence
from .optim import lr_at, make_ema, make_optimizer, make_plateau
from .state import TrainState, rng_state, set_rng_state


def _log(msg: str) -> None:
    print(msg, flush=True)  # flushed: runs are often followed through a redirected log file


def train_one_epoch(model, opt, train: data.FaceData, cfg: TrainConfig, pp: Preprocess, state: TrainState,
                    ema, class_weights, g: torch.Generator) -> dict:
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
    lr = opt.param_groups[0]["lr"]
    bar = tqdm(range(steps), desc=f"epoch {state.epoch}", leave=False, disable=not sys.stderr.isatty())
    for i in bar:
        if cfg.schedule != "plateau":  # plateau: ReduceLROnPlateau owns the optimizer's lr
            lr = lr_at(state, cfg)
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
        if state.step == 0:
            check_logits(logits.detach().float(), len(train.classes))
        loss = F.cross_entropy(logits.float(), target, weight=class_weights, label_smoothing=cfg.label_smoothing)
        if not torch.isfinite(loss):
            raise TrainingDiverged(diagnose_divergence(f"the loss (step {i})", state.epoch, lr, cfg))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            ema.update_parameters(model)
        state.step += 1
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


def load_data(cfg: TrainConfig, size: int, channels: int,
              classes: list[str] | None = None) -> tuple[data.FaceData, data.FaceData]:
    """Train and validation splits in the label set `classes` (default: `cfg.classes`, else the
    dataset's own). Classes without a single training image are refused: they cannot be learnt."""
    want = list(classes or cfg.classes) or None
    train = data.load(cfg.data, cfg.train_split, size=size, channels=channels, classes=want, skip_bad=cfg.skip_bad)
    if cfg.val_fraction:
        train, val = data.stratified_split(train, cfg.val_fraction, cfg.seed)
    else:
        val = data.load(cfg.data, cfg.val_split, size=size, channels=channels, classes=train.classes,
                        skip_bad=cfg.skip_bad)
    for d in (train, val):
        for path, why in d.skipped:
            print(f"skipped {path}: {why}", file=sys.stderr)
    empty = [c for c, n in train.class_counts().items() if n == 0]
    if empty:
        raise data.BadInputError(f"class(es) {empty} have no training images in {cfg.data}; add images or leave "
                                 f"them out with --classes {','.join(c for c in train.classes if c not in empty)}")
    return train, val


def _is_better(value: float, best: float | None, monitor: str) -> bool:
    if best is None:
        return True
    if not np.isfinite(value):
        return False
    return value < best if monitor == "val_loss" else value > best


def _resume_classes(cfg: TrainConfig, last: dict, run_dir: Path) -> list[str]:
    """The run's label set, by name: resuming with other classes would train on permuted labels."""
    saved = list(last["classes"])
    if cfg.classes and set(cfg.classes) != set(saved):
        raise ValueError(f"cannot resume {run_dir}: it was trained on classes {saved}, but --classes gives "
                         f"{list(cfg.classes)}; resume without --classes or start a new run")
    return saved


def fit(cfg: TrainConfig, run_dir: str | Path | None = None, resume: bool = False, log=_log) -> Path:
    """Train per `cfg`; returns the run directory holding best.pt, last.pt, metrics.csv and plots."""
    spec = get_spec(cfg.arch)
    size = cfg.image_size or spec.input_size
    channels = cfg.channels or spec.in_chans
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    if cfg.train_crop > size:
        raise ValueError(f"train_crop {cfg.train_crop} exceeds the {size}-pixel input of {cfg.arch}; "
                         f"choose a crop of at most {size} (or 0 for none)")
    cfg = with_channels(cfg, channels)
    pp = Preprocess(size=size, channels=channels, mean=cfg.mean, std=cfg.std, crop_margin=cfg.crop_margin)

    run_dir = Path(run_dir) if run_dir else Path(cfg.out) / (cfg.name or f"{cfg.arch}-{time.strftime('%Y%m%d-%H%M%S')}")
    if not resume and ((run_dir / "last.pt").exists() or (run_dir / "best.pt").exists()):
        raise FileExistsError(f"{run_dir} already holds a run; resume it with `ferlab train --resume {run_dir}` "
                              "or choose another --name")
    last = checkpoint.read(run_dir / "last.pt") if resume else None
    t_load = time.perf_counter()
    try:
        train, val = load_data(cfg, size, channels, _resume_classes(cfg, last, run_dir) if last else None)
    except data.BadInputError as e:
        if last is None:
            raise
        raise ValueError(f"cannot resume {run_dir}: it was trained on classes {list(last['classes'])}, and the "
                         f"data no longer fits them ({e})") from None
    log(f"data: train {len(train)} {train.class_counts()} | val {len(val)} "
        f"({time.perf_counter() - t_load:.2f}s to load)")
    classes = train.classes
    model = create_model(cfg.arch, num_classes=len(classes), in_chans=channels, input_size=size)
    check_head(model, cfg.arch)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)
    plateau = make_plateau(opt, cfg)
    ema = make_ema(model, cfg.ema)
    class_weights = None
    if cfg.balance == "weights":
        counts = torch.bincount(train.labels, minlength=len(classes)).float().clamp(min=1)
        class_weights = len(train) / (len(classes) * counts)
    steps_per_epoch = len(train) // cfg.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch size {cfg.batch_size} exceeds the {len(train)} training images; lower --batch-size")
    state = TrainState(total_steps=steps_per_epoch * cfg.epochs, warmup_steps=int(steps_per_epoch * cfg.warmup_epochs))
    g = torch.Generator().manual_seed(cfg.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    for p in clean_stale_tmp(run_dir):
        log(f"removed {p.name}, a temp file left by an interrupted save")
    metrics_path = run_dir / "metrics.csv"
    if last is not None:
        state = _restore(last, run_dir, cfg, model, opt, plateau, ema, g, steps_per_epoch, log)
        dropped = history.truncate(metrics_path, state.epoch)
        if dropped:
            log(f"metrics.csv: dropped {dropped} row(s) after epoch {state.epoch}, written after last.pt was saved")
    else:
        history.start(metrics_path)
    config_mod.save(cfg, run_dir / "config.yaml")  # on resume too: overrides such as --epochs are recorded

    base_meta = {"params": count_params(model), "train_size": len(train), "val_size": len(val),
                 "class_counts": train.class_counts()}

    def payload(weights_model, metrics_, **extra):
        return checkpoint.make_payload(weights_model, cfg.arch, classes, pp, config=cfg.to_dict(),
                                       metrics={**base_meta, **metrics_}, epoch=state.epoch, extra=extra)

    warned = False
    while state.epoch < cfg.epochs:
        state.epoch += 1
        t0 = time.perf_counter()
        tr = train_one_epoch(model, opt, train, cfg, pp, state, ema, class_weights, g)
        eval_model = ema.module if ema is not None else model
        if checkpoint.non_finite(eval_model.state_dict()):  # e.g. BatchNorm variances at inf, loss still finite
            raise TrainingDiverged(diagnose_divergence("the weights", state.epoch, tr["lr"], cfg))
        va = validate(eval_model, val, pp, cfg, bf16=cfg.bf16)  # per-epoch: bf16 is 3x faster
        state.elapsed += time.perf_counter() - t0
        row = {"epoch": state.epoch, **tr, **{k: v for k, v in va.items() if k != "full"}, "elapsed": state.elapsed}
        history.append(metrics_path, row)
        value = row[cfg.monitor]
        improved = _is_better(value, state.best, cfg.monitor)
        log(f"epoch {state.epoch}/{cfg.epochs}  train loss {tr['train_loss']:.3f} acc {tr['train_acc']:.3f}  "
            f"val loss {va['val_loss']:.3f} acc {va['val_acc']:.4f} f1 {va['val_macro_f1']:.3f}  "
            f"{tr['images_per_s']:.0f} img/s  {state.elapsed / 60:.1f} min{'  *' if improved else ''}")
        if improved:
            state.best, state.best_epoch, state.bad_epochs = value, state.epoch, 0
            checkpoint.save(payload(eval_model, {"val_acc": va["val_acc"], "val_macro_f1": va["val_macro_f1"],
                                                 "val_loss": va["val_loss"], "best_epoch": state.epoch,
                                                 "monitor": cfg.monitor, "best": value}),
                            run_dir / "best.pt")
        else:
            state.bad_epochs += 1
        if plateau is not None:
            plateau.step(value)
        checkpoint.save(payload(model, {"val_acc": va["val_acc"]}, optimizer=opt.state_dict(),
                                ema=ema.state_dict() if ema is not None else None,
                                plateau=plateau.state_dict() if plateau is not None else None,
                                train_state=state.to_dict(), rng=rng_state(g)), run_dir / "last.pt")
        if not warned and state.epoch >= cfg.chance_epochs:
            msg = chance_warning(va["val_acc"], val.labels, len(classes), state.epoch)
            if msg:
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
                warned = True
        if cfg.early_stop and state.bad_epochs >= cfg.early_stop:
            log(f"early stopping: no {cfg.monitor} improvement for {cfg.early_stop} epochs")
            break
        if cfg.max_minutes and state.elapsed >= cfg.max_minutes * 60:
            log(f"time budget of {cfg.max_minutes} min reached")
            break
    finish(run_dir, cfg, val, log)
    return run_dir


def _restore(last: dict, run_dir: Path, cfg: TrainConfig, model, opt, plateau, ema, g: torch.Generator,
             steps_per_epoch: int, log) -> TrainState:
    """Model, optimizer, EMA, schedule, RNG streams and the best metric of an interrupted run."""
    where = run_dir / "last.pt"
    missing = [k for k in ("optimizer", "train_state", "rng") if last.get(k) is None]
    if missing:
        raise ValueError(f"{where} cannot be resumed: it holds no {', '.join(missing)} (is it a shipped copy?)")
    if last["model"]["name"] != cfg.arch:
        raise ValueError(f"cannot resume {run_dir} as {cfg.arch!r}: last.pt holds a {last['model']['name']!r}")
    try:
        model.load_state_dict(last["state_dict"])
        opt.load_state_dict(last["optimizer"])
        if ema is not None and last.get("ema") is not None:
            ema.load_state_dict(last["ema"])
        if plateau is not None and last.get("plateau") is not None:
            plateau.load_state_dict(last["plateau"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise ValueError(f"{where} does not fit this run's config ({' '.join(str(e).split())[:300]}); "
                         "resume with the options it was trained with") from None
    state = TrainState.from_dict(last["train_state"])
    set_rng_state(last["rng"], g)
    # The best metric comes from best.pt on disk: a kill between saving best.pt and last.pt must not
    # let the re-run epoch overwrite a better best.pt.
    best_path = run_dir / "best.pt"
    if best_path.exists():
        bm = checkpoint.read(best_path).get("metrics", {})
        if bm.get("monitor", "val_acc") == cfg.monitor and cfg.monitor in bm:
            state.best, state.best_epoch = float(bm[cfg.monitor]), int(bm.get("best_epoch", 0))
    old_total = state.total_steps
    new_total = steps_per_epoch * cfg.epochs
    if new_total != old_total and cfg.schedule == "cosine":
        if cfg.restart_schedule:
            state.schedule_start, state.total_steps = state.step, new_total
            state.warmup_steps = min(state.warmup_steps, (new_total - state.step) // 10)
            log(f"schedule: a fresh warm-up + cosine over epochs {state.epoch + 1}-{cfg.epochs}")
        else:
            log(f"schedule: keeping the original cosine over {old_total // steps_per_epoch} epochs; epochs beyond "
                f"it run at its final lr (lr x {cfg.lr_floor:g}). Pass --restart-schedule for a fresh warm-up + "
                f"cosine over epochs {state.epoch + 1}-{cfg.epochs}")
    log(f"resuming {run_dir} after epoch {state.epoch} (best {cfg.monitor} {state.best} at epoch {state.best_epoch})")
    return state


def resume(run_dir: str | Path, log=_log, **overrides) -> Path:
    """Continue a run from its last.pt with the config saved beside it (epochs may be raised)."""
    run_dir = Path(run_dir)
    if not (run_dir / "last.pt").exists():
        raise FileNotFoundError(f"{run_dir} holds no last.pt to resume from")
    cfg = config_mod.build(file=run_dir / "config.yaml", **overrides)
    return fit(cfg, run_dir=run_dir, resume=True, log=log)

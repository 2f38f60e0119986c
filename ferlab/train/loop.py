"""The fit loop: uint8 data on the training device, batched augmentation there, mixed precision,
guards, checkpoints, metrics.csv; one process or many (torchrun, see `distributed`).

A run directory holds `config.yaml`, `metrics.csv`, `best.pt` (the best validation epoch) and
`last.pt` (everything needed to resume: weights, optimizer, EMA, `TrainState`, RNG states).
"""
from __future__ import annotations

import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .. import checkpoint, data, history
from ..data.augment import augment, mix
from ..data.augment_config import resolve
from ..data.degrade import degrade
from ..devices import autocast, describe, grad_scaler, keep_freed_memory
from ..evaluate.metrics import metrics
from ..evaluate.tta import predict_logits
from ..fileio import clean_stale_tmp
from ..models import count_params, create_model, get_spec
from ..preprocess import Preprocess
from . import budget, config as config_mod, distributed, precision, resize, sam, teacher as teacher_mod
from .config import TrainConfig, with_channels
from .finetune import apply_stage, collapse_warning, hold_batchnorm, init_from
from .finish import finish
from .guards import (TrainingDiverged, chance_warning, check_head, check_logits, diagnose_divergence, holds_run,
                     refuse_taken_follow_up)
from .inputs import epoch_order, epoch_size, load_data, pixel_maxabs, preprocess_for
from .job import Job
from .optim import lr_at, make_ema, make_optimizer, make_plateau
from .restore import restore, resume_classes
from .state import TrainState, rng_state
from .teacher import distill_loss


def _log(msg: str) -> None:
    print(msg, flush=True)  # flushed: runs are often followed through a redirected log file


def train_one_epoch(job: Job) -> dict:
    # "matmul" precision holds for the whole epoch: the backward's multiplies run outside the forward
    with precision.matmuls(job.precision):
        return _epoch_steps(job)


def _epoch_steps(job: Job) -> dict:
    cfg, ctx, state, model = job.cfg, job.ctx, job.state, job.model
    model.train()
    hold_batchnorm(distributed.unwrap(model), cfg)  # frozen layers keep their pretrained statistics
    aug = resolve(cfg.augment, cfg.aug)
    order = epoch_order(job)
    steps = len(order) // cfg.batch_size
    side = resize.side(cfg, job.pp.size, state.epoch, state.planned_epochs or cfg.epochs)
    lr = job.opt.param_groups[0]["lr"]
    t0 = time.perf_counter()
    loss_sum, seen = 0.0, 0
    # each step writes its predicted classes here, compared with the labels once per epoch: one
    # op a step instead of four (on the small report networks each op is ~1 % of a step)
    preds = torch.empty(steps * cfg.batch_size, dtype=torch.int64, device=ctx.device)
    bar = tqdm(range(steps), desc=f"epoch {state.epoch}", leave=False, disable=not (sys.stderr.isatty() and ctx.main))
    for i in bar:
        if cfg.schedule != "plateau":  # plateau: ReduceLROnPlateau owns the optimizer's lr
            lr = lr_at(state, cfg)
            for group in job.opt.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
        idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
        # index_select, not images[idx]: advanced indexing costs ~0.1 ms more per batch on a CPU
        y = job.labels.index_select(0, idx)
        # lighting, blur and JPEG act on the pixels, before normalisation (a no-op unless the preset sets them)
        x = degrade(job.images.index_select(0, idx), aug, job.g_aug)
        x = resize.shrink(augment(job.pp.normalize(x), aug, job.g_aug, crop=cfg.train_crop), side)
        if cfg.mixup or cfg.cutmix or job.class_weights is not None:
            # soft targets; class weights then weigh each sample's loss, averaged over the batch
            x, target = mix(x, y, job.num_classes, cfg.mixup, cfg.cutmix, job.g_aug)
        else:
            target = y  # class indices: cross-entropy's own path, no one-hot per step
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(ctx.device, job.precision == "autocast"):  # once per batch: a SAM step forwards twice
            soft = job.teacher(x, idx) if job.teacher is not None else None  # online: labels this very view
        logits, loss = _forward(job, x, target, soft)
        if state.step == 0:
            check_logits(logits.detach().float(), job.num_classes)
        # every rank learns of a NaN on any rank at the same step, so all stop together
        loss_value = loss.item()  # the one host sync of a step, which the NaN check needs anyway
        if distributed.any_rank(not math.isfinite(loss_value), ctx):
            raise TrainingDiverged(diagnose_divergence(f"the loss (step {i})", state.epoch, lr, cfg))
        job.opt.zero_grad(set_to_none=True)
        _backward(job, loss)
        if cfg.sam:  # the step descends with the gradient at the weights moved uphill by rho
            with sam.ascent(model, cfg.sam):
                job.opt.zero_grad(set_to_none=True)
                _backward(job, _forward(job, x, target, soft)[1])
        if job.scaler is not None:
            job.scaler.step(job.opt)
            job.scaler.update()
        else:
            job.opt.step()
        if job.ema is not None:
            job.ema.update_parameters(distributed.unwrap(model))
        state.step += 1
        loss_sum += loss_value * len(y)
        torch.argmax(logits.detach(), 1, out=preds[seen:seen + len(y)])
        seen += len(y)
        if i % 20 == 0 and not bar.disable:
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{_correct(job, order, preds, seen) / seen:.3f}")
    correct = _correct(job, order, preds, seen)
    dt = time.perf_counter() - t0
    loss_sum, correct, seen = distributed.sum_all([loss_sum, float(correct), float(seen)], ctx)
    return {"train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1), "lr": lr,
            "seconds": dt, "images_per_s": seen / dt, "side": side}


def _forward(job: Job, x: torch.Tensor, target: torch.Tensor,
             soft: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's logits and loss: cross-entropy (smoothed, weighted or on mixed targets), plus the
    distillation term towards the teacher's logits `soft`."""
    cfg = job.cfg
    with autocast(job.ctx.device, job.precision == "autocast"):
        logits = job.model(x)
    logits32 = logits.float()
    loss = F.cross_entropy(logits32, target, weight=job.class_weights, label_smoothing=cfg.label_smoothing)
    if soft is not None:
        kd = distill_loss(logits32, soft, cfg.distill_temperature)
        loss = (1 - cfg.distill) * loss + cfg.distill * kd
    return logits, loss


def _backward(job: Job, loss: torch.Tensor) -> None:
    if job.scaler is not None:  # float16 autocast: scale the loss so small gradients survive
        job.scaler.scale(loss).backward()
    else:
        loss.backward()


def _correct(job: Job, order: torch.Tensor, preds: torch.Tensor, seen: int) -> int:
    """How many of the epoch's first `seen` training images were classified right."""
    return int((preds[:seen] == job.labels.index_select(0, order[:seen])).sum())


def validate(model, val: data.FaceData, pp: Preprocess, cfg: TrainConfig, tta: str = "none",
             amp: bool = False) -> dict:
    logits = predict_logits(model, val.images, pp, tta, channels_last=cfg.channels_last, amp=amp)
    m = metrics(val.labels.numpy(), logits.argmax(1).numpy(), val.classes)
    loss = F.cross_entropy(logits, val.labels).item()
    per_class = {f"val_{k}_{c}": r[k] for c, r in m["per_class"].items() for k in ("precision", "recall")}
    return {"val_loss": loss, "val_acc": m["accuracy"], "val_macro_f1": m["macro_f1"], **per_class}


def _is_better(value: float, best: float | None, monitor: str) -> bool:
    if best is None:
        return True
    if not np.isfinite(value):
        return False
    return value < best if monitor == "val_loss" else value > best


def _threads(cfg: TrainConfig) -> int:
    # torchrun's processes on one machine share its cores
    return cfg.threads or max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def fit(cfg: TrainConfig, run_dir: str | Path | None = None, resume: bool = False, log=_log) -> Path:
    """Train per `cfg`, then the follow-up stage `cfg.then` names, if any (`config.follow_up`);
    returns the last stage's run directory, holding best.pt, last.pt, metrics.csv and plots.
    Under torchrun every process calls this; rank 0 alone writes files and logs."""
    refuse_taken_follow_up(cfg, run_dir)
    keep_freed_memory()
    ctx = distributed.setup(cfg.device)
    log = log if ctx.main else (lambda m: None)
    try:
        while True:  # the follow-up stage runs in the same process group (torchrun starts one per job)
            out = _fit(cfg, ctx, run_dir, resume, log)
            distributed.barrier(ctx)  # rank 0 finishes last (final scoring); no rank tears down under it
            if not cfg.then:
                return out
            nxt = config_mod.follow_up(cfg, out)
            log(f"then {cfg.then}: from {out / 'best.pt'} into {Path(nxt.out) / nxt.name}")
            cfg, run_dir, resume = nxt, None, False
    except TrainingDiverged:
        distributed.barrier(ctx)  # every rank raised at the same step: leave together
        raise
    finally:
        distributed.teardown(ctx)


def _fit(cfg: TrainConfig, ctx: distributed.Context, run_dir, resume: bool, log) -> Path:
    spec = get_spec(cfg.arch)
    size = cfg.image_size or spec.input_size
    channels = cfg.channels or spec.in_chans
    torch.set_num_threads(_threads(cfg))
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    if cfg.train_crop > size:
        raise ValueError(f"train_crop {cfg.train_crop} exceeds the {size}-pixel input of {cfg.arch}; "
                         f"choose a crop of at most {size} (or 0 for none)")
    if cfg.sync_bn and ctx.device.type != "cuda":
        raise ValueError("sync_bn needs CUDA devices (PyTorch's SyncBatchNorm runs on GPUs only); drop --sync-bn")
    cfg = with_channels(cfg, channels)
    init = checkpoint.read(cfg.init) if cfg.init and not resume else None
    if init is not None and init["model"]["name"] != cfg.arch:
        raise ValueError(f"--init {cfg.init} holds a {init['model']['name']} but the architecture is {cfg.arch}; "
                         "leave --arch out (a recipe may set it) to fine-tune the checkpoint's own")
    pp = preprocess_for(cfg, size, channels, spec, init)

    name = cfg.name or distributed.broadcast(f"{cfg.arch}-{time.strftime('%Y%m%d-%H%M%S')}", ctx)
    run_dir = Path(run_dir) if run_dir else Path(cfg.out) / name
    if not resume and holds_run(run_dir):
        raise FileExistsError(f"{run_dir} already holds a run; resume it with `ferlab train --resume {run_dir}` "
                              "or choose another --name")
    last = checkpoint.read(run_dir / "last.pt") if resume else None
    t_load = time.perf_counter()
    try:
        train, val = load_data(cfg, size, channels, resume_classes(cfg, last, run_dir) if last else None)
    except data.BadInputError as e:
        if last is None:
            raise
        raise ValueError(f"cannot resume {run_dir}: it was trained on classes {list(last['classes'])}, and the "
                         f"data no longer fits them ({e})") from None
    log(f"data: train {len(train)} {train.class_counts()} | val {len(val)} "
        f"({time.perf_counter() - t_load:.2f}s to load)")
    if cfg.normalization == "pixel_maxabs":
        pp = pixel_maxabs(pp, train.images)
    classes = train.classes
    device = ctx.device
    model = create_model(cfg.arch, num_classes=len(classes), in_chans=channels, input_size=size, head=cfg.head)
    check_head(model, cfg.arch)
    if cfg.drop_path:
        model.set_drop_path(cfg.drop_path)
    start = _starting_weights(model, cfg, init, classes, log)
    model = model.to(device, memory_format=torch.channels_last if cfg.channels_last else torch.preserve_format)
    steps_per_epoch = epoch_size(train.labels, len(classes), cfg) // ctx.world // cfg.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch size {cfg.batch_size} x {ctx.world} process(es) exceeds the {len(train)} training "
                         "images; lower --batch-size")
    pinned = device.type == "cuda"  # the uint8 split goes to the device once, not per batch
    images = (train.images.pin_memory() if pinned else train.images).to(device, non_blocking=pinned)
    class_weights = None
    if cfg.balance == "weights":
        counts = torch.bincount(train.labels, minlength=len(classes)).float().clamp(min=1)
        class_weights = (len(train) / (len(classes) * counts)).to(device)
    job = Job(cfg, ctx, model, make_optimizer(model, cfg), grad_scaler(device, cfg.amp), make_ema(model, cfg.ema),
              pp, images, train.labels.to(device), len(classes), class_weights,
              torch.Generator().manual_seed(cfg.seed), torch.Generator(device).manual_seed(cfg.seed + 1 + ctx.rank),
              TrainState(total_steps=steps_per_epoch * cfg.epochs, warmup_steps=int(steps_per_epoch * cfg.warmup_epochs)),
              teacher_mod.prepare(cfg.teacher, train, classes, pp, device, cfg.channels_last) if cfg.teacher else None,
              distributed.broadcast(precision.choose(model, device, cfg) if ctx.main else None, ctx))
    plateau = make_plateau(job.opt, cfg)
    metrics_path = run_dir / "metrics.csv"
    if ctx.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for p in clean_stale_tmp(run_dir):
            log(f"removed {p.name}, a temp file left by an interrupted save")
    if last is not None:
        job.state = restore(last, run_dir, job, plateau, steps_per_epoch, log)
        if ctx.main:
            dropped = history.truncate(metrics_path, job.state.epoch)
            if dropped:
                log(f"metrics.csv: dropped {dropped} row(s) after epoch {job.state.epoch}, written after last.pt")
    elif ctx.main:
        history.start(metrics_path, classes)
    if ctx.main:
        config_mod.save(cfg, run_dir / "config.yaml")  # on resume too: overrides such as --epochs are recorded
    _epochs(job, plateau, train, val, classes, run_dir, log, start, steps_per_epoch)
    if ctx.main:
        finish(run_dir, cfg, val, log)
    return run_dir


def _starting_weights(model, cfg: TrainConfig, init: dict | None, classes: list[str], log) -> dict:
    """--init or --pretrained weights into `model`; what was loaded, for the checkpoints' metrics."""
    if init is not None:
        rows = init_from(model, init, classes)
        log(f"init: {cfg.init} ({init['model']['name']}): head rows kept for {', '.join(rows['kept']) or 'none'}"
            + (f"; new: {', '.join(rows['new'])}" if rows["new"] else ""))
        return {"init": str(cfg.init), "init_classes": rows}
    if cfg.pretrained:
        if not hasattr(model, "load_pretrained"):
            raise ValueError(f"--pretrained loads ImageNet weights into a timm backbone; {cfg.arch} is none. Use "
                             "--init default to start from ferlab's FER-trained model instead")
        origin = model.load_pretrained(cfg.pretrained)
        log(f"pretrained: {cfg.arch} ImageNet weights from {origin}")
        return {"pretrained": origin}
    return {}


def _enter_stage(job: Job, epoch: int, first: bool, log) -> int:
    """Freeze or unfreeze for `epoch` and return its stage. At the switch to stage 2: a fresh
    warm-up + cosine over the remaining epochs, and under torchrun a new DDP wrapper (DDP fixes
    the parameters it synchronises when it is built)."""
    model = distributed.unwrap(job.model)
    staged = bool(job.cfg.freeze_epochs or job.cfg.unfreeze)
    stage = apply_stage(model, job.cfg, epoch) if staged else 2
    switched = job.cfg.freeze_epochs > 0 and epoch == job.cfg.freeze_epochs + 1
    if switched and job.cfg.schedule == "cosine":
        job.state.schedule_start = job.state.step
    if staged and (first or switched):
        total = count_params(model, trainable_only=False)
        log(f"stage {stage}: {total - count_params(model):,} of {total:,} parameters "
            "frozen")
    if first or switched:
        job.model = distributed.wrap(model, job.ctx, job.cfg.sync_bn)
    return stage


def _epochs(job: Job, plateau, train: data.FaceData, val: data.FaceData, classes: list[str], run_dir: Path,
            log, start: dict, steps_per_epoch: int) -> None:
    cfg, ctx, state = job.cfg, job.ctx, job.state
    model = distributed.unwrap(job.model)
    base_meta = {"params": count_params(model), "train_size": len(train), "val_size": len(val),
                 "class_counts": train.class_counts(), "processes": ctx.world, **describe(ctx.device, cfg.amp, job.precision), **start}

    def payload(weights_model, metrics_, **extra):
        return checkpoint.make_payload(weights_model, cfg.arch, classes, job.pp, config=cfg.to_dict(),
                                       metrics={**base_meta, **metrics_}, epoch=state.epoch, extra=extra)

    warned = False
    stage1_best = None
    first = state.epoch + 1
    durations = []  # this process's epochs in full-size epochs' seconds: the pace --fit-budget plans with
    while state.epoch < (state.planned_epochs or cfg.epochs):
        state.epoch += 1
        stage = _enter_stage(job, state.epoch, state.epoch == first, log)
        t0 = time.perf_counter()
        tr = train_one_epoch(job)
        eval_model = job.ema.module if job.ema is not None else model
        # e.g. BatchNorm variances at inf while the loss is still finite
        if distributed.any_rank(bool(checkpoint.non_finite(eval_model.state_dict())), ctx):
            raise TrainingDiverged(diagnose_divergence("the weights", state.epoch, tr["lr"], cfg))
        va = distributed.broadcast(validate(eval_model, val, job.pp, cfg, amp=cfg.amp) if ctx.main else None, ctx)
        took = time.perf_counter() - t0
        state.elapsed += took
        durations.append(took / resize.cost(tr["side"], job.pp.size))
        if cfg.fit_budget:
            budget.replan(state, cfg, durations, job.pp.size, steps_per_epoch, ctx, log)
        row = {"epoch": state.epoch, "stage": stage, **tr, **va, "elapsed": state.elapsed}
        if stage == 1:
            stage1_best = max(stage1_best or 0.0, va["val_acc"])
        elif stage1_best is not None:
            msg = collapse_warning(stage1_best, va["val_acc"], len(classes), cfg, (job.pp.mean, job.pp.std))
            if msg and ctx.main:
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
            stage1_best = None  # judged once, on the first epoch after unfreezing
        value = row[cfg.monitor]
        improved = _is_better(value, state.best, cfg.monitor)
        if ctx.main:
            history.append(run_dir / "metrics.csv", row)
        at = f" at {tr['side']} px" if cfg.progressive else ""
        log(f"epoch {state.epoch}/{state.planned_epochs or cfg.epochs}  "
            f"train loss {tr['train_loss']:.3f} acc {tr['train_acc']:.3f}  "
            f"val loss {va['val_loss']:.3f} acc {va['val_acc']:.4f} f1 {va['val_macro_f1']:.3f}  "
            f"{tr['images_per_s']:.0f} img/s{at}  {state.elapsed / 60:.1f} min{'  *' if improved else ''}")
        if improved:
            state.best, state.best_epoch, state.bad_epochs = value, state.epoch, 0
            if ctx.main:
                checkpoint.save(payload(eval_model, {"val_acc": va["val_acc"], "val_macro_f1": va["val_macro_f1"],
                                                     "val_loss": va["val_loss"], "best_epoch": state.epoch,
                                                     "monitor": cfg.monitor, "best": value}), run_dir / "best.pt")
        else:
            state.bad_epochs += 1
        if plateau is not None:
            plateau.step(value)
        rngs = distributed.gather(rng_state(job.g_order, job.g_aug), ctx)  # each rank's streams
        if ctx.main:
            checkpoint.save(payload(model, {"val_acc": va["val_acc"]}, optimizer=job.opt.state_dict(),
                                    ema=job.ema.state_dict() if job.ema is not None else None,
                                    scaler=job.scaler.state_dict() if job.scaler is not None else None,
                                    plateau=plateau.state_dict() if plateau is not None else None,
                                    train_state=state.to_dict(), rng=rngs[0], rng_ranks=rngs), run_dir / "last.pt")
            if not warned and state.epoch >= cfg.chance_epochs:
                msg = chance_warning(va["val_acc"], val.labels, len(classes), state.epoch)
                if msg:
                    warnings.warn(msg, RuntimeWarning, stacklevel=2)
                    warned = True
        if cfg.early_stop and state.bad_epochs >= cfg.early_stop:
            log(f"early stopping: no {cfg.monitor} improvement for {cfg.early_stop} epochs")
            break
        # rank 0's clock decides, so that every rank stops after the same epoch
        if distributed.broadcast(bool(cfg.max_minutes and state.elapsed >= cfg.max_minutes * 60), ctx):
            log(f"time budget of {cfg.max_minutes} min reached")
            break


def resume(run_dir: str | Path, log=_log, **overrides) -> Path:
    """Continue a run from its last.pt with the config saved beside it (epochs may be raised)."""
    run_dir = Path(run_dir)
    if not (run_dir / "last.pt").exists():
        raise FileNotFoundError(f"{run_dir} holds no last.pt to resume from")
    cfg = config_mod.build(file=run_dir / "config.yaml", **overrides)
    return fit(cfg, run_dir=run_dir, resume=True, log=log)

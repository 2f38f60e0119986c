"""Restoring an interrupted run from its last.pt: model, optimizer, EMA, schedule, RNG streams,
the best metric as best.pt on disk has it, and the run's classes."""
from __future__ import annotations

from pathlib import Path

from .. import checkpoint
from . import resize
from .budget import plan_epochs
from .config import TrainConfig
from .job import Job
from .state import TrainState, set_rng_state


def restore(last: dict, run_dir: Path, job: Job, plateau, steps_per_epoch: int, log) -> TrainState:
    cfg, ctx = job.cfg, job.ctx
    where = run_dir / "last.pt"
    missing = [k for k in ("optimizer", "train_state", "rng") if last.get(k) is None]
    if missing:
        raise ValueError(f"{where} cannot be resumed: it holds no {', '.join(missing)} (is it a shipped copy?)")
    if last["model"]["name"] != cfg.arch:
        raise ValueError(f"cannot resume {run_dir} as {cfg.arch!r}: last.pt holds a {last['model']['name']!r}")
    try:
        job.model.load_state_dict(last["state_dict"])
        job.opt.load_state_dict(last["optimizer"])
        if job.ema is not None and last.get("ema") is not None:
            job.ema.load_state_dict(last["ema"])
        if job.scaler is not None and last.get("scaler") is not None:
            job.scaler.load_state_dict(last["scaler"])
        if plateau is not None and last.get("plateau") is not None:
            plateau.load_state_dict(last["plateau"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise ValueError(f"{where} does not fit this run's config ({' '.join(str(e).split())[:300]}); "
                         "resume with the options it was trained with") from None
    state = TrainState.from_dict(last["train_state"])
    ranks = last.get("rng_ranks") or [last["rng"]]
    if len(ranks) == ctx.world:
        set_rng_state(ranks[ctx.rank], job.g_order, job.g_aug)
    else:  # another number of processes: the shared streams continue, augmentation is reseeded
        set_rng_state(ranks[0], job.g_order, job.g_aug)
        job.g_aug.manual_seed(cfg.seed + 1 + ctx.rank + 1000 * state.epoch)
        log(f"resuming {len(ranks)} process(es) as {ctx.world}: the augmentation streams are reseeded")
    # The best metric comes from best.pt on disk: a kill between saving best.pt and last.pt must not
    # let the re-run epoch overwrite a better best.pt.
    best_path = run_dir / "best.pt"
    if best_path.exists():
        bm = checkpoint.read(best_path).get("metrics", {})
        if bm.get("monitor", "val_acc") == cfg.monitor and cfg.monitor in bm:
            state.best, state.best_epoch = float(bm[cfg.monitor]), int(bm.get("best_epoch", 0))
    old_total, new_total = state.total_steps, steps_per_epoch * cfg.epochs
    if cfg.fit_budget and state.epoch:
        # re-planned from the time left at the run's mean pace so far: an interrupted run keeps its
        # plan, a raised --max-minutes extends it, a spent budget ends it (the next epoch re-plans)
        size, done = job.pp.size, state.planned_epochs or cfg.epochs
        spent = resize.epochs_cost(cfg, size, 1, state.epoch, done)
        planned = plan_epochs(state, cfg, [state.elapsed / spent], size)
        state.planned_epochs, state.total_steps = planned, planned * steps_per_epoch
        log(f"time budget: {planned} epochs in all fit in {cfg.max_minutes:g} min; the cosine ends there")
    elif new_total != old_total and cfg.schedule == "cosine":
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


def resume_classes(cfg: TrainConfig, last: dict, run_dir: Path) -> list[str]:
    """The run's label set, by name: resuming with other classes would train on permuted labels."""
    saved = list(last["classes"])
    if cfg.classes and set(cfg.classes) != set(saved):
        raise ValueError(f"cannot resume {run_dir}: it was trained on classes {saved}, but --classes gives "
                         f"{list(cfg.classes)}; resume without --classes or start a new run")
    return saved

"""`--fit-budget`: the epochs a time budget allows, planned from the run's own pace, where the
cosine then ends (`loop` re-plans after each epoch, `restore` on resume)."""
from __future__ import annotations

import statistics

from . import distributed, resize
from .config import TrainConfig
from .state import TrainState


def pace(durations: list[float]) -> float:
    """Seconds per full-size epoch to plan with: the median of the last five epochs this process ran
    after its first (the first also pays for warm caches and compiled kernels; it is the pace only
    until a second epoch is timed). A median lets one slow epoch (a neighbour's burst) pass, where
    the slowest epoch cut a 60-minute plan from 83 epochs to 46 for good; a lasting slowdown still
    moves it within three epochs. `durations` are in full-size epochs' seconds (`resize.cost`)."""
    return statistics.median(durations[1:][-5:] or durations)


def plan_epochs(state: TrainState, cfg: TrainConfig, durations: list[float], full: int) -> int:
    """The epochs (at most `cfg.epochs`, at least those done) that fit `cfg.max_minutes` at `pace`;
    with `--progressive`, each planned epoch costs as its side does (the sides follow the plan)."""
    left, per = cfg.max_minutes * 60 - state.elapsed, pace(durations)
    planned = state.epoch
    for n in range(state.epoch + 1, cfg.epochs + 1):
        # one more epoch costs more than the longer ramp saves: none after it fits either
        if per * resize.epochs_cost(cfg, full, state.epoch + 1, n, n) > left:
            break
        planned = n
    return planned


def replan(state: TrainState, cfg: TrainConfig, durations: list[float], full: int, steps_per_epoch: int,
           ctx: distributed.Context, log) -> None:
    """Re-plan the run's length from the time left and end the cosine at the plan's last epoch.
    The schedule stays a function of the step (`lr_at`), so a resumed run continues the same
    curve; rank 0's plan holds on every rank."""
    def plan() -> int | None:
        first_only = len(durations) == 1 and not state.planned_epochs
        if first_only and state.elapsed + 2 * durations[0] <= cfg.max_minutes * 60:
            # a first epoch also pays one-off costs (a cold cache, a busy neighbour): a plan from it
            # alone would bend the cosine towards too short a run, so the plan waits for a second
            # epoch while the budget allows (meanwhile the cosine follows --epochs: for `fast_kd`, 13
            # of at most 20 epochs, the second epoch ends at an lr 1 % above the plan's)
            return None
        return plan_epochs(state, cfg, durations, full)

    planned = distributed.broadcast(plan() if ctx.main else None, ctx)
    if planned is not None and planned != state.planned_epochs:
        log(f"time budget: {planned} epochs fit in {cfg.max_minutes:g} min at {pace(durations):.1f} "
            f"s per {'full-size ' if cfg.progressive else ''}epoch; the cosine ends there")
        state.planned_epochs, state.total_steps = planned, planned * steps_per_epoch

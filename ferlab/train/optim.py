"""Optimizer, learning-rate schedule and weight averaging (EMA) of a run."""
from __future__ import annotations

import math

import torch
from torch.optim.swa_utils import AveragedModel

from .config import TrainConfig
from .finetune import param_groups
from .state import TrainState


def lr_at(state: TrainState, cfg: TrainConfig) -> float:
    """Learning rate for the optimizer step `state.step` (a pure function of the schedule).

    cosine: linear warm-up from 0.1 x lr, then cosine decay to lr x lr_floor at `total_steps`.
    constant and plateau return the peak (ReduceLROnPlateau then scales the optimizer's lr)."""
    if cfg.schedule in ("constant", "plateau"):
        return cfg.lr
    if cfg.schedule == "cosine":
        step = state.step - state.schedule_start
        total = state.total_steps - state.schedule_start
        if step < state.warmup_steps:
            return cfg.lr * (0.1 + 0.9 * step / max(state.warmup_steps, 1))
        t = min((step - state.warmup_steps) / max(total - state.warmup_steps, 1), 1.0)
        return cfg.lr * (cfg.lr_floor + (1 - cfg.lr_floor) * 0.5 * (1 + math.cos(math.pi * t)))
    raise ValueError(f"unknown schedule {cfg.schedule!r}; choose one of: cosine, plateau, constant")


# the hyperparameters one fused kernel call shares; groups that agree on them go in one call
_SHARED = ("lr", "betas", "eps", "weight_decay", "maximize", "decoupled_weight_decay")


class _OneCallPerStep:
    """`torch.optim.Adam`/`AdamW` with `fused=True`, minus the per-step Python around the kernel.

    torch's fused step rebuilds its tensor lists, groups them by device and dtype and runs the
    kernel once per parameter group on every step. This step makes the same calls torch's
    `_fused_adam` makes (`_foreach_add_` of the step counts, then `torch._fused_adam_` or
    `_fused_adamw_`) on the same state tensors, once for all groups that share their
    hyperparameters: for the report DNN's four tensors (156K parameters, a 1.4-1.9 ms training
    step) 0.27 ms instead of 0.34, and `zero_grad` 0.01 ms instead of 0.04
    (`benchmarks/optim_step.py`); what is left is the kernel, bound by memory. The state
    is torch's own, initialised by torch's step on the first call, so `state_dict`, resuming and
    checkpoints are unchanged; anything this path does not cover (a GradScaler's inf checks,
    amsgrad, a tensor lr, mixed devices or dtypes, a closure) is torch's step as before."""

    @torch.no_grad()
    def step(self, closure=None):
        calls = None if closure is not None else self._calls()
        if calls is None:
            return super().step(closure)
        for (lr, (beta1, beta2), eps, weight_decay, maximize, decoupled), (params, grads, avgs, sqs, steps) in calls.items():
            torch._foreach_add_(steps, 1)
            kernel = torch._fused_adamw_ if decoupled else torch._fused_adam_
            kernel(params, grads, avgs, sqs, [], steps, lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay,
                   eps=eps, amsgrad=False, maximize=maximize)
        return None

    def _calls(self) -> dict | None:
        if getattr(self, "grad_scale", None) is not None or getattr(self, "found_inf", None) is not None:
            return None  # a GradScaler's step: its found_inf handling is torch's
        calls, kind = {}, None
        for group in self.param_groups:
            if not group["fused"] or group["amsgrad"] or group["capturable"] or group["differentiable"] \
                    or torch.is_tensor(group["lr"]):
                return None
            key = tuple(group[k] for k in _SHARED)
            for p in group["params"]:
                if p.grad is None:
                    continue  # frozen or unused: skipped, as torch skips it
                state = self.state.get(p)
                if not state or p.grad.is_sparse or (kind is not None and kind != (p.device, p.dtype)):
                    return None  # first step (torch creates the state), or lists one kernel cannot take
                kind = (p.device, p.dtype)
                lists = calls.setdefault(key, ([], [], [], [], []))
                for lst, t in zip(lists, (p, p.grad, state["exp_avg"], state["exp_avg_sq"], state["step"])):
                    lst.append(t)
        return calls

    def zero_grad(self, set_to_none: bool = True) -> None:
        if not set_to_none:
            return super().zero_grad(set_to_none=False)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None


class FusedAdam(_OneCallPerStep, torch.optim.Adam):
    pass


class FusedAdamW(_OneCallPerStep, torch.optim.AdamW):
    pass


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Head and body groups (`finetune.param_groups`); the schedule sets each group's lr to its
    `lr_scale` x `lr_at`. Frozen parameters get no gradient, so the optimizer skips them."""
    groups = param_groups(model, cfg)
    # one fused kernel for all parameters instead of several ops per tensor (CPU and CUDA kernels
    # since torch 2.4): 0.2-0.4 ms of the 3-5 ms step of the small report DNN
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for g in groups for p in g["params"]) or None
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, fused=fused)
    if cfg.optimizer == "adamw":
        return (FusedAdamW if fused else torch.optim.AdamW)(groups, lr=cfg.lr, fused=fused)
    if cfg.optimizer == "adam":
        return (FusedAdam if fused else torch.optim.Adam)(groups, lr=cfg.lr, fused=fused)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose one of: sgd, adamw, adam")


def make_plateau(opt: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.ReduceLROnPlateau | None:
    if cfg.schedule != "plateau":
        return None
    return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min" if cfg.monitor == "val_loss" else "max",
                                                      factor=cfg.plateau_factor, patience=cfg.plateau_patience)


def make_ema(model: torch.nn.Module, decay: float) -> AveragedModel | None:
    """An exponential moving average of all weights and buffers (BatchNorm statistics included),
    with a short warm-up so the average is not dominated by the random initial weights."""
    if not decay:
        return None

    def ema(avg: torch.Tensor, new: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        d = ((1 + n) / (10 + n)).clamp(max=decay)  # stays a tensor on the device: no sync per step
        return avg + (new - avg) * (1 - d)

    return AveragedModel(model, avg_fn=ema, use_buffers=True)

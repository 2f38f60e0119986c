"""Training in several processes with PyTorch's own engine: torchrun starts the processes and sets
RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR; `setup` joins them (gloo on CPUs, nccl on GPUs) and
the model is wrapped in DistributedDataParallel. Rank 0 alone writes files.

Every rank draws the same per-epoch permutation (one shared seed) and takes a disjoint, equally
long shard of it (`shard`), so the ranks together see each image once per epoch (the few left
over when the split does not divide evenly are skipped that epoch, and the permutation changes
every epoch); the global batch is ranks x batch_size. Decisions that must agree (a NaN on one
rank, the validation metrics) are reduced or broadcast, so a failure on one rank stops them all.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..devices import resolve

#: How long a collective waits for a missing rank before every rank fails (instead of hanging).
TIMEOUT = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def setup(device: str) -> Context:
    """The process's place in the job (a single process without torchrun), its process group joined."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context(device=resolve(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)  # one GPU per process
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=TIMEOUT)
    return Context(rank, world, local_rank, dev)


def launched_as_main() -> bool:
    """Whether this process is rank 0 of its job (or runs alone), from torchrun's environment; for
    code outside training that must not repeat itself on every rank."""
    return int(os.environ.get("RANK", "0")) == 0


def barrier(ctx: Context) -> None:
    """Wait for every rank (gloo aborts a process whose peer closed the group under a pending op)."""
    if ctx.active and dist.is_initialized():
        dist.barrier()


def teardown(ctx: Context) -> None:
    if ctx.active and dist.is_initialized():
        dist.destroy_process_group()


def shard(order: torch.Tensor, ctx: Context) -> torch.Tensor:
    """This rank's part of an epoch's permutation: every world-th index, all shards equally long."""
    n = len(order) // ctx.world
    return order[ctx.rank::ctx.world][:n]


def wrap(model: torch.nn.Module, ctx: Context, sync_bn: bool) -> torch.nn.Module:
    if not ctx.active:
        return model
    if sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def any_rank(flag: bool, ctx: Context) -> bool:
    """True on every rank when `flag` is true on at least one."""
    if not ctx.active:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def sum_all(values: list[float], ctx: Context) -> list[float]:
    """Element-wise sum of `values` over the ranks."""
    if not ctx.active:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast(obj, ctx: Context):
    """Rank 0's `obj` on every rank."""
    if not ctx.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj, ctx: Context) -> list:
    """Every rank's `obj`, in rank order, on every rank."""
    if not ctx.active:
        return [obj]
    out = [None] * ctx.world
    dist.all_gather_object(out, obj)
    return out

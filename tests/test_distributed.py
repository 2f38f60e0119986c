"""Devices and distributed training on CPUs: two real processes (gloo), through torchrun and
through torch.multiprocessing."""
from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from ferlab import checkpoint, devices, train
from ferlab.cli import main
from ferlab.train import config, distributed


def _cfg(data_dir, out, **kw):
    base = dict(data=str(data_dir), arch="fernet_tiny", epochs=2, batch_size=16, lr=0.05, augment="light",
                out=str(out), name="ddp", threads=1, tta="none", chance_epochs=99, amp=False)
    base.update(kw)
    return config.build(**base)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_auto_picks_the_cpu_here_and_cuda_is_refused_clearly(capsys):
    assert devices.resolve("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert devices.resolve("auto").type in ("cpu", "mps")
        with pytest.raises(ValueError, match="no CUDA GPU is usable here"):
            devices.resolve("cuda")
        with pytest.raises(ValueError, match="no CUDA GPU"):
            devices.resolve("cuda:1")
        assert main(["train", "--data", "x", "--device", "cuda"]) == 2
        assert "no CUDA GPU is usable here" in capsys.readouterr().err
    with pytest.raises(ValueError, match="choose one of: auto, cpu, cuda, cuda:N, mps"):
        devices.resolve("tpu")


def test_mixed_precision_fits_the_device():
    cpu = torch.device("cpu")
    assert devices.amp_dtype(cpu) == torch.bfloat16 and devices.grad_scaler(cpu, True) is None
    assert devices.describe(cpu, False)["amp_dtype"] == "float32"


def test_shards_are_disjoint_and_cover_the_epoch_once():
    order = torch.randperm(103, generator=torch.Generator().manual_seed(0))
    for world in (1, 2, 3):
        shards = [distributed.shard(order, distributed.Context(rank=r, world=world)) for r in range(world)]
        assert len({len(s) for s in shards}) == 1  # every rank takes the same number of steps
        seen = torch.cat(shards)
        assert len(set(seen.tolist())) == len(seen) == (103 // world) * world


def _env(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))


def _worker_record(rank: int, world: int, port: int, data_dir: str, out: str) -> None:
    """Train with two ranks; each records the indices it trained on and its final parameters."""
    from ferlab.train import loop

    _env(rank, world, port)
    real_shard, real_epoch = distributed.shard, loop.train_one_epoch
    seen = []

    def recording_shard(order, ctx):
        part = real_shard(order, ctx)
        seen.append(part.clone())
        return part

    def epoch_then_params(job):
        result = real_epoch(job)
        params = torch.cat([p.detach().flatten() for p in job.model.parameters()])
        torch.save({"seen": seen, "params": params}, Path(out) / f"rank{rank}.pt")
        return result

    distributed.shard, loop.train_one_epoch = recording_shard, epoch_then_params
    train.fit(_cfg(data_dir, Path(out) / "runs"), log=lambda m: None)


def _worker_nan(rank: int, world: int, port: int, data_dir: str, out: str) -> None:
    """Rank 1's loss turns NaN at its third step; both ranks must stop with the diagnosis."""
    import torch.nn.functional as F

    _env(rank, world, port)
    real, calls = F.cross_entropy, []

    def nan_on_rank_1(*args, **kw):
        calls.append(1)
        loss = real(*args, **kw)
        return loss * float("nan") if rank == 1 and len(calls) == 3 else loss

    F.cross_entropy = nan_on_rank_1
    try:
        train.fit(_cfg(data_dir, Path(out) / "runs", name="nan"), log=lambda m: None)
    except train.TrainingDiverged as e:
        (Path(out) / f"stopped{rank}.txt").write_text(str(e))


def _spawn(fn, tiny_fer_dir, tmp_path, world=2) -> None:
    ctx = mp.start_processes(fn, args=(world, _free_port(), str(tiny_fer_dir), str(tmp_path)), nprocs=world,
                             join=False, start_method="spawn")
    for _ in range(120):  # bounded: a hang fails the test instead of the suite
        if ctx.join(timeout=1):
            return
    for p in ctx.processes:
        p.kill()
    pytest.fail("the distributed workers did not finish within 120 s")


def test_two_ranks_agree_share_the_data_and_write_one_run(tiny_fer_dir, tmp_path):
    _spawn(_worker_record, tiny_fer_dir, tmp_path)
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert torch.equal(r0["params"], r1["params"]), "DDP ranks must hold identical weights"
    n = 7 * 24
    for a, b in zip(r0["seen"], r1["seen"]):  # one permutation per epoch, split between the ranks
        both = torch.cat([a, b]).tolist()
        assert len(both) == len(set(both)) == n  # 168 images, 84 per rank: each exactly once
    assert len(r0["seen"]) == 2 and not torch.equal(r0["seen"][0], r0["seen"][1])
    run = tmp_path / "runs" / "ddp"
    assert sorted(p.name for p in run.glob("*.pt")) == ["best.pt", "last.pt"]
    with open(run / "metrics.csv", newline="") as f:
        assert [int(float(r["epoch"])) for r in csv.DictReader(f)] == [1, 2]
    meta = checkpoint.read(run / "last.pt")
    assert meta["metrics"]["processes"] == 2 and len(meta["rng_ranks"]) == 2
    # a two-process run resumes into a single process
    train.resume(run, epochs=3, log=lambda m: None)
    with open(run / "metrics.csv", newline="") as f:
        assert [int(float(r["epoch"])) for r in csv.DictReader(f)] == [1, 2, 3]


def test_a_nan_on_one_rank_stops_both(tiny_fer_dir, tmp_path):
    _spawn(_worker_nan, tiny_fer_dir, tmp_path)
    for rank in (0, 1):
        assert "loss (step 2) became NaN/inf" in (tmp_path / f"stopped{rank}.txt").read_text()


def test_torchrun_launches_ferlab_train(tiny_fer_dir, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "ferlab",
           "train", "--data", str(tiny_fer_dir), "--arch", "fernet_tiny", "--epochs", "1", "--batch-size", "16",
           "--threads", "1", "--no-amp", "--tta", "none", "--out", str(tmp_path / "runs"), "--name", "tr",
           "--then", "polish"]
    # faulthandler: a rank killed by a signal prints where each of its threads was
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert r.returncode == 0, f"stdout:\n{r.stdout[-1500:]}\nstderr:\n{r.stderr[-6000:]}"
    assert r.stdout.count("epoch 1/1") == 1  # rank 0 alone logs
    assert r.stdout.count("run directory:") == 1
    run = tmp_path / "runs" / "tr"
    assert checkpoint.read(run / "best.pt")["metrics"]["processes"] == 2
    # the follow-up stage runs in the same torchrun job and process group, on both ranks
    assert r.stdout.count("then polish: from") == 1 and r.stdout.count("epoch 8/8") == 1
    polished = checkpoint.read(run.parent / "tr_polish" / "best.pt")["metrics"]
    assert polished["processes"] == 2 and polished["init"] == str(run / "best.pt")

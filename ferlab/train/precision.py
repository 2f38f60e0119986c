"""How a training step uses bfloat16 on this machine: "autocast", "matmul" or "off".

"autocast" (bfloat16 activations, weights cast per op) is what makes convolutional networks 2.7-3x
faster on CPUs with AMX or AVX512-BF16. A network of dense layers alone is another matter: autocast
casts every weight to bfloat16 in each forward and every weight gradient back in each backward, and
at the report recipe's batch of 64 those casts cost more than the bfloat16 arithmetic saves (the
report dense net `seed_dense_bn`: 0.7 ms of casts in a 5.3 ms step on the Intel machine). There
"matmul" keeps every tensor float32 and lets oneDNN multiply in bfloat16 inside its own packing of
the operands (`devices.bf16_matmuls`): a 4.6 ms step. Whether even that beats plain float32 ("off")
depends on the layer sizes and the BLAS: float32 GEMM from MKL is fast on Intel CPUs and takes a
generic path on AMD ones, and the small report DNN's step is 1.14 ms in float32 against 1.33 with
bfloat16 arithmetic on the Intel machine. So for such a network the two are timed on the model
itself, like `torch.backends.cudnn.benchmark` times convolution algorithms, and float32 is taken
only when it is clearly faster; the answer is recorded in the run's checkpoints (`precision`).
"""
from __future__ import annotations

import contextlib
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from ..devices import autocast, bf16_matmuls
from .config import TrainConfig

#: "off" wins only when its step is at least this much faster: near a tie, bfloat16 arithmetic
#: (what `--amp` asks for) keeps being chosen on a given machine
MARGIN = 0.95


def choose(model: nn.Module, device: torch.device, cfg: TrainConfig) -> str:
    """The precision of `model`'s training steps: "off" without `cfg.amp`; "autocast" on GPUs and for
    networks with convolutions; for dense-only networks on a CPU, the faster of "matmul" and "off"."""
    if not cfg.amp:
        return "off"
    if device.type != "cpu" or any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules()):
        return "autocast"
    ms = step_ms(model, cfg, ("matmul", "off"))
    return "off" if ms["off"] < MARGIN * ms["matmul"] else "matmul"


def matmuls(precision: str):
    """What the steps of a `precision` run execute inside: oneDNN's bfloat16 matrix arithmetic on
    float32 tensors for "matmul" (held around forward and backward both), nothing otherwise."""
    return bf16_matmuls() if precision == "matmul" else contextlib.nullcontext()


def step_ms(model: nn.Module, cfg: TrainConfig, precisions: tuple[str, ...], steps: int = 15,
            rounds: int = 3) -> dict[str, float]:
    """Median milliseconds of a forward + backward of a random batch on a copy of `model` (its
    BatchNorm statistics are left alone), in each precision, in alternating rounds."""
    with torch.random.fork_rng(devices=[]):  # the run's own random stream is left as it was
        return _step_ms(copy.deepcopy(model).train(), cfg, precisions, steps, rounds)


def _step_ms(model: nn.Module, cfg: TrainConfig, precisions: tuple[str, ...], steps: int, rounds: int) -> dict:
    b, c, s = cfg.batch_size, model.in_chans, model.input_size
    x = torch.randn(b, c, s, s).contiguous(memory_format=torch.channels_last if cfg.channels_last
                                           else torch.contiguous_format)
    y = torch.randint(0, model.num_classes, (b,))
    times: dict[str, list[float]] = {p: [] for p in precisions}

    def step(precision: str) -> None:
        with matmuls(precision):
            with autocast(x.device, precision == "autocast"):
                loss = F.cross_entropy(model(x).float(), y)
            loss.backward()
        model.zero_grad(set_to_none=True)

    for _ in range(rounds):
        for p in precisions:
            step(p)  # warm-up: oneDNN builds its kernels for the shapes on first use
            for _ in range(steps):
                t = time.perf_counter()
                step(p)
                times[p].append(time.perf_counter() - t)
    return {p: statistics.median(t) * 1e3 for p, t in times.items()}


"""Which device to run on, and the mixed precision that fits it.

`resolve("auto")` picks CUDA, then Apple's MPS, then the CPU. Mixed precision (`autocast`) is
bfloat16 where the device computes it natively (CPUs with AVX512-BF16/AMX run it 3x faster than
fp32; Ampere and later GPUs), float16 otherwise, and float16 needs a gradient scaler in training
(`grad_scaler`) because its range is too small for small gradients.

`bf16_matmuls` is a third way, for networks of dense layers alone (`train.precision`): float32
tensors throughout, with oneDNN doing the matrix multiplies in bfloat16 arithmetic and float32
accumulation, converting inside its own packing of the operands instead of in separate casts.
"""
from __future__ import annotations

import contextlib
import ctypes
import os

import torch

DEVICES = "auto, cpu, cuda, cuda:N, mps"


def resolve(spec: str | torch.device = "auto") -> torch.device:
    """A device from 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; asking for one that is not there is
    an error that says what is."""
    if isinstance(spec, torch.device):
        return spec
    spec = str(spec).strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not _mps_available():
            raise ValueError(f"device 'mps' is not available here ({available()}); use --device auto or cpu")
        return torch.device("mps")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} asked for, but no CUDA GPU is usable here ({available()}); "
                             "use --device auto or cpu, or install a CUDA build of PyTorch on a machine with a GPU")
        index = spec.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise ValueError(f"device {spec!r} does not exist: {torch.cuda.device_count()} GPU(s), "
                             f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return torch.device(spec)
    raise ValueError(f"unknown device {spec!r}; choose one of: {DEVICES}")


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def available() -> str:
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return f"{gpus} CUDA GPU(s), MPS {'yes' if _mps_available() else 'no'}, torch {torch.__version__}"


def amp_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 where the device computes it natively, else float16."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device, enabled: bool):
    """Mixed-precision autocast for `device` (a no-op context when disabled)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=amp_dtype(device))


@contextlib.contextmanager
def bf16_matmuls():
    """Within it, float32 matrix multiplies on the CPU run in bfloat16 arithmetic with float32
    accumulation where oneDNN has it natively (AMX, AVX512-BF16; elsewhere they stay float32).
    It must cover the backward too: that is where half of a training step's multiplies run."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def grad_scaler(device: torch.device, enabled: bool) -> torch.amp.GradScaler | None:
    """A gradient scaler when training runs in float16 autocast; None for bfloat16 and fp32."""
    if enabled and amp_dtype(device) == torch.float16:
        return torch.amp.GradScaler(device.type)
    return None


def describe(device: torch.device, amp: bool, precision: str | None = None) -> dict:
    """What a run records about where it ran (`precision`: `train.precision.choose`'s answer, in training)."""
    reduced = amp and precision != "off"
    out = {"device": str(device), "amp": amp, "amp_dtype": str(amp_dtype(device)).removeprefix("torch.") if reduced
           else "float32", "torch": str(torch.__version__)}
    if precision is not None:
        out["precision"] = precision
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    return out


_ALLOCATOR_TUNED = False


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed blocks of up to 32 MiB for reuse instead of returning them
    to the system.

    PyTorch's CPU tensors come straight from malloc, which by default maps every block over a
    moving threshold anew and unmaps it when freed, so each training step pays page faults for
    all its large activations again: about 19,000 faults a step for the 100x100 report CNN, and
    1.5x the images/s of the small report CNN once they are gone (PyTorch's CPU tuning guide
    makes the same point with jemalloc or tcmalloc, which need LD_PRELOAD). The cost is memory
    held by the process after peaks. Idempotent; a no-op off glibc, and when FERLAB_MALLOC=system."""
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED or os.environ.get("FERLAB_MALLOC", "").lower() == "system":
        return _ALLOCATOR_TUNED
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl)
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    _ALLOCATOR_TUNED = bool(mallopt(m_mmap_threshold, 32 << 20) and mallopt(m_trim_threshold, 1 << 30)
                            and mallopt(m_top_pad, 64 << 20))
    return _ALLOCATOR_TUNED

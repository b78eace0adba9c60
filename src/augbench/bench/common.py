"""What every section of the benchmark shares: the grid's constants, the regimes, timing helpers,
precision and optimiser as training uses them, and the log and formatting helpers."""

from __future__ import annotations

import contextlib
import gc
import inspect
import os
import platform
import resource
import statistics
import sys
import time
from contextlib import contextmanager
from math import comb

import torch

from augbench.callbacks import CropFlip, CutMix, Cutout, Mixup
from augbench.data import SPECS
from augbench.models import MODELS
from augbench.module import Classifier, make_sgd

EPOCH_IMAGES = 40_000  # CIFAR training set minus the 20% validation split
RUN_EPOCHS = 200
GRID_RUNS = 2 * 5 * 5  # datasets × regimes × seeds, per backbone
GRID_EPOCHS = GRID_RUNS * RUN_EPOCHS
CIFAR = SPECS["cifar10"]
# Classifier's defaults, read from its signature so that the two cannot drift apart
OPTIM = {k: inspect.signature(Classifier).parameters[k].default for k in ("lr", "momentum", "nesterov", "weight_decay")}
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed")
AUG_TARGET, TRAINER_TARGET = 20.0, 1.25
DEFAULTS = {  # CPU: LeNet only and short windows, so that `make bench` takes a few minutes
    "cpu": dict(models="lenet", steps=25, warmup=10, workers=2, lever_model="lenet", levers_compile=False,
                concurrency="1,2"),
    "cuda": dict(models=",".join(MODELS), steps=100, warmup=30, workers=min(8, os.cpu_count() or 1),
                 lever_model="resnet18", levers_compile=True, concurrency="1,2,4"),
}
# the project's regimes (defaults of conf/aug/*.yaml) as the callbacks that training uses
REGIMES = {
    "baseline_plus": lambda: [CropFlip()],
    "cutout": lambda: [CropFlip(), Cutout()],
    "mixup": lambda: [CropFlip(), Mixup()],
    "cutmix": lambda: [CropFlip(), CutMix()],
}
SYNC_METHODS = ("item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__")


# --- timing helpers -----------------------------------------------------------------------------


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _windows(step, device, warmup: int, windows: int, steps: int) -> list[float]:
    """Seconds of each of ``windows`` windows of ``steps`` calls of ``step(i)``, after ``warmup`` calls."""
    for i in range(warmup):
        step(i)
    times, i = [], warmup
    for _ in range(windows):
        _sync(device)
        t = time.perf_counter()
        for _ in range(steps):
            step(i)
            i += 1
        _sync(device)
        times.append(time.perf_counter() - t)
    return times


def _timed_loop(step, device):
    """``loop(k)``: the seconds ``step(0)`` … ``step(k - 1)`` take, the device synchronised at both ends."""
    def loop(k: int) -> float:
        _sync(device)
        t = time.perf_counter()
        for i in range(k):
            step(i)
        _sync(device)
        return time.perf_counter() - t

    return loop


def _interleaved(fns: dict, windows: int) -> dict[str, list[float]]:
    """Seconds per call of each fn, alternating between them so all see the same machine load."""
    for fn in fns.values():  # warm-up
        fn()
    times = {k: [] for k in fns}
    for _ in range(windows):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return times


def median_ci(values, level: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval for the median: order statistics x_(j) and x_(n+1-j),
    j the largest with P(Binomial(n, ½) < j) ≤ (1 − level)/2, so the interval covers the median with
    probability ≥ level whatever the distribution; below 6 values, the range."""
    xs, n = sorted(values), len(values)
    tail, j = 0.0, 0
    while j < n and tail + comb(n, j) / 2**n <= (1 - level) / 2:
        tail += comb(n, j) / 2**n
        j += 1
    return (xs[0], xs[-1]) if j == 0 else (xs[j - 1], xs[n - j])


@contextmanager
def _one_thread(device):
    """One intra-op thread on the CPU for the comparisons whose ratio matters: on a shared machine two
    threads slow down many-fold whenever the other core is busy elsewhere, one thread only shares time."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _rate(times: list[float], images: int) -> dict:
    rates = [images / t for t in times]
    ips = statistics.median(rates)
    return {"images_per_s": ips, "s_per_epoch": EPOCH_IMAGES / ips, "window_images_per_s": rates}


def _reset_peak(device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory(device) -> dict:
    """Peak memory since ``_reset_peak``, in MiB. On a GPU both what tensors held at most
    (``max_memory_allocated``) and what the caching allocator held at most, its cache included
    (``max_memory_reserved``, closer to what the process takes from the GPU); on the CPU the
    process's ``ru_maxrss``, a high-water mark since start."""
    if device.type == "cuda":
        return {"peak_allocated_mib": torch.cuda.max_memory_allocated(device) / 2**20,
                "peak_reserved_mib": torch.cuda.max_memory_reserved(device) / 2**20}
    return {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # KiB on Linux


# --- precision and optimiser: as training uses them ------------------------------------------------


def _autocast_dtype(precision: str) -> torch.dtype | None:
    return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)


def _amp(device, precision: str):
    """The forward's autocast under ``precision`` (none for 32-true), as Lightning's MixedPrecision
    enters it (weight-cast cache off)."""
    dtype = _autocast_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype, cache_enabled=False)


def _scaler_needed(precision: str) -> bool:
    return precision == "16-mixed"


def _scaler(precision: str) -> torch.amp.GradScaler | None:
    """16-mixed trains with a gradient scaler, as Lightning does; bf16 and fp32 without."""
    return torch.amp.GradScaler("cuda") if _scaler_needed(precision) else None


def _backward_step(loss, opt, scaler) -> None:
    """backward and optimiser step, through the scaler when there is one (as Lightning's 16-mixed)."""
    if scaler is None:
        loss.backward()
        opt.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()


def _sgd(params, device, fused: bool | None = None) -> torch.optim.SGD:
    """augbench's optimiser. ``fused=None``: exactly what training builds on ``device`` (``make_sgd``:
    fused on CUDA, foreach elsewhere); True/False force the kernel, for the levers section only."""
    if fused is None:
        return make_sgd(params, device.type, **OPTIM)
    return torch.optim.SGD(params, **OPTIM, fused=fused, foreach=not fused)



# --- log and formatting ---------------------------------------------------------------------------


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _device_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"CPU: {model}, {os.cpu_count()} logical cores, torch using {torch.get_num_threads()} threads"


def _f(v: float, digits: int = 0) -> str:
    return f"{v:,.{digits}f}"


def _x(v) -> str:
    return "–" if v is None else f"{v:.2f}×"


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".strip().splitlines()[0][:300]

"""A projection, not a measurement: the GPU cost of the grid from what a training step launches.

Per backbone × regime of ``conf/aug`` this counts, on the CPU, the kernels, FLOPs and bytes of one
training step with the GPU's settings (:mod:`augbench.bench.kernels`), measures the step's host time
on this CPU, and models the step on a GPU profile as

    step = max(host, device)
    host = kernels × launch cost + framework overhead            (eager: one launch per kernel)
         = graph launch + framework overhead                     (whole-step CUDA graph)
    device = FLOPs / (peak × flop_eff) + bytes / (bandwidth × bw_eff) + kernels × device floor

and with K runs sharing one GPU (host work of the K processes overlaps, their device work adds up):
per-run step = max(host, K × device), K runs at once. Epoch = 312 steps (40,000 training images,
batches of 128, the last partial batch dropped); run = 200 epochs; grid = 2 datasets × 4 backbones × 5
regimes × 5 seeds. Validation, testing, checkpoints and process start-up are left out.

Host time measured here (``HostTimer``): this CPU's host time per kernel, from LeNet's step at batch 2
(negligible compute: its wall time is host time), times the cell's kernel count: what the step would
cost a GPU host as slow as this CPU.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from augbench.bench.common import EPOCH_IMAGES, RUN_EPOCHS, _log
from augbench.bench.kernels import GPU_STEP, KernelCounter, StepCounter

BATCH = 128
STEPS_PER_EPOCH = EPOCH_IMAGES // BATCH  # the training loader drops the last partial batch
GRID = {"datasets": 2, "seeds": 5, "regimes": ("baseline", "baseline_plus", "cutout", "mixup", "cutmix")}
PHASES = ("data", "augmentation", "forward", "loss", "backward", "optimizer")


@dataclass(frozen=True)
class Profile:
    name: str
    peak_tflops: float  # dense bf16 tensor-core peak
    hbm_tbps: float
    source: str


PROFILES = {
    "h100": Profile("NVIDIA H100 SXM5 80 GB", 989.4, 3.35,
                    "NVIDIA H100 Tensor Core GPU datasheet: BF16 1,979 TFLOP/s with sparsity = 989 dense; "
                    "HBM3 3.35 TB/s"),
    "a100": Profile("NVIDIA A100 SXM4 80 GB", 312.0, 2.039,
                    "NVIDIA A100 Tensor Core GPU datasheet: BF16 312 TFLOP/s dense; HBM2e 2,039 GB/s"),
    "h200": Profile("NVIDIA H200 SXM 141 GB", 989.4, 4.8,
                    "NVIDIA H200 Tensor Core GPU datasheet: BF16 1,979 TFLOP/s with sparsity = 989 dense; "
                    "HBM3e 4.8 TB/s"),
}
ASSUMPTIONS = {  # knob: (default, what it is and where the default comes from)
    "launch_us": (5.0, "host time per kernel launched in eager mode: Python, dispatcher, autograd and "
                       "cudaLaunchKernel. cudaLaunchKernel alone costs 2-4 µs on current drivers and "
                       "PyTorch's eager per-op overhead is of the same order on a fast server CPU; this "
                       "CPU's measured figure (host µs per kernel, in the tables) is the pessimistic bound"),
    "graph_launch_us": (20.0, "host time of one whole-step CUDA graph replay (cudaGraphLaunch of a graph "
                              "of thousands of nodes; a few µs plus a small cost per node): an assumption"),
    "device_floor_us": (1.0, "device time every kernel takes at least, on top of its FLOPs and bytes "
                             "(launch latency and tail on the GPU, inside a graph too): an assumption"),
    "flop_eff": (0.30, "attainable fraction of the dense bf16 peak for CIFAR-sized convolutions (32×32 "
                       "and smaller maps, 12-512 channels): cuDNN/cuBLAS reach near peak only for large, "
                       "aligned GEMMs (NVIDIA Deep Learning Performance Guide, 'Matrix multiplication "
                       "background'), so a third of peak is an assumption on the generous side"),
    "bw_eff": (0.75, "attainable fraction of HBM bandwidth for memory-bound elementwise, normalisation and "
                     "copy kernels (STREAM-like kernels reach 80-90%; small kernels less): an assumption"),
}


def assumptions(args) -> dict:
    return {k: getattr(args, k) for k in ASSUMPTIONS}


# --- measurements on the CPU ----------------------------------------------------------------------------


def _median_interleaved(fns: list, rounds: int) -> list[float]:
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(rounds):
        for t, fn in zip(times, fns):
            t0 = time.perf_counter()
            fn()
            t.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


class HostTimer:
    """This CPU's host time per kernel, per regime: LeNet's step at batch 2 (GPU settings, one thread),
    whose compute is negligible, so that its wall time is host time (Python, dispatcher, autograd,
    allocator and per-op set-up), divided by the kernels it launches. A step of a large backbone cannot
    be timed that way on a CPU (its compute dominates at any batch size), so its host time here is
    its kernel count × this rate."""

    def __init__(self, rounds: int, regimes: int = 32):
        self.rounds = rounds
        self.step = StepCounter("lenet", batch_size=2, steps=(rounds + 2) * regimes)

    def per_kernel(self, make) -> dict:
        kernels = self.step.count(make()).total().total()  # the counted step is the warm-up of the timing
        (t,) = _median_interleaved([self.step.run], self.rounds)
        return {"lenet_host_s": t, "lenet_kernels": kernels, "host_per_kernel_s": t / kernels}


def framework_overhead(batches: int, epochs: int, steps_per_batch: int | None = None) -> dict:
    """Lightning's host time per step over augbench's own step loop (LeNet, CropFlip, bf16-mixed, this
    CPU, one thread, no progress bar or logger; both at lr 0 from the same weights; ``steps_per_batch``
    optimiser steps per pass of Lightning's batch loop, by default conf/trainer's), and the kernels
    the Trainer adds per step. Per step means the difference between epochs of 2n and n steps, so the
    once-per-epoch work (hooks, metric compute, the loader's permutation) drops out; the loops' epochs
    are interleaved."""
    from augbench.bench.common import _one_thread, _timed_loop
    from augbench.bench.pipelines import augbench_step
    from augbench.bench.trainer import FROZEN, STEPS_PER_BATCH, _frozen, _trainer_epoch
    from augbench.callbacks import CropFlip
    from augbench.data import AugDataModule
    from augbench.fakedata import write_fake_cifar
    from augbench.module import Classifier

    cpu, n, group = torch.device("cpu"), batches, steps_per_batch or STEPS_PER_BATCH
    with tempfile.TemporaryDirectory(prefix="augbench-projection-") as tmp, _one_thread(cpu):
        # the data module keeps 80% for training: enough for an epoch of 2n steps
        root = write_fake_cifar(Path(tmp), (2 * n + 2) * BATCH * 5 // 4, 64, cifar100=False)
        dm = AugDataModule("cifar10", root=str(root), batch_size=BATCH, verify=False, download=False)
        dm.load()
        assert len(dm.host["train"][0]) >= 2 * n * BATCH
        torch.manual_seed(0)  # both from the same weights, at lr 0: equal compute (see bench.trainer.FROZEN)
        step = augbench_step("lenet", dm.host["train"], dm.spec, cpu, [CropFlip()], BATCH, precision="bf16-mixed")
        _frozen(step.opt)
        torch.manual_seed(0)
        module = Classifier("lenet", 3, 10, lr=FROZEN)
        runs = {"trainer": lambda k: _trainer_epoch(module, dm, cpu, k, "bf16-mixed", group),
                "loop": _timed_loop(step, cpu)}
        times = {(name, k): [] for name in runs for k in (n, 2 * n)}
        for name, fn in runs.items():  # warm-up
            fn(2)
        for _ in range(epochs):
            for (name, k), t in times.items():
                t.append(runs[name](k))
        med = {key: statistics.median(t) for key, t in times.items()}
        per_step = {name: (med[(name, 2 * n)] - med[(name, n)]) / n for name in runs}
        counts = []
        for k in (n, 2 * n):
            with KernelCounter() as c:
                _trainer_epoch(Classifier("lenet", 3, 10), dm, cpu, k, "bf16-mixed", group)
            counts.append(c.total().total())
    own = StepCounter("lenet", channels_last=False, fused=False).count([CropFlip()]).total().total()
    trainer_kernels = (counts[1] - counts[0]) / n
    overhead = per_step["trainer"] - per_step["loop"]
    return {"framework_us": max(overhead, 0.0) * 1e6, "measured_us": overhead * 1e6, "batches": n, "epochs": epochs,
            "steps_per_batch": group,
            "trainer_ms_per_step": per_step["trainer"] * 1e3, "loop_ms_per_step": per_step["loop"] * 1e3,
            "trainer_kernels_per_step": trainer_kernels, "own_kernels_per_step": own,
            "framework_kernels": max(round(trainer_kernels - own), 0)}


def paired_overhead(path: Path, steps_per_batch: int) -> dict:
    """The overhead section's figure (``--overhead``: paired per-repetition differences, their median)
    for the same ``steps_per_batch``, when it has been measured on this CPU: an overhead of tens of µs
    is below the noise of ``framework_overhead``'s few epochs at batch 128. {} when there is none."""
    if not path.is_file():
        return {}
    r = json.loads(path.read_text())
    if r.get("device_type") != "cpu":
        return {}
    key = {1: "trainer_minus_plain_ms", r.get("steps_per_batch"): "grouped_minus_plain_ms"}.get(steps_per_batch)
    if key is None or key not in r:
        return {}
    return {"framework_us": max(r[key], 0.0) * 1e3, "paired_us": r[key] * 1e3, "paired_source": path.name,
            "paired_reps": r["reps"], "paired_batch": r["batch"]}


def host_rates(regimes: dict, rounds: int, timed=GRID["regimes"]) -> dict:
    """{regime: this CPU's host time per kernel} for the regimes in ``timed`` (one thread)."""
    from augbench.bench.common import _one_thread

    with _one_thread(torch.device("cpu")):
        timer = HostTimer(rounds, len(regimes))
        return {r: timer.per_kernel(make) for r, make in regimes.items() if r in timed}


def measure(models: list[str], regimes: dict, *, rounds: int, timed=GRID["regimes"]) -> dict:
    """{model: {regime: counts, and host time for the regimes in ``timed``}} for every backbone × regime,
    on the CPU (rounds 0: counts only)."""
    rates = host_rates(regimes, rounds, timed) if rounds else {}
    out = {}
    for model in models:
        t0 = time.perf_counter()
        counter = StepCounter(model, steps=len(regimes) + 1)
        cells = {}
        for regime, make in regimes.items():
            cells[regime] = cell(counter.count(make()))
            if regime in rates:
                cells[regime] |= rates[regime] | {"host_s": cells[regime]["kernels"] * rates[regime]["host_per_kernel_s"]}
        out[model] = cells
        _log(f"projection {model}: " + ", ".join(f"{r} {c['kernels']}" for r, c in cells.items())
             + f" kernels ({time.perf_counter() - t0:.0f} s)")
    return out


def cell(c: KernelCounter) -> dict:
    s = c.summary()
    return {"kernels": c.total().total(), "flops": sum(c.flops.values()), "bytes": sum(c.bytes.values()),
            "host_syncs": sum(v["host_syncs"] for v in s.values()),
            "phases": {p: {k: s[p][k] for k in ("kernels", "flops", "bytes")} for p in PHASES if p in s}}


# --- the model --------------------------------------------------------------------------------------------


def project_step(c: dict, p: Profile, a: dict, framework: dict) -> dict:
    """Seconds per step on profile ``p`` under assumptions ``a``: eager, whole-step graph, K runs."""
    kernels = c["kernels"] + framework["framework_kernels"]
    fw = framework["framework_us"] * 1e-6
    host = kernels * a["launch_us"] * 1e-6 + fw
    host_here = c["host_s"] + fw if c.get("host_s") is not None else None
    device = (c["flops"] / (p.peak_tflops * 1e12 * a["flop_eff"]) + c["bytes"] / (p.hbm_tbps * 1e12 * a["bw_eff"])
              + kernels * a["device_floor_us"] * 1e-6)
    graph_host = a["graph_launch_us"] * 1e-6 + fw
    out = {"kernels": kernels, "host_s": host, "host_here_s": host_here, "device_s": device,
           "eager_s": max(host, device), "eager_here_s": None if host_here is None else max(host_here, device),
           "graphs_s": max(graph_host, device), "bound": "host" if host > device else "device"}
    for k in (2, 4):  # K runs at once: each run's step, and the GPU's throughput in steps/s over all K
        out[f"k{k}_run_step_s"] = max(host, k * device)
        out[f"k{k}_s_per_step"] = out[f"k{k}_run_step_s"] / k
    return out


def grid_hours(steps: dict[str, dict[str, dict]], key: str) -> dict:
    """Hours of the grid (and per backbone) from each cell's seconds per step ``key``."""
    runs = GRID["datasets"] * GRID["seeds"]
    per_model = {m: sum(runs * RUN_EPOCHS * STEPS_PER_EPOCH * cells[r][key] for r in GRID["regimes"] if r in cells) / 3600
                 for m, cells in steps.items()}
    return {"total": sum(per_model.values()), "per_backbone": per_model}


def project(measured: dict, p: Profile, a: dict, framework: dict) -> dict:
    steps = {m: {r: project_step(c, p, a, framework) for r, c in cells.items()} for m, cells in measured.items()}
    keys = {"eager": "eager_s", "eager_host_measured_here": "eager_here_s", "graphs": "graphs_s",
            "k2_eager": "k2_s_per_step", "k4_eager": "k4_s_per_step"}
    floor = {m: {r: {"floor": c["flops"] / (p.peak_tflops * 1e12) + c["bytes"] / (p.hbm_tbps * 1e12)}
                 for r, c in cells.items()} for m, cells in measured.items()}
    return {"steps": steps, "grid_hours": {k: grid_hours(steps, v) for k, v in keys.items()}
            | {"peak_floor": grid_hours(floor, "floor")}}


def run_settings() -> dict:
    return GPU_STEP | {"batch_size": BATCH, "steps_per_epoch": STEPS_PER_EPOCH, "epochs": RUN_EPOCHS,
                       "grid": GRID | {"backbones": 4}}


def profile_dict(name: str) -> dict:
    return {"key": name} | asdict(PROFILES[name])

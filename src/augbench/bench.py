"""``python -m augbench.bench``: how fast augbench trains, against the conventional CIFAR pipeline.

One run on one device measures and writes ``<out>/bench_<device>.json`` and ``.md``:

1. per backbone, training images/s and seconds per 40,000-image epoch of (a) augbench's pipeline
   (resident uint8 data, batched baseline+ on the device, ``Classifier.training_step``) and (b) the
   conventional one (torchvision ``CIFAR10`` + PIL transforms in DataLoader workers, fp32 eager,
   plain SGD loop), their ratio, peak memory (on a GPU: allocated, and reserved with the allocator's
   cache) and the projected GPU-hours of the whole grid;
2. on the CPU, batched augmentation against per-image PIL/tensor code and per-batch reference code;
3. a LeNet epoch through the Lightning Trainer against a plain PyTorch loop on the same data;
4. host syncs per training step, counted by patching the tensor-to-Python conversions;
5. the speed levers of augbench's step (channels_last, cudnn.benchmark, autocast, fused SGD,
   torch.compile, torch.compile's reduce-overhead mode), switched on one after another, each measured
   against the row before (a lever that fails is recorded as failed);
6. grid throughput with K runs per device: K processes training at once, their summed images/s
   and the runs finished per hour.

augbench's side trains as training does: the optimiser of ``augbench.module.make_sgd`` (fused SGD on
CUDA, foreach elsewhere) and the precision of ``--precision`` (``auto``: bf16-mixed on GPUs of compute
capability 8.0 and newer, 16-mixed with a gradient scaler on older ones, 32-true on the CPU).

Timings are medians of several windows after warm-up; shared machines are noisy, so read
ratios of interleaved measurements rather than single figures.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import inspect
import itertools
import json
import logging
import multiprocessing as mp
import os
import platform
import queue
import resource
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from lightning.pytorch.callbacks import Callback
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms as T

from augbench import augment
from augbench.callbacks import CropFlip, CutMix, Cutout, Mixup
from augbench.data import SPECS, AugDataModule, DatasetError, DeviceLoader, cifar_class
from augbench.fakedata import write_fake_cifar
from augbench.models import MODELS, build_model
from augbench.module import Classifier, make_sgd
from augbench.training import resolve_precision

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


# --- data ---------------------------------------------------------------------------------------


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


# --- the two training pipelines -----------------------------------------------------------------


def _batches(loader: DeviceLoader):
    """A DeviceLoader's batches, epoch after epoch, each epoch its own permutation."""
    for epoch in itertools.count():
        loader.epoch_fn = lambda e=epoch: e
        yield from loader


def augbench_step(model: str, host: tuple, spec, device, augs: list, batch_size: int, compile_: bool | str = False,
                  *, channels_last: bool | None = None, precision: str | None = None, fused: bool | None = None):
    """augbench's training step: resident uint8 batch, device augmentation, Classifier step, SGD.

    ``channels_last``, ``precision`` (a resolved Trainer precision: autocast dtype, and the gradient
    scaler of 16-mixed) and ``fused`` (SGD) default to what training uses on ``device``; ``compile_`` is
    True for torch.compile's default mode or the name of a mode. The returned ``step(i)`` carries its
    optimiser and scaler as ``step.opt`` and ``step.scaler``."""
    x, y = (t.to(device) for t in host)  # resident for as long as the step lives
    channels_last = device.type == "cuda" if channels_last is None else channels_last
    precision = resolve_precision(precision or "auto", device)
    module = Classifier(model, spec.channels, spec.num_classes, channels_last=channels_last).to(device)
    if compile_:
        module.net = torch.compile(module.net, mode=None if compile_ is True else compile_)
    if fused is None:  # what the Trainer gets: make_sgd for the module's device
        opt = module.configure_optimizers()["optimizer"]
    else:
        opt = _sgd(module.parameters(), device, fused)
    scaler = _scaler(precision)
    for a in augs:
        a.prepare(spec.mean, spec.std, device)
    stream = _batches(DeviceLoader(x, y, batch_size, spec.mean, spec.std, shuffle=True, drop_last=True))

    def step(i):
        batch = next(stream)
        for a in augs:  # in the order of the callbacks list, as the Trainer calls them
            a.apply(batch)
        with _amp(device, precision):
            loss = module.training_step(batch, i)
        opt.zero_grad(set_to_none=True)
        _backward_step(loss, opt, scaler)

    step.opt, step.scaler = opt, scaler
    return step


def conventional_step(model: str, root: Path, verify: bool, device, batch_size: int, workers: int):
    """The study's pipeline: torchvision CIFAR10, PIL transforms in DataLoader workers, fp32 eager SGD."""
    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(CIFAR.mean, CIFAR.std)])
    ds = cifar_class("cifar10", verify)(str(root), train=True, download=False, transform=tf)
    loader = DataLoader(ds, batch_size, shuffle=True, num_workers=workers, pin_memory=device.type == "cuda",
                        drop_last=True, persistent_workers=workers > 0)
    net = build_model(model, 3, 10).to(device)
    # deliberately not make_sgd: the study's code builds a plain torch.optim.SGD with torch's default
    # kernel choice, and this pipeline stands for that code (same hyper-parameters as augbench)
    opt = torch.optim.SGD(net.parameters(), **OPTIM)
    stream = itertools.chain.from_iterable(loader for _ in itertools.count())
    running = 0.0

    def step(i):
        nonlocal running
        x, y = next(stream)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        running += loss.item()  # the usual CIFAR scripts read the loss back every step

    return step


def bench_pipelines(args, device, host, root: Path, verify: bool) -> list[dict]:
    rows = []
    for model in args.models:
        row = {"model": model, "augbench_precision": args.precision, "conventional_precision": "32-true"}
        for kind in ("augbench", "conventional"):
            _reset_peak(device)
            torch.manual_seed(0)
            if kind == "augbench":
                step = augbench_step(model, host, CIFAR, device, [CropFlip()], args.batch_size, args.compile,
                                     precision=args.precision)
            else:
                step = conventional_step(model, root, verify, device, args.batch_size, args.workers)
            times = _windows(step, device, args.warmup, args.windows, args.steps)
            row[kind] = _rate(times, args.steps * args.batch_size) | _peak_memory(device)
            del step  # frees the resident data, or shuts the DataLoader workers down
            gc.collect()
            if kind == "conventional" and device.type == "cpu":
                row[kind]["workers_peak_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        row["ratio"] = row["augbench"]["images_per_s"] / row["conventional"]["images_per_s"]
        rows.append(row)
        _log(f"{model}: augbench {row['augbench']['images_per_s']:.0f} img/s, conventional "
             f"{row['conventional']['images_per_s']:.0f} img/s, ratio {row['ratio']:.2f}")
    return rows


def grid_hours(rows: list[dict]) -> dict:
    """Projected time of the whole grid, from each backbone's s/epoch."""
    return {k: sum(GRID_EPOCHS * r[k]["s_per_epoch"] for r in rows) / 3600 for k in ("augbench", "conventional")}


# --- CPU augmentation throughput ----------------------------------------------------------------
# The baselines are written here, in the style of each method's reference code (not copied).

_rng = np.random.default_rng(0)


def ref_cutout(img: torch.Tensor, length: int = 16) -> torch.Tensor:
    """Per image, after Normalize, like the Cutout paper's transform: a numpy-drawn centre, a mask."""
    _, h, w = img.shape
    cy, cx = _rng.integers(h), _rng.integers(w)
    mask = torch.ones(h, w)
    mask[max(cy - length // 2, 0): cy + length // 2, max(cx - length // 2, 0): cx + length // 2] = 0
    return img * mask


def _box(h: int, w: int, lam: float):
    """CutMix's box: centre uniform, sides W·√(1-λ) by H·√(1-λ), clipped at the border."""
    cut = np.sqrt(1.0 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = _rng.integers(h), _rng.integers(w)
    return slice(max(cy - ch // 2, 0), min(cy + ch // 2, h)), slice(max(cx - cw // 2, 0), min(cx + cw // 2, w))


def ref_mixup(x, y, alpha=1.0):
    """Per batch, like the mixup reference code: numpy λ, torch permutation."""
    lam = _rng.beta(alpha, alpha)
    j = torch.randperm(len(x))
    return lam * x + (1 - lam) * x[j], y[j], lam


def ref_cutmix(x, y, alpha=1.0, prob=1.0):
    """Per batch, like the CutMix reference code; writes in place, as it does, into a fresh batch."""
    if _rng.random() >= prob:
        return x, y, 1.0
    lam = _rng.beta(alpha, alpha)
    j = torch.randperm(len(x))
    rows, cols = _box(x.shape[2], x.shape[3], lam)
    x[:, :, rows, cols] = x[j, :, rows, cols]
    return x, y[j], 1 - (rows.stop - rows.start) * (cols.stop - cols.start) / (x.shape[2] * x.shape[3])


def per_image_mix(x, y, paste: bool, alpha=1.0):
    """Per image, like Dataset-wrapper implementations: each image mixed with a random partner, own λ."""
    out, lams, partners = [], [], []
    for i in range(len(x)):
        j, lam = int(_rng.integers(len(x))), _rng.beta(alpha, alpha)
        if paste:
            rows, cols = _box(x.shape[2], x.shape[3], lam)
            img = x[i].clone()
            img[:, rows, cols] = x[j, :, rows, cols]
            lam = 1 - (rows.stop - rows.start) * (cols.stop - cols.start) / (x.shape[2] * x.shape[3])
        else:
            img = lam * x[i] + (1 - lam) * x[j]
        out.append(img)
        lams.append(lam)
        partners.append(y[j])
    return torch.stack(out), torch.stack(partners), torch.tensor(lams)


def bench_augment(args, host) -> list[dict]:
    """images/s of augbench's batched augmentation and of the conventional per-image code, on the CPU
    (run on one thread, see ``_one_thread``; the baseline is single-threaded anyway)."""
    n, bs = args.aug_images, args.batch_size
    x8, y = host[0][:n].contiguous(), host[1][:n].contiguous()
    hwc = x8.permute(0, 2, 3, 1).contiguous().numpy()  # CIFAR10.data's layout
    labels = y.tolist()
    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(CIFAR.mean, CIFAR.std)])
    cpu = torch.device("cpu")
    rows = []

    def row(name, ours, theirs, how, regime=False):
        times = _interleaved({"ours": ours, "theirs": theirs}, args.aug_windows)
        a, b = (statistics.median(n / t for t in times[k]) for k in ("ours", "theirs"))
        rows.append({"name": name, "regime": regime, "augbench_images_per_s": a, "baseline_images_per_s": b,
                     "speedup": a / b, "baseline": how})
        _log(f"aug {name}: augbench {a:.0f} img/s, baseline {b:.0f} img/s, x{a / b:.1f}")

    # whole regimes: stored uint8 images in, augmented normalised batch out
    for regime, make in REGIMES.items():
        augs = make()
        for a in augs:
            a.prepare(CIFAR.mean, CIFAR.std, cpu)
        loader = DeviceLoader(x8, y, bs, CIFAR.mean, CIFAR.std)

        def ours(augs=augs, loader=loader):
            for batch in loader:
                for a in augs:
                    a.apply(batch)

        def theirs(regime=regime):
            for i in range(0, n - bs + 1, bs):
                # what CIFAR10.__getitem__ and default_collate do, one image at a time
                imgs = [tf(Image.fromarray(hwc[k])) for k in range(i, i + bs)]
                if regime == "cutout":
                    imgs = [ref_cutout(im) for im in imgs]
                xb, yb = torch.stack(imgs), torch.tensor(labels[i: i + bs])
                if regime == "mixup":
                    ref_mixup(xb, yb)
                elif regime == "cutmix":
                    ref_cutmix(xb, yb)

        how = {"baseline_plus": "per image: PIL RandomCrop+Flip, ToTensor, Normalize; stack",
               "cutout": "as baseline_plus, then per-image Cutout tensor op",
               "mixup": "as baseline_plus, then per-batch mixup (reference style)",
               "cutmix": "as baseline_plus, then per-batch CutMix (reference style)"}[regime]
        row(regime, ours, theirs, how + "; one process", regime=True)

    # the mixing ops alone, on a normalised float batch
    xf = next(iter(DeviceLoader(x8, y, bs, CIFAR.mean, CIFAR.std)))["image"]
    yb, g, reps = y[:bs], torch.Generator().manual_seed(0), max(1, n // bs)
    xc = xf.clone()  # the CutMix reference writes in place: give it its own batch, keep xf intact

    def repeat(fn):
        return lambda: [fn() for _ in range(reps)]

    ops = [
        ("cutout op", lambda: augment.cutout(xf, n_holes=1, length=16, generator=g),
         lambda: torch.stack([ref_cutout(im) for im in xf]), "per-image tensor loop (Cutout paper style)"),
        ("mixup op", lambda: augment.mixup(xf, yb, alpha=1.0, generator=g),
         lambda: ref_mixup(xf, yb), "per batch, numpy λ + torch permutation (reference style)"),
        ("mixup op, λ per image", lambda: augment.mixup(xf, yb, alpha=1.0, generator=g, per_sample=True),
         lambda: per_image_mix(xf, yb, paste=False), "per-image loop (Dataset-wrapper style)"),
        ("cutmix op", lambda: augment.cutmix(xf, yb, alpha=1.0, prob=1.0, generator=g),
         lambda: ref_cutmix(xc, yb), "per batch, numpy box + slicing, in place (reference style)"),
        ("cutmix op, box per image",
         lambda: augment.cutmix(xf, yb, alpha=1.0, prob=1.0, generator=g, per_sample=True),
         lambda: per_image_mix(xf, yb, paste=True), "per-image loop (Dataset-wrapper style)"),
    ]
    for name, ours, theirs, how in ops:
        row(name, repeat(ours), repeat(theirs), how)
    return rows


# --- Lightning Trainer vs plain loop, and host syncs ---------------------------------------------


class _EpochTimer(Callback):
    """Seconds of the training epoch: from epoch start to the callbacks' epoch end."""

    def __init__(self, device):
        self.device, self.seconds = device, None

    def on_train_epoch_start(self, trainer, pl_module):
        _sync(self.device)
        self.t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        _sync(self.device)
        self.seconds = time.perf_counter() - self.t0


def _trainer_epoch(module, dm, device, batches: int, precision: str) -> float:
    timer = _EpochTimer(device)
    on_gpu = device.type == "cuda"
    trainer = L.Trainer(accelerator="gpu" if on_gpu else "cpu", devices=1,
                        precision=precision, max_epochs=1, limit_train_batches=batches,
                        limit_val_batches=0, num_sanity_val_steps=0, benchmark=on_gpu, enable_progress_bar=False,
                        logger=False, enable_checkpointing=False, enable_model_summary=False,
                        callbacks=[CropFlip(), timer])
    trainer.fit(module, datamodule=dm)
    return timer.seconds


def _trainer_data(root: Path, verify: bool, batch_size: int) -> AugDataModule:
    """Fashion-MNIST if installed (real data), else the CIFAR-10 files the bench uses."""
    try:
        dm = AugDataModule("fashion_mnist", batch_size=batch_size, download=False)
        dm.load()
    except DatasetError:
        dm = AugDataModule("cifar10", root=str(root), batch_size=batch_size, verify=verify, download=False)
        dm.load()
    return dm


def plain_step(host: tuple, spec, device, batch_size: int, precision: str):
    """The plain PyTorch loop of section 3: LeNet, baseline+, cross-entropy, no Classifier and no
    Lightning, but the same optimiser (``make_sgd`` for ``device``), precision (autocast, and the
    scaler of 16-mixed) and memory format as training. ``step.opt`` and ``step.scaler`` as in augbench_step."""
    on_gpu = device.type == "cuda"
    net = build_model("lenet", spec.channels, spec.num_classes).to(device)
    if on_gpu:
        net = net.to(memory_format=torch.channels_last)
    precision = resolve_precision(precision, device)
    opt = _sgd(net.parameters(), device)
    scaler = _scaler(precision)
    crop = CropFlip()
    crop.prepare(spec.mean, spec.std, device)
    stream = _batches(DeviceLoader(*(t.to(device) for t in host), batch_size, spec.mean, spec.std,
                                   shuffle=True, drop_last=True))

    def step(i):
        batch = next(stream)
        crop.apply(batch)
        x = batch["image"].contiguous(memory_format=torch.channels_last) if on_gpu else batch["image"]
        with _amp(device, precision):
            loss = F.cross_entropy(net(x), batch["target"])
        opt.zero_grad()
        _backward_step(loss, opt, scaler)

    step.opt, step.scaler = opt, scaler
    return step


def bench_trainer(args, device, dm: AugDataModule) -> dict:
    """A LeNet epoch through the Lightning Trainer vs a plain loop over the same resident data."""
    spec, bs, on_gpu = dm.spec, args.batch_size, device.type == "cuda"
    batches = len(dm.host["train"][0]) // bs
    batches = min(batches, args.limit_batches) if args.limit_batches else batches
    torch.manual_seed(0)

    plain_one = plain_step(dm.host["train"], spec, device, bs, args.precision)

    def plain(k):
        _sync(device)
        t = time.perf_counter()
        for i in range(k):
            plain_one(i)
        _sync(device)
        return time.perf_counter() - t

    step = augbench_step("lenet", dm.host["train"], spec, device, [CropFlip()], bs, precision=args.precision)

    def module_loop(k):
        _sync(device)
        t = time.perf_counter()
        for i in range(k):
            step(i)
        _sync(device)
        return time.perf_counter() - t

    module = Classifier("lenet", spec.channels, spec.num_classes, channels_last=on_gpu)
    loops = {"plain": plain, "module": module_loop,
             "trainer": lambda k: _trainer_epoch(module, dm, device, k, args.precision)}
    for fn in loops.values():  # warm-up, untimed
        fn(min(5, batches))
    times = {k: [] for k in loops}
    for _ in range(args.epochs):  # interleaved, so that all three see the same machine load
        for k, fn in loops.items():
            times[k].append(fn(batches))
    med = {k: statistics.median(v) for k, v in times.items()}
    _log(f"trainer vs plain: {med['trainer']:.2f} s vs {med['plain']:.2f} s per epoch, "
         f"ratio {med['trainer'] / med['plain']:.3f}")
    return {
        "data": spec.name, "model": "lenet", "batches_per_epoch": batches, "images_per_epoch": batches * bs,
        "epochs": args.epochs, "precision": args.precision,
        "optimizer": {k: plain_one.opt.param_groups[0][k] for k in ("fused", "foreach")},
        **{f"{k}_s_per_epoch": med[k] for k in loops},
        **{f"{k}_images_per_s": batches * bs / med[k] for k in loops},
        "trainer_over_plain": med["trainer"] / med["plain"],
        "module_over_plain": med["module"] / med["plain"],
        "raw_seconds": times,
    }


def count_host_syncs(run) -> Counter:
    """Call sites that read tensor values back into Python while ``run()`` runs (on a GPU each such
    read waits for the device), plus, on CUDA, the synchronising calls that sync-debug mode reports."""
    counts: Counter = Counter()
    saved = {m: torch.Tensor.__dict__.get(m) for m in SYNC_METHODS}

    def counted(name, fn):
        def wrapper(self, *a, **kw):
            f = traceback.extract_stack(limit=2)[0]
            counts[f"Tensor.{name} in {'/'.join(Path(f.filename).parts[-2:])}:{f.lineno} ({f.name})"] += 1
            return fn(self, *a, **kw)
        return wrapper

    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    try:
        for m in SYNC_METHODS:
            setattr(torch.Tensor, m, counted(m, getattr(torch.Tensor, m)))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if cuda:
                torch.cuda.set_sync_debug_mode("warn")
            run()
    finally:
        if cuda:
            torch.cuda.set_sync_debug_mode("default")
        for m, fn in saved.items():
            if fn is None:
                delattr(torch.Tensor, m)
            else:
                setattr(torch.Tensor, m, fn)
    counts["CUDA synchronising call (sync debug mode)"] += sum("synchroniz" in str(w.message) for w in caught)
    return +counts  # drops zero counts


def bench_syncs(args, device, dm: AugDataModule) -> dict:
    """Per-step host syncs of augbench's step loop (each regime) and of a Trainer epoch."""
    n, spec, out = args.sync_steps, dm.spec, {}

    def summary(counts: Counter) -> dict:
        # a site that fires at least once per step is a per-step sync; others are periodic
        return {"per_step": sum(counts.values()) / n, "every_step": sorted(s for s, c in counts.items() if c >= n),
                "sites": dict(counts)}

    for regime, make in {"baseline": lambda: [], **REGIMES}.items():
        step = augbench_step("lenet", dm.host["train"], spec, device, make(), args.batch_size,
                             precision=args.precision)
        step(0)  # warm-up outside the count
        out[regime] = summary(count_host_syncs(lambda: [step(i) for i in range(1, n + 1)]))
    # the Trainer: the difference between a 2n-step and an n-step epoch leaves n steps' worth
    module = Classifier("lenet", spec.channels, spec.num_classes, channels_last=device.type == "cuda")
    c1, c2 = (count_host_syncs(lambda k=k: _trainer_epoch(module, dm, device, k, args.precision)) for k in (n, 2 * n))
    c2.subtract(c1)
    out["trainer"] = summary(+c2)
    out["steps"] = n
    out["no_sync_every_step"] = not any(v["every_step"] for k, v in out.items() if isinstance(v, dict))
    _log("host syncs per step: " + ", ".join(f"{k} {v['per_step']:.2f}" for k, v in out.items() if isinstance(v, dict)))
    return out


# --- speed levers -------------------------------------------------------------------------------

# Cumulative: each row keeps the levers above it and adds its own.
LEVERS = (
    ("baseline", "fp32 eager, NCHW, foreach SGD, cudnn.benchmark off", {}),
    ("channels_last", "+ channels_last", {"channels_last": True}),
    ("cudnn_benchmark", "+ cudnn.benchmark", {"benchmark": True}),
    ("autocast", "+ {autocast}", {"amp": True}),
    ("fused_sgd", "+ fused SGD (what training uses on CUDA)", {"fused": True}),
    ("compile", "+ torch.compile (default mode)", {"compile_": True}),
    ("reduce_overhead", "+ torch.compile mode=reduce-overhead (CUDA graphs)", {"compile_": "reduce-overhead"}),
)


def _lever_skipped(lever: str, device, args) -> str | None:
    if device.type == "cpu":
        reason = {"cudnn_benchmark": "cuDNN is the GPU's convolution library",
                  "fused_sgd": "CPU training uses foreach SGD",
                  "reduce_overhead": "CUDA graphs"}.get(lever)
        if reason:
            return f"n/a on cpu ({reason})"
    if lever in ("compile", "reduce_overhead") and not args.levers_compile:
        return "skipped (--levers-compile off)"
    return None


def _lever_precision(precision: str, device) -> str:
    """The autocast lever's precision: this run's when it is a mixed one; else the one ``auto`` picks on
    a GPU, and bf16-mixed on the CPU (shown for reference)."""
    if _autocast_dtype(precision) is not None:
        return precision
    return resolve_precision("auto", device) if device.type == "cuda" else "bf16-mixed"


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".strip().splitlines()[0][:300]


def bench_levers(args, device, host) -> dict:
    """augbench's step of --lever-model with the levers of LEVERS switched on one after another."""
    conf = dict(channels_last=False, benchmark=False, amp=False, fused=False, compile_=False)
    mixed = _lever_precision(args.precision, device)
    autocast = (str(_autocast_dtype(mixed)).removeprefix("torch.") + " autocast"
                + (" + GradScaler" if _scaler_needed(mixed) else ""))
    rows, first, previous = [], None, None
    saved = torch.backends.cudnn.benchmark
    try:
        for lever, label, change in LEVERS:
            conf |= change
            row = {"lever": lever, "setting": label.format(autocast=autocast)}
            if lever == "autocast" and mixed != args.precision:
                row["note"] = (f"this run's precision is {args.precision} (fp32"
                               + (", as CPU training" if device.type == "cpu" else "")
                               + f"); {mixed} autocast shown for reference only")
            if reason := _lever_skipped(lever, device, args):
                rows.append(row | {"status": reason})
                _log(f"lever {lever}: {reason}")
                continue
            torch.backends.cudnn.benchmark = conf["benchmark"]
            _reset_peak(device)
            torch.manual_seed(0)
            step = None
            try:
                step = augbench_step(args.lever_model, host, CIFAR, device, [CropFlip()], args.batch_size,
                                     conf["compile_"], channels_last=conf["channels_last"],
                                     precision=mixed if conf["amp"] else "32-true", fused=conf["fused"])
                times = _windows(step, device, args.warmup, args.windows, args.steps)
            except Exception as e:  # noqa: BLE001 - a lever that breaks is a result, not the end of the bench
                row["status"] = "failed: " + _error(e)
            else:
                rate = _rate(times, args.steps * args.batch_size)
                ips = rate["images_per_s"]
                first = ips if lever == "baseline" else first
                row |= {"status": "measured", **rate, **_peak_memory(device),
                        "speedup_vs_first": ips / first if first else None,
                        "speedup_vs_previous": ips / previous if previous else None}
                previous = ips
            finally:
                del step  # frees the resident data before the next row
                if conf["compile_"]:
                    torch.compiler.reset()  # the next row compiles afresh, and CUDA graph pools are released
                gc.collect()
            rows.append(row)
            _log(f"lever {lever}: " + (f"{row['images_per_s']:.0f} img/s" if "images_per_s" in row else row["status"]))
    finally:
        torch.backends.cudnn.benchmark = saved
    return {"model": args.lever_model, "compile": args.levers_compile, "precision": args.precision,
            "autocast_precision": mixed, "rows": rows}


# --- several runs per device --------------------------------------------------------------------


def _concurrency_worker(rank: int, cfg: dict, barrier, results) -> None:
    """One of K processes: trains augbench's step on a synthetic uint8 set and reports the
    (start, end) of each timed window, every window started in all K processes at once."""
    try:
        device = torch.device(cfg["device"])
        if device.type == "cpu":
            torch.set_num_threads(cfg["threads"])
        torch.backends.cudnn.benchmark = device.type == "cuda"
        g = torch.Generator().manual_seed(rank)
        x = torch.randint(0, 256, (cfg["images"], 3, 32, 32), dtype=torch.uint8, generator=g)
        y = torch.randint(0, CIFAR.num_classes, (cfg["images"],), generator=g)
        torch.manual_seed(rank)
        step = augbench_step(cfg["model"], (x, y), CIFAR, device, [CropFlip()], cfg["batch_size"],
                             precision=cfg["precision"])
        for i in range(cfg["warmup"]):
            step(i)
        spans, i = [], cfg["warmup"]
        for _ in range(cfg["windows"]):
            _sync(device)
            barrier.wait(cfg["timeout"])
            # time.monotonic is CLOCK_MONOTONIC on Linux: one clock for all processes
            t = time.monotonic()
            for _ in range(cfg["steps"]):
                step(i)
                i += 1
            _sync(device)
            spans.append((t, time.monotonic()))
        results.put((rank, spans))
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which records it
        barrier.abort()  # the others stop waiting
        results.put((rank, _error(e)))


def _gather(procs, results, timeout: float) -> list:
    out, deadline = [], time.monotonic() + timeout
    while len(out) < len(procs):
        try:
            out.append(results.get(timeout=1))
        except queue.Empty:
            if dead := [p.exitcode for p in procs if p.exitcode not in (None, 0)]:
                raise RuntimeError(f"worker process died (exit codes {dead})") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"no result from the workers within {timeout:.0f} s") from None
    return out


def bench_concurrency(args, device, images: int, timeout: float = 900) -> dict:
    """K processes training --concurrency-model at once on the device, for each K of --concurrency."""
    # a forkserver imports the heavy libraries once (~10 s on a small CPU); each worker is then a cheap
    # fork of it, made before CUDA or any thread pool exists (a fork of this process would not be safe)
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "torchvision", "lightning"])
    cores = len(os.sched_getaffinity(0))
    per_run = EPOCH_IMAGES * RUN_EPOCHS
    rows, single = [], None
    _reset_peak(device)  # hands this process's cached GPU memory back for the workers
    for k in args.concurrency:
        cfg = dict(device=args.device, model=args.concurrency_model, precision=args.precision,
                   threads=max(1, cores // k), images=images,
                   batch_size=args.batch_size, warmup=args.warmup, steps=args.steps, windows=args.windows,
                   timeout=timeout)
        barrier, results = ctx.Barrier(k), ctx.Queue()
        procs = [ctx.Process(target=_concurrency_worker, args=(r, cfg, barrier, results), daemon=True)
                 for r in range(k)]
        row = {"processes": k, "threads_per_process": cfg["threads"] if device.type == "cpu" else None}
        try:
            for p in procs:
                p.start()
            reports = dict(_gather(procs, results, timeout))
        except Exception as e:  # noqa: BLE001 - recorded in the row
            barrier.abort()  # workers still waiting at the barrier give up at once
            row["status"] = "failed: " + _error(e)
        else:
            # when one worker fails the others see a broken barrier: report the cause
            errors = sorted((v.startswith("BrokenBarrierError"), r, v)
                            for r, v in reports.items() if isinstance(v, str))
            if errors:
                row["status"] = f"failed: worker {errors[0][1]}: {errors[0][2]}"
            else:
                window = args.steps * args.batch_size
                per_process = [statistics.median(window / (e - s) for s, e in reports[r]) for r in range(k)]
                aggregate = sum(per_process)
                common = statistics.median(k * window / (max(reports[r][w][1] for r in range(k))
                                                         - min(reports[r][w][0] for r in range(k)))
                                           for w in range(args.windows))
                single = aggregate if k == 1 else single
                runs_per_hour = aggregate / per_run * 3600
                row |= {"status": "measured", "aggregate_images_per_s": aggregate,
                        "per_process_images_per_s": per_process, "common_window_images_per_s": common,
                        "speedup_vs_one": aggregate / single if single else None, "runs_per_hour": runs_per_hour,
                        "grid_hours_per_backbone": GRID_RUNS / runs_per_hour}
        finally:
            for p in procs:
                if p.pid is not None:
                    p.join(timeout=30)
                    if p.is_alive():
                        p.terminate()
                        p.join()
        rows.append(row)
        _log(f"{k} process(es): " + (f"{row['aggregate_images_per_s']:.0f} img/s in all, "
                                     f"{row['runs_per_hour']:.2f} runs/h" if "runs_per_hour" in row else row["status"]))
    return {"model": args.concurrency_model, "precision": args.precision, "images": images, "cores": cores,
            "start_method": "forkserver",
            "data": f"synthetic uint8 tensor of {images:,} CIFAR-shaped images per process", "rows": rows}


# --- report -------------------------------------------------------------------------------------


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


def _precision_md(precision: str) -> str:
    return {"32-true": "fp32 (32-true)", "bf16-mixed": "bf16 autocast (bf16-mixed)",
            "16-mixed": "fp16 autocast + GradScaler (16-mixed)"}.get(precision, precision)


def _peak_header(dev: str) -> str:
    return "peak MiB allocated / reserved" if dev == "cuda" else "peak MiB"


def _peak_cell(x: dict) -> str:
    """Peak memory of a row: allocated / reserved on a GPU, ru_maxrss on the CPU."""
    if "peak_allocated_mib" in x:
        return f"{_f(x['peak_allocated_mib'])} / {_f(x['peak_reserved_mib'])}"
    return _f(x["peak_rss_mib"])


PEAK_CUDA_MD = ("allocated = `torch.cuda.max_memory_allocated` (live tensors), reserved (allocator cache included) "
                "= `torch.cuda.max_memory_reserved` (what PyTorch's caching allocator held, nearer to what the "
                "process takes from the GPU), both since `torch.cuda.empty_cache()` and "
                "`torch.cuda.reset_peak_memory_stats()`; neither counts the CUDA context")


def _levers_md(lv: dict | None, s: dict, dev: str) -> list[str]:
    lines = ["", "## 5. Levers, one at a time", ""]
    if lv is None:
        return lines + ["Not measured (--skip-levers)."]
    lines += [f"augbench's step of section 1 (resident uint8 data, batched baseline+, `Classifier.training_step`, "
              f"SGD) for {lv['model']} on the {dev}, with the levers switched on cumulatively: each row keeps the "
              f"rows above and adds one (this run's precision: {lv['precision']}; the autocast row uses "
              f"{lv['autocast_precision']}). Row 1 is fp32 eager with NCHW tensors, foreach SGD and "
              "`torch.backends.cudnn.benchmark` off"
              + (" (fp32 convolutions use cuDNN's default TF32 on Ampere and newer GPUs)" if dev == "cuda" else "")
              + f". images/s: median of {s['windows']} windows of {s['steps']} steps × {s['batch_size']} images "
              f"after {s['warmup']} warm-up steps (compilation falls in the warm-up); s/epoch = "
              f"{EPOCH_IMAGES:,} / (images/s); × row 1 and × previous compare with row 1 and with the last measured "
              "row above.", "",
              f"| # | lever | img/s | s/epoch | {_peak_header(dev)} | × row 1 | × previous | status |",
              "|---:|---|---:|---:|---:|---:|---:|---|"]
    for i, row in enumerate(lv["rows"], 1):
        status = row["status"] + (f"; {row['note']}" if "note" in row else "")
        if row["status"] == "measured":
            lines.append(f"| {i} | {row['setting']} | {_f(row['images_per_s'])} | {_f(row['s_per_epoch'], 1)} | "
                         f"{_peak_cell(row)} | {_x(row['speedup_vs_first'])} | "
                         f"{_x(row['speedup_vs_previous'])} | {status} |")
        else:
            lines.append(f"| {i} | {row['setting']} | | | | | | {status} |")
    if dev != "cuda":
        lines += ["", f"These are CPU figures ({lv['model']}): they say nothing of the GPU levers. "
                  "`python -m augbench.bench --device cuda` measures all seven rows for ResNet-18 "
                  "(torch.compile rows included)."]
    peak = (f"{PEAK_CUDA_MD}, per row, the resident dataset included" if dev == "cuda" else
            "`ru_maxrss` of this process, a high-water mark since start")
    return lines + ["", f"Peak MiB: {peak}."]


def _concurrency_md(c: dict | None, s: dict, dev: str) -> list[str]:
    lines = ["", "## 6. Grid throughput with several runs per device", ""]
    if c is None:
        return lines + ["Not measured (--skip-concurrency)."]
    lines += [f"K separate processes train augbench's step of {c['model']} (batch {s['batch_size']}, baseline+, "
              f"{_precision_md(c['precision'])}) at "
              f"once on the same {dev}, as K grid jobs do under `hydra/launcher=joblib hydra.launcher.n_jobs=K`. "
              f"Data: a {c['data']} (throughput does not depend on pixel values). Start-up (imports, data, "
              f"{s['warmup']} warm-up steps) is outside the timing; each of {s['windows']} windows of {s['steps']} "
              "steps starts in all K processes at once (a barrier)"
              + (f"; each process runs max(1, {c['cores']} cores // K) torch threads" if dev == "cpu" else "")
              + ". Per process: the median images/s of its windows; aggregate = their sum; common window = "
              "K × window images / (first start to last finish), which credits no process for time it ran alone.",
              "",
              f"Runs per hour = aggregate images/s × 3600 / ({EPOCH_IMAGES:,} training images per epoch × "
              f"{RUN_EPOCHS} epochs per run); a backbone's grid is {GRID_RUNS} runs (2 datasets × 5 regimes × "
              "5 seeds). Training steps only: validation, checkpoints and process start-up come on top.", "",
              "| K | aggregate img/s | per process img/s | common window img/s | × K=1 | runs/h | "
              f"h for {GRID_RUNS} runs | status |",
              "|---:|---:|---|---:|---:|---:|---:|---|"]
    for row in c["rows"]:
        if row["status"] == "measured":
            lines.append(f"| {row['processes']} | {_f(row['aggregate_images_per_s'])} | "
                         f"{' / '.join(_f(v) for v in row['per_process_images_per_s'])} | "
                         f"{_f(row['common_window_images_per_s'])} | {_x(row['speedup_vs_one'])} | "
                         f"{row['runs_per_hour']:.2f} | {row['grid_hours_per_backbone']:.1f} | measured |")
        else:
            lines.append(f"| {row['processes']} | | | | | | | {row['status']} |")
    if dev != "cuda":
        lines += ["", "CPU processes share the CPU's cores, so these are not the GPU figures: on a GPU, K small "
                  "runs overlap their launch overhead on one device; `python -m augbench.bench --device cuda` "
                  "measures K = 1, 2, 4."]
    return lines


def render_md(r: dict) -> str:
    m, s = r["meta"], r["settings"]
    dev = s["device"]
    lines = [
        f"# augbench benchmark: {m['device_name']}", "",
        f"{m['date']} · torch {m['torch']} · lightning {m['lightning']} · torchvision {m['torchvision']} · "
        f"Python {m['python']}", "",
        f"Command: `{m['command']}`", "",
        f"Settings: {', '.join(f'{k}={v}' for k, v in s.items())}", "",
        "**Data**: " + ("real CIFAR-10 from " + m["cifar_root"] if m["cifar_real"] else
                        "FAKE CIFAR-10 (random pixels written in torchvision's CIFAR-10 file format: no real CIFAR "
                        "under --data-root). Throughput does not depend on pixel values; accuracy is not measured.")
        + f" Trainer comparison on {r['trainer_vs_plain']['data']}"
        + (" (real Fashion-MNIST)." if r["trainer_vs_plain"]["data"] == "fashion_mnist" else "."), "",
        "## 1. Training throughput per backbone", "",
        f"(a) augbench: uint8 CIFAR resident on the {dev}, batched baseline+ (crop with 4 px of black + flip) "
        "on the device, `Classifier.training_step`, SGD (momentum 0.9, nesterov, wd 5e-4) as `make_sgd` builds it "
        + ("(fused)" if dev == "cuda" else "(foreach)") + "; " + _precision_md(s["precision"])
        + (" + channels_last" if dev == "cuda" else "")
        + (", `torch.compile`" if s["compile"] else "") + ". "
        f"(b) conventional: torchvision `CIFAR10` + PIL `RandomCrop(32, padding=4)`, `RandomHorizontalFlip()`, "
        f"`ToTensor()`, `Normalize` in a `DataLoader` with {s['workers']} workers, fp32 eager, plain SGD loop "
        "(same optimiser settings) that reads `loss.item()` every step as the usual CIFAR scripts do. "
        f"images/s: median of {s['windows']} windows of {s['steps']} steps × {s['batch_size']} images after "
        f"{s['warmup']} warm-up steps; s/epoch = {EPOCH_IMAGES:,} / (images/s).", "",
        f"| backbone | augbench img/s | s/epoch | {_peak_header(dev)} | conventional img/s | s/epoch | "
        f"{_peak_header(dev)} | ratio (a)/(b) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def ips(x):  # the median, and the spread of the windows: noise shows
        w = x["window_images_per_s"]
        return f"{_f(x['images_per_s'])} ({_f(min(w))}–{_f(max(w))})"

    for p in r["pipelines"]:
        a, b = p["augbench"], p["conventional"]
        peak_b = _peak_cell(b) + (f" (+ workers {_f(b['workers_peak_mib'])})" if "workers_peak_mib" in b else "")
        lines.append(f"| {p['model']} | {ips(a)} | {_f(a['s_per_epoch'], 1)} | {_peak_cell(a)} | "
                     f"{ips(b)} | {_f(b['s_per_epoch'], 1)} | {peak_b} | {p['ratio']:.2f}× |")
    peak = (f"{PEAK_CUDA_MD}, per pipeline (the resident dataset counts towards augbench)"
            if dev == "cuda" else "`ru_maxrss` of this process, a high-water mark since start (so (b) includes "
            "what (a) used); the workers' figure is the largest worker's `ru_maxrss`")
    lines += ["", f"img/s: median (slowest–fastest window). Peak memory: {peak}.", ""]
    models = [p["model"] for p in r["pipelines"]]
    grid = r["grid_hours"]
    lines += [f"Projected grid time on this device (2 datasets × 5 regimes × 5 seeds × 200 epochs per backbone; "
              f"backbones measured: {', '.join(models)}): augbench {grid['augbench']:.1f} h, "
              f"conventional {grid['conventional']:.1f} h." + ("" if set(models) == set(MODELS) else
                                                             " Partial: not every backbone was measured."), ""]
    if dev != "cuda":
        lines += ["**GPU figures are unmeasured**: this run had no GPU. The per-backbone table for all four "
                  "backbones, the ratio, the projected grid GPU-hours (and, with `--compile`, torch.compile on), "
                  "the GPU levers (section 5: ResNet-18, channels_last to torch.compile's reduce-overhead mode) "
                  "and the runs per GPU-hour with several runs per GPU (section 6) come from one command on a GPU "
                  "machine: "
                  "`python -m augbench.bench --device cuda` "
                  "(or `make bench ARGS=\"--device cuda\"`), which writes `benchmarks/bench_cuda.{json,md}`.", ""]

    lines += ["## 2. CPU augmentation throughput", "",
              f"images/s, median of {s['aug_windows']} interleaved windows of {s['aug_images']} images, batches of "
              f"{s['batch_size']}, one process on one thread (per-core figures). Regime rows go from stored uint8 "
              "images to the augmented, normalised batch; augbench uses the same `DeviceLoader` and callbacks as "
              "training. Baselines are written in the style of each method's reference code; a DataLoader with "
              f"k workers divides the per-image cost by at most k. Target: regimes ≥ {AUG_TARGET:.0f}×.", "",
              "| regime / op | augbench img/s | baseline img/s | speed-up | baseline written as |",
              "|---|---:|---:|---:|---|"]
    for a in r["augmentation"]:
        name = f"**{a['name']}**" if a["regime"] else a["name"]
        lines.append(f"| {name} | {_f(a['augbench_images_per_s'])} | {_f(a['baseline_images_per_s'])} | "
                     f"{a['speedup']:.1f}× | {a['baseline']} |")

    t = r["trainer_vs_plain"]
    lines += ["", "## 3. Lightning Trainer vs plain PyTorch loop", "",
              f"LeNet, {t['data']}, {t['batches_per_epoch']} batches of {s['batch_size']} per epoch, baseline+ "
              f"(CropFlip), same resident data, same optimiser as training (`make_sgd`: "
              f"{'fused' if t['optimizer']['fused'] else 'foreach'} SGD), same precision: "
              f"{_precision_md(t['precision'])}, on the {dev}"
              + (" with one torch thread (stable ratios on shared machines)" if dev == "cpu" else "")
              + f"; median of {t['epochs']} interleaved epochs. Target: Trainer/plain ≤ {TRAINER_TARGET}.", "",
              "| loop | s/epoch | img/s | ratio to plain |", "|---|---:|---:|---:|"]
    for k, label in (("plain", "plain loop: net, cross-entropy, SGD"),
                     ("module", "plain loop calling `Classifier.training_step`"),
                     ("trainer", "`lightning.Trainer.fit`")):
        lines.append(f"| {label} | {t[f'{k}_s_per_epoch']:.2f} | {_f(t[f'{k}_images_per_s'])} | "
                     f"{t[f'{k}_s_per_epoch'] / t['plain_s_per_epoch']:.3f} |")

    h = r["host_syncs"]
    lines += ["", "## 4. Host syncs per training step", "",
              f"Counted, not assumed: `torch.Tensor.{{{', '.join(SYNC_METHODS)}}}` are patched with counters "
              f"(and, on CUDA, `torch.cuda.set_sync_debug_mode` reports synchronising calls) during {h['steps']} "
              "steps of augbench's step loop per regime, and for a Trainer epoch as the difference between "
              f"a {2 * h['steps']}-step and a {h['steps']}-step epoch. A site that fires on every step is a per-step "
              "sync; others are periodic (the NaN check reads the loss flag every 50 steps by design).", "",
              "| loop | syncs per step | sites firing every step |", "|---|---:|---|"]
    for k, v in h.items():
        if isinstance(v, dict):
            lines.append(f"| {k} | {v['per_step']:.2f} | {'<br>'.join(v['every_step']) or 'none'} |")

    lines += _levers_md(r["levers"], s, dev) + _concurrency_md(r["concurrency"], s, dev)

    tg = r["targets"]
    lines += ["", "## Targets", "",
              f"- augmentation speed-up ≥ {AUG_TARGET:.0f}× for every regime: "
              f"{'met' if tg['aug_speedup_met'] else 'MISSED'} (lowest {tg['aug_speedup_min']:.1f}×)",
              f"- Trainer/plain-loop epoch ≤ {TRAINER_TARGET}: {'met' if tg['trainer_ratio_met'] else 'MISSED'} "
              f"({tg['trainer_ratio']:.3f})",
              f"- no host sync on every step: {'met' if tg['no_sync_every_step'] else 'MISSED'}", ""]
    return "\n".join(lines)


# --- entry point --------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m augbench.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--models", help=f"comma-separated backbones of {', '.join(MODELS)} (CPU: lenet; CUDA: all)")
    p.add_argument("--steps", type=int, help="timed steps per window (CPU 25, CUDA 100)")
    p.add_argument("--windows", type=int, default=5, help="timed windows; the median is reported")
    p.add_argument("--warmup", type=int, help="untimed steps first (CPU 10, CUDA 30)")
    p.add_argument("--workers", type=int, help="DataLoader workers of the conventional pipeline (CPU 2, CUDA 8)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own choice)")
    p.add_argument("--compile", action="store_true", help="torch.compile augbench's backbone")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="Trainer precision of augbench's side, as trainer.precision in training (auto: bf16-mixed "
                        "on GPUs of compute capability >= 8.0, 16-mixed with a gradient scaler on older GPUs, "
                        "32-true on the CPU); the conventional pipeline stays fp32")
    p.add_argument("--epochs", type=int, default=3, help="interleaved epochs per loop of the Trainer comparison")
    p.add_argument("--limit-batches", type=int, help="batches per epoch of the Trainer comparison (default: all)")
    p.add_argument("--aug-images", type=int, default=1280, help="images per window of the augmentation comparison")
    p.add_argument("--aug-windows", type=int, default=7)
    p.add_argument("--sync-steps", type=int, default=50, help="steps over which host syncs are counted")
    p.add_argument("--lever-model", choices=MODELS, help="backbone of the levers section (CPU: lenet; CUDA: resnet18)")
    p.add_argument("--levers-compile", action=argparse.BooleanOptionalAction,
                   help="measure the torch.compile levers (CUDA: on; CPU: off, compiling takes minutes on few cores)")
    p.add_argument("--skip-levers", action="store_true", help="leave out the levers section")
    p.add_argument("--concurrency", help="comma-separated numbers K of processes training at once on the device "
                                         "(CPU 1,2; CUDA 1,2,4)")
    p.add_argument("--concurrency-model", choices=MODELS, default="lenet", help="backbone of the K processes")
    p.add_argument("--skip-concurrency", action="store_true", help="leave out the several-runs-per-device section")
    p.add_argument("--data-root", default="data", help="folder holding cifar-10-batches-py/ (else fake data)")
    p.add_argument("--fake-images", type=int, default=50_000, help="training images of the fake CIFAR-10")
    p.add_argument("--out", default="benchmarks")
    args = p.parse_args(argv)
    for k, v in DEFAULTS[args.device].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.aug_images = max(1, args.aug_images // args.batch_size) * args.batch_size  # whole batches on both sides
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    try:
        args.concurrency = sorted({int(k) for k in str(args.concurrency).split(",") if k.strip()})
    except ValueError:
        p.error(f"--concurrency {args.concurrency!r}: expected comma-separated integers")
    if not args.concurrency or args.concurrency[0] < 1:
        p.error("--concurrency: each K must be at least 1")
    if unknown := [m for m in args.models if m not in MODELS]:
        p.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    if args.device == "cpu" and args.precision == "16-mixed":
        p.error("--precision 16-mixed needs --device cuda (fp16 AMP with a gradient scaler is CUDA's; "
                "Lightning would train bf16-mixed on the CPU instead)")
    # resolved once, here, so that every section and the report use the same precision
    args.precision_requested = args.precision
    args.precision = resolve_precision(args.precision, torch.device(args.device))
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # as training does on GPUs
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    lightning_log.setLevel(logging.ERROR)  # no "GPU available" banners for every fit
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="lightning")
            result = run(args, device, argv)
    finally:
        lightning_log.setLevel(level)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"bench_{args.device}.json").write_text(json.dumps(result, indent=2, default=str))
    md = render_md(result)
    (out / f"bench_{args.device}.md").write_text(md)
    print(md)
    return result


def run(args, device, argv=None) -> dict:
    """All measurements, as the dict that main writes as JSON."""
    with tempfile.TemporaryDirectory(prefix="augbench-bench-") as tmp:
        root = Path(args.data_root)
        real = (root / "cifar-10-batches-py").is_dir()
        if not real:
            _log(f"no CIFAR-10 under {root}: writing {args.fake_images} fake images to {tmp}")
            root = write_fake_cifar(Path(tmp), args.fake_images, max(args.fake_images // 5, 1), cifar100=False)
        dm = AugDataModule("cifar10", root=str(root), batch_size=args.batch_size, verify=real, download=False)
        dm.load()
        pipelines = bench_pipelines(args, device, dm.host["train"], root, real)
        levers = None if args.skip_levers else bench_levers(args, device, dm.host["train"])
        concurrency = None if args.skip_concurrency else bench_concurrency(args, device, len(dm.host["train"][0]))
        with _one_thread(torch.device("cpu")):
            augmentation = bench_augment(args, dm.host["train"])
        small = _trainer_data(root, real, args.batch_size)
        with _one_thread(device):
            trainer_vs_plain = bench_trainer(args, device, small)
            syncs = bench_syncs(args, device, small)

    regimes = [a["speedup"] for a in augmentation if a["regime"]]
    return {
        "meta": {
            "device": args.device, "device_name": _device_name(device), "torch": torch.__version__,
            "lightning": L.__version__, "torchvision": torchvision.__version__, "python": platform.python_version(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["python -m augbench.bench", *(argv if argv is not None else sys.argv[1:])]),
            "cifar_real": real, "cifar_root": str(root) if real else None,
            "precision": args.precision, "precision_requested": args.precision_requested,
        },
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "data_root")},
        "pipelines": pipelines,
        "grid_hours": grid_hours(pipelines),
        "augmentation": augmentation,
        "trainer_vs_plain": trainer_vs_plain,
        "host_syncs": syncs,
        "levers": levers,
        "concurrency": concurrency,
        "targets": {
            "aug_speedup_min": min(regimes), "aug_speedup_met": min(regimes) >= AUG_TARGET,
            "trainer_ratio": trainer_vs_plain["trainer_over_plain"],
            "trainer_ratio_met": trainer_vs_plain["trainer_over_plain"] <= TRAINER_TARGET,
            "no_sync_every_step": syncs["no_sync_every_step"],
        },
    }


if __name__ == "__main__":
    main()

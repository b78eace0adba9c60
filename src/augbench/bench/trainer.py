"""Section 3: a LeNet epoch through the Lightning Trainer against a plain PyTorch loop on the same data."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

from augbench.bench.common import _amp, _backward_step, _log, _scaler, _sgd, _sync, _timed_loop
from augbench.bench.pipelines import _batches, augbench_step
from augbench.callbacks import CropFlip
from augbench.data import AugDataModule, DatasetError, DeviceLoader
from augbench.models import build_model
from augbench.module import Classifier
from augbench.training import resolve_precision


# The loops compared train at lr 0 from the same initial weights: the step's compute then stays the
# same in all of them. Trained weights change the compute itself (LeNet's plain loop measured 2.22 ms a
# step at lr 0.1, 2.36 at 0.02 and 2.53 at 0 on one CPU), which would pass for framework overhead; the
# optimiser's kernels run all the same.
FROZEN = 0.0


class Automatic(Classifier):
    """The Classifier under Lightning's automatic optimisation, as it trained before it took the step
    itself: ``training_step`` returns the loss and Lightning's closure steps."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.automatic_optimization = True

    def training_step(self, batch, batch_idx):
        return self.training_loss(batch, batch_idx)


def _frozen(opt) -> None:
    for group in opt.param_groups:
        group["lr"] = FROZEN


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


# trainer.steps_per_batch of conf/trainer (a test holds them equal): the benchmarks time it next to one batch a step
STEPS_PER_BATCH = 16


def _train_limit(dm: AugDataModule, steps: int, steps_per_batch: int) -> int | None:
    """Set up an epoch of ``steps`` optimiser steps, ``steps_per_batch`` at a time, as ``train`` does:
    grouped, the loader limits the epoch in steps. Returns the Trainer's ``limit_train_batches``."""
    return None if dm.group_steps(steps_per_batch, steps) else steps


def _trainer_epoch(module, dm, device, batches: int, precision: str, steps_per_batch: int = 1) -> float:
    timer = _EpochTimer(device)
    on_gpu = device.type == "cuda"
    trainer = L.Trainer(accelerator="gpu" if on_gpu else "cpu", devices=1, precision=precision, max_epochs=1,
                        limit_train_batches=_train_limit(dm, batches, steps_per_batch),
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
    torch.manual_seed(0)  # every loop starts from these weights, and trains at lr 0 (see FROZEN)
    plain_one = plain_step(dm.host["train"], spec, device, bs, args.precision)
    torch.manual_seed(0)
    step = augbench_step("lenet", dm.host["train"], spec, device, [CropFlip()], bs, precision=args.precision)
    for opt in (plain_one.opt, step.opt):
        _frozen(opt)
    plain, module_loop = _timed_loop(plain_one, device), _timed_loop(step, device)

    def classifier(cls):
        torch.manual_seed(0)
        return cls("lenet", spec.channels, spec.num_classes, lr=FROZEN, channels_last=on_gpu)

    module, automatic, grouped = classifier(Classifier), classifier(Automatic), classifier(Classifier)
    group = getattr(args, "steps_per_batch", STEPS_PER_BATCH)
    loops = {"plain": plain, "module": module_loop,
             "trainer": lambda k: _trainer_epoch(module, dm, device, k, args.precision),
             "trainer_grouped": lambda k: _trainer_epoch(grouped, dm, device, k, args.precision, group),
             "trainer_automatic": lambda k: _trainer_epoch(automatic, dm, device, k, args.precision)}
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
        "trainer_automatic_over_plain": med["trainer_automatic"] / med["plain"],
        "steps_per_batch": group, "trainer_grouped_over_plain": med["trainer_grouped"] / med["plain"],
        "module_over_plain": med["module"] / med["plain"],
        "raw_seconds": times,
    }


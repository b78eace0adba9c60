"""Section 1: augbench's training step against the conventional CIFAR pipeline, per backbone."""

from __future__ import annotations

import contextlib
import gc
import itertools
import resource
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import transforms as T

from augbench.bench.common import (CIFAR, GRID_EPOCHS, OPTIM, _amp, _backward_step, _log, _peak_memory, _rate,
                                   _reset_peak, _scaler, _sgd, _windows)
from augbench.bench.kernels import count_step
from augbench.callbacks import CropFlip
from augbench.data import DeviceLoader, cifar_class
from augbench.models import build_model
from augbench.module import Classifier
from augbench.training import resolve_precision
from augbench.wholestep import WholeStep


def _batches(loader: DeviceLoader):
    """A DeviceLoader's batches, epoch after epoch, each epoch its own permutation."""
    for epoch in itertools.count():
        loader.epoch_fn = lambda e=epoch: e
        yield from loader


def _no_phase(name: str):
    return contextlib.nullcontext()


def augbench_step(model: str, host: tuple, spec, device, augs: list, batch_size: int, compile_: bool | str = False,
                  *, channels_last: bool | None = None, precision: str | None = None, fused: bool | None = None,
                  net: torch.nn.Module | None = None, compile_scope: str = "backbone", phase=_no_phase):
    """augbench's training step: resident uint8 batch, device augmentation, Classifier step, SGD.

    ``channels_last``, ``precision`` (a resolved Trainer precision: autocast dtype, and the gradient
    scaler of 16-mixed) and ``fused`` (SGD) default to what training uses on ``device``; ``compile_`` is
    True for torch.compile's default mode or the name of a mode; ``net`` replaces the backbone that
    ``model`` names (a variant of it); ``compile_scope="step"`` compiles forward, loss, backward and update
    as one graph instead of the backbone (``model.compile_scope=step``). ``phase(name)`` is entered around each part of the step, in the
    order the Trainer runs them: data, augmentation, loss (with forward inside it), optimizer (zero_grad),
    backward, optimizer (step); the kernel counter files ops by it. The returned ``step(i)`` is
    ``step.train(step.make_batch(), i)`` and carries its module, optimiser and scaler as ``step.module``,
    ``step.opt`` and ``step.scaler``."""
    x, y = (t.to(device) for t in host)  # resident for as long as the step lives
    channels_last = device.type == "cuda" if channels_last is None else channels_last
    precision = resolve_precision(precision or "auto", device)
    module = Classifier(model, spec.channels, spec.num_classes, channels_last=channels_last)
    if net is not None:
        module.net = net.to(memory_format=torch.channels_last) if channels_last else net
    module = module.to(device)
    mode = None if compile_ is True else compile_ or None
    if compile_ and compile_scope == "backbone":
        module.net = torch.compile(module.net, mode=mode)
    if fused is None:  # what the Trainer gets: make_sgd for the module's device
        opt = module.configure_optimizers()["optimizer"]
    else:
        opt = _sgd(module.parameters(), device, fused)
    scaler = _scaler(precision)
    whole = WholeStep(module, opt, precision, mode=mode) if compile_ and compile_scope == "step" else None
    for a in augs:
        a.prepare(spec.mean, spec.std, device)
    stream = _batches(DeviceLoader(x, y, batch_size, spec.mean, spec.std, shuffle=True, drop_last=True))

    forward = module.forward

    def forward_phase(*a, **kw):
        with phase("forward"):
            return forward(*a, **kw)

    if phase is not _no_phase:
        module.forward = forward_phase

    def make_batch():
        with phase("data"):
            batch = next(stream)
        with phase("augmentation"):
            for a in augs:  # in the order of the callbacks list, as the Trainer calls them
                a.apply(batch)
        return batch

    def step(i):
        train(make_batch(), i)

    def train(batch, i):
        if whole is not None:  # one graph: the counter's phases do not apply
            module.record_step(*whole(batch), i)
            return
        with _amp(device, precision), phase("loss"):
            loss = module.training_loss(batch, i)
        with phase("optimizer"):
            opt.zero_grad(set_to_none=True)
        if scaler is not None:
            with phase("backward"):
                _backward_step(loss, opt, scaler)
            return
        with phase("backward"):
            loss.backward()
        with phase("optimizer"):
            opt.step()

    step.module, step.opt, step.scaler, step.make_batch, step.train = module, opt, scaler, make_batch, train
    step.whole = whole
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
        # what this code's step launches on a GPU (counted on the CPU), kept with the measurement it explains
        counted = count_step(model, [CropFlip()], batch_size=args.batch_size)
        row["augbench"]["gpu_kernels_per_step"] = counted.total().total()
        rows.append(row)
        _log(f"{model}: augbench {row['augbench']['images_per_s']:.0f} img/s, conventional "
             f"{row['conventional']['images_per_s']:.0f} img/s, ratio {row['ratio']:.2f}")
    return rows


def grid_hours(rows: list[dict]) -> dict:
    """Projected time of the whole grid, from each backbone's s/epoch."""
    return {k: sum(GRID_EPOCHS * r[k]["s_per_epoch"] for r in rows) / 3600 for k in ("augbench", "conventional")}



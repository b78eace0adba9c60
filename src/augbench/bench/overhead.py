"""``python -m augbench.bench --overhead``: Lightning's host time per training step, what augbench
removed from it, and what is left. Writes ``<out>/overhead_<device>.{json,md}``.

One process, one device, one thread; LeNet with crop+flip on small batches, so that compute is small
and host time shows; every loop at lr 0 from the same initial weights (see ``bench.trainer.FROZEN``). Per-step
figures are (time of 2n steps − time of n steps) / n, which cancels what an epoch costs once (start,
end, checkpoint); medians of interleaved repetitions.

- ``plain``: a PyTorch loop: the training optimiser, cross-entropy, the same CropFlip.
- ``trainer``: augbench's Classifier under the Trainer as ``train`` sets it up (logger, checkpoint
  callback, no progress bar).
- ``trainer_automatic``: the same with Lightning's automatic optimisation (its closure, the step
  hooks and the precision plugin's wrappers), as the Classifier trained before it took the step itself.
- ``trainer_before``: automatic optimisation and the Classifier's bookkeeping before the cuts:
  torchmetrics MeanMetric for the training loss and accuracy, and every write of Lightning's hook name
  through ``nn.Module.__setattr__``.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torchmetrics import MeanMetric

from augbench.bench.common import _device_name, _log, _timed_loop, median_ci
from augbench.bench.trainer import (FROZEN, STEPS_PER_BATCH, Automatic, _EpochTimer, _frozen, _train_limit,
                                    _trainer_data, plain_step)
from augbench.callbacks import CropFlip, GalleryLogger
from augbench.module import Classifier
from augbench.training import LastCheckpoint


class BeforeCuts(Automatic):
    """The Classifier's per-step bookkeeping before the cuts, to measure them in the same run."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.train_loss, self.train_acc = MeanMetric(nan_strategy="disable"), MeanMetric(nan_strategy="disable")

    def __setattr__(self, name, value):
        torch.nn.Module.__setattr__(self, name, value)

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.train_loss.update(loss.detach())
        self.train_acc.update(self.train_sums[1])  # stands for the per-step accuracy update (the summed
        # buffer of now still runs too: this slightly overstates the old cost)
        return loss


def _trainer_epoch(cls, dm, device, steps: int, folder: Path, k: int = 1) -> float:
    """Seconds of one epoch of ``steps`` optimiser steps, ``k`` per pass of Lightning's batch loop."""
    spec = dm.spec
    torch.manual_seed(0)  # the plain loop's initial weights
    model = cls("lenet", spec.channels, spec.num_classes, lr=FROZEN, channels_last=device.type == "cuda")
    timer = _EpochTimer(device)
    on_gpu = device.type == "cuda"
    trainer = L.Trainer(accelerator="gpu" if on_gpu else "cpu", devices=1, max_epochs=1,
                        limit_train_batches=_train_limit(dm, steps, k),
                        limit_val_batches=0, num_sanity_val_steps=0, enable_progress_bar=False,
                        enable_model_summary=False, logger=TensorBoardLogger(folder, name="tb"),
                        callbacks=[CropFlip(), GalleryLogger(), timer, LastCheckpoint(folder)])
    trainer.fit(model, datamodule=dm)
    return timer.seconds


def bench_overhead(args, device) -> dict:
    root = Path(args.root) if getattr(args, "root", None) else Path("data")
    dm = _trainer_data(root, getattr(args, "verify", True), args.overhead_batch)
    n, reps, group = args.overhead_steps, args.overhead_reps, args.steps_per_batch
    torch.manual_seed(0)
    plain = plain_step(dm.host["train"], dm.spec, device, args.overhead_batch, "32-true")
    _frozen(plain.opt)

    plain_loop = _timed_loop(plain, device)

    with tempfile.TemporaryDirectory() as tmp:
        loops = {"plain": plain_loop,
                 "trainer": lambda k: _trainer_epoch(Classifier, dm, device, k, Path(tmp)),
                 "trainer_grouped": lambda k: _trainer_epoch(Classifier, dm, device, k, Path(tmp), group),
                 "trainer_automatic": lambda k: _trainer_epoch(Automatic, dm, device, k, Path(tmp)),
                 "trainer_before": lambda k: _trainer_epoch(BeforeCuts, dm, device, k, Path(tmp))}
        for fn in loops.values():
            fn(5)  # warm-up
        per_step = {k: [] for k in loops}
        for _ in range(reps):  # interleaved: every loop sees the same machine load
            for k, fn in loops.items():
                per_step[k].append((fn(2 * n) - fn(n)) / n)
    ms = {k: 1e3 * statistics.median(v) for k, v in per_step.items()}
    # paired: each repetition's loop against the plain loop timed next to it, so that a slow spell of
    # the machine cancels; the median of those differences, and their range
    over = {k: [1e3 * (t - p) for t, p in zip(v, per_step["plain"])] for k, v in per_step.items() if k != "plain"}
    result = {"device": _device_name(device), "device_type": device.type, "batch": args.overhead_batch, "steps": n, "reps": reps,
              "threads": torch.get_num_threads(), "ms_per_step": ms,
              "steps_per_batch": group,
              "trainer_minus_plain_ms": statistics.median(over["trainer"]),
              "grouped_minus_plain_ms": statistics.median(over["trainer_grouped"]),
              "before_minus_plain_ms": statistics.median(over["trainer_before"]),
              "automatic_minus_plain_ms": statistics.median(over["trainer_automatic"]),
              "over_plain_range_ms": {k: [min(v), max(v)] for k, v in over.items()},
              "over_plain_ci95_ms": {k: list(median_ci(v)) for k, v in over.items()},
              "raw_ms": {k: [1e3 * x for x in v] for k, v in per_step.items()}}
    _log(f"overhead: trainer − plain {result['trainer_minus_plain_ms']:.3f} ms/step, with {group} steps per "
         f"batch {result['grouped_minus_plain_ms']:.3f} "
         f"(before the cuts {result['before_minus_plain_ms']:.3f})")
    return result


def overhead_md(r: dict) -> str:
    ms, span = r["ms_per_step"], r["over_plain_range_ms"]

    ci = r.get("over_plain_ci95_ms", {})

    def over(key: str, loop: str) -> str:
        lo, hi = span[loop]
        interval = f" [{ci[loop][0]:+.3f}, {ci[loop][1]:+.3f}]" if loop in ci else ""
        return f"{r[key]:+.3f}{interval} ({lo:+.3f} to {hi:+.3f})"

    return "\n".join([
        f"# Lightning's host time per training step ({r['device']})", "",
        "Measured (not projected): LeNet, crop+flip, batch "
        f"{r['batch']}, {r['threads']} thread(s), every loop at lr 0 from the same initial weights (trained "
        "weights change the compute itself); per step = (2n − n steps)/n with n = "
        f"{r['steps']}, "
        f"median of {r['reps']} interleaved repetitions; over the plain loop: the median (and range) of each "
        "repetition's difference to the plain loop timed next to it, [its 95% confidence interval] (order statistics, "
        "distribution-free) and (range). `python -m augbench.bench --overhead`.", "",
        "| loop | ms per step | over the plain loop |", "|---|---:|---:|",
        f"| plain PyTorch loop | {ms['plain']:.3f} | — |",
        f"| Trainer, Classifier before the cuts (MeanMetric updates, nn.Module writes of the hook name) "
        f"| {ms['trainer_before']:.3f} | {over('before_minus_plain_ms', 'trainer_before')} |",
        f"| Trainer, automatic optimisation, Classifier with the cuts (summed buffer, plain hook-name writes) "
        f"| {ms['trainer_automatic']:.3f} | {over('automatic_minus_plain_ms', 'trainer_automatic')} |",
        f"| Trainer, Classifier now (the cuts, and the step taken in training_step) | {ms['trainer']:.3f} "
        f"| {over('trainer_minus_plain_ms', 'trainer')} |",
        f"| Trainer, Classifier now, trainer.steps_per_batch={r['steps_per_batch']} (Lightning's batch loop once per "
        f"{r['steps_per_batch']} steps) | {ms['trainer_grouped']:.3f} | {over('grouped_minus_plain_ms', 'trainer_grouped')} |",
        "",
        "Target: ≤ 0.15 ms per step over the plain loop (the median): one batch per step "
        + ("met" if r["trainer_minus_plain_ms"] <= 0.15 else "**not met**")
        + f"; {r['steps_per_batch']} steps per batch " + ("met" if r["grouped_minus_plain_ms"] <= 0.15 else "**not met**")
        + (f" (its interval reaches {ci['trainer_grouped'][1]:+.3f})" if ci.get("trainer_grouped", [0, 0])[1] > 0.15
           else "") + ".",
        ""])


def write_overhead(r: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    name = "cpu" if r["device_type"] == "cpu" else "".join(c if c.isalnum() else "_" for c in r["device"]).lower()
    paths = [out / f"overhead_{name}.json", out / f"overhead_{name}.md"]
    paths[0].write_text(json.dumps(r, indent=1))
    paths[1].write_text(overhead_md(r))
    return paths


def main(argv=None) -> int:
    import argparse
    import logging
    import warnings

    p = argparse.ArgumentParser(prog="python -m augbench.bench --overhead", description=__doc__.split("\n\n")[0])
    p.add_argument("--overhead", action="store_true", help="this section (required)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--overhead-batch", type=int, default=32, help="images per step (small: host time shows)")
    p.add_argument("--overhead-steps", type=int, default=200, help="n: each repetition times n and 2n steps")
    p.add_argument("--steps-per-batch", type=int, default=STEPS_PER_BATCH,
                   help="trainer.steps_per_batch of the grouped loop (default: conf/trainer's)")
    p.add_argument("--overhead-reps", type=int, default=11, help="interleaved repetitions; the median is reported")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--root", default=None, help="CIFAR-10 folder when Fashion-MNIST is not installed")
    p.add_argument("--out", default="benchmarks")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="lightning")
        result = bench_overhead(args, torch.device(args.device))
    for path in write_overhead(result, Path(args.out)):
        print(path)
    print(overhead_md(result))
    return 0

"""Section 4: host syncs per training step, counted by patching the tensor-to-Python conversions."""

from __future__ import annotations

import traceback
import warnings
from collections import Counter
from pathlib import Path

import torch

from augbench.bench.common import REGIMES, SYNC_METHODS, _log
from augbench.bench.pipelines import augbench_step
from augbench.bench.trainer import _trainer_epoch
from augbench.data import AugDataModule
from augbench.module import Classifier


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



"""Section 5: the speed levers of augbench's step, switched on one after another."""

from __future__ import annotations

import gc

import torch

from augbench.bench.common import (CIFAR, _autocast_dtype, _error, _log, _peak_memory, _rate, _reset_peak,
                                   _scaler_needed, _windows)
from augbench.bench.pipelines import augbench_step
from augbench.callbacks import CropFlip
from augbench.training import resolve_precision

# Cumulative: each row keeps the levers above it and adds its own.
LEVERS = (
    ("baseline", "fp32 eager, NCHW, foreach SGD, cudnn.benchmark off", {}),
    ("channels_last", "+ channels_last", {"channels_last": True}),
    ("cudnn_benchmark", "+ cudnn.benchmark", {"benchmark": True}),
    ("autocast", "+ {autocast}", {"amp": True}),
    ("fused_sgd", "+ fused SGD (what training uses on CUDA)", {"fused": True}),
    ("compile", "+ torch.compile (default mode)", {"compile_": True}),
    ("reduce_overhead", "+ torch.compile mode=reduce-overhead (CUDA graphs)", {"compile_": "reduce-overhead"}),
    ("whole_step", "+ the whole step as one CUDA graph (model.compile_scope=step)", {"compile_scope": "step"}),
)


def _lever_skipped(lever: str, device, args) -> str | None:
    if device.type == "cpu":
        reason = {"cudnn_benchmark": "cuDNN is the GPU's convolution library",
                  "fused_sgd": "CPU training uses foreach SGD",
                  "reduce_overhead": "CUDA graphs", "whole_step": "CUDA graphs"}.get(lever)
        if reason:
            return f"n/a on cpu ({reason})"
    if lever in ("compile", "reduce_overhead", "whole_step") and not args.levers_compile:
        return "skipped (--levers-compile off)"
    return None


def _lever_precision(precision: str, device) -> str:
    """The autocast lever's precision: this run's when it is a mixed one; else the one ``auto`` picks on
    a GPU, and bf16-mixed on the CPU (shown for reference)."""
    if _autocast_dtype(precision) is not None:
        return precision
    return resolve_precision("auto", device) if device.type == "cuda" else "bf16-mixed"


def bench_levers(args, device, host) -> dict:
    """augbench's step of --lever-model with the levers of LEVERS switched on one after another."""
    conf = dict(channels_last=False, benchmark=False, amp=False, fused=False, compile_=False, compile_scope="backbone")
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
                                     precision=mixed if conf["amp"] else "32-true", fused=conf["fused"],
                                     compile_scope=conf["compile_scope"])
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



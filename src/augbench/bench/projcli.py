"""``python -m augbench.bench --project h100`` (and ``--check-kernels``, ``--update-kernels``, ``--densenet``).

    python -m augbench.bench --project h100             # -> benchmarks/projection_h100.{json,md}, ~3-4 min
    python -m augbench.bench --project h100,a100,h200   # one measurement, one file per GPU
    python -m augbench.bench --project h100 --quick     # LeNet, three regimes: seconds
    python -m augbench.bench --check-kernels            # exit 1 when a cell's kernels per step grew
    python -m augbench.bench --update-kernels           # rewrite benchmarks/kernels.json
    python -m augbench.bench --densenet                 # -> benchmarks/densenet.{json,md}: the DenseNet attempts
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

from augbench.bench import projection as P
from augbench.bench import tracking
from augbench.bench.common import _device_name, _log
from augbench.bench.projection_md import gpu_measurement, render
from augbench.models import MODELS

FLAGS = ("--project", "--check-kernels", "--update-kernels", "--densenet")
QUICK = dict(models="lenet", regimes="baseline,baseline_plus,cutmix", rounds=3, framework_batches=8,
             framework_epochs=1)


def wanted(argv) -> bool:
    return any(a.split("=")[0] in FLAGS for a in argv)


def regime_factories(names: list[str] | None = None) -> dict:
    """{regime: a function making its callbacks}, every option of conf/aug (the study's five first),
    instantiated from the yaml files as training instantiates them."""
    from augbench.gallery import regimes

    every = list(regimes(0))
    unknown = [n for n in names or () if n not in every]
    if unknown:
        raise SystemExit(f"unknown regime(s) {unknown}; conf/aug has {', '.join(every)}")
    return {n: (lambda n=n: regimes(0)[n]) for n in (names or every)}


def parse_args(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m augbench.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--project", help=f"project the grid's cost on these GPUs (comma-separated: {', '.join(P.PROFILES)})")
    p.add_argument("--check-kernels", action="store_true",
                   help="compare kernels per step with benchmarks/kernels.json; exit 1 when a cell grew")
    p.add_argument("--update-kernels", action="store_true", help="rewrite benchmarks/kernels.json from this code")
    p.add_argument("--densenet", action="store_true", help="DenseNet: kernels and bytes per layer, and the "
                   "attempts to cut its step (compile, shared buffer, ...), measured before and after")
    p.add_argument("--quick", action="store_true", help="LeNet and three regimes, few rounds (tests)")
    p.add_argument("--models", help=f"comma-separated backbones (default: all of {', '.join(MODELS)})")
    p.add_argument("--regimes", help="comma-separated regimes of conf/aug to count (default: all); the host "
                   "time is measured for those of the grid (baseline, baseline_plus, cutout, mixup, cutmix)")
    p.add_argument("--rounds", type=int, help="interleaved timed steps per batch size for the host time (5)")
    p.add_argument("--framework-us", type=float, help="framework overhead per step in µs (default: measured)")
    p.add_argument("--framework-kernels", type=int, default=None, help="framework kernels per step (default: counted)")
    p.add_argument("--framework-batches", type=int, help="steps per epoch of the Trainer measurement (40)")
    p.add_argument("--framework-epochs", type=int, help="interleaved epochs of the Trainer measurement (3)")
    p.add_argument("--steps-per-batch", type=int, default=None,
                   help="trainer.steps_per_batch of the Trainer measurement (default: conf/trainer's)")
    for k, (default, why) in P.ASSUMPTIONS.items():
        p.add_argument(f"--{k.replace('_', '-')}", type=float, default=default,
                       help=f"{why} (default {default})".replace("%", "%%"))
    p.add_argument("--compile-timeout", type=float, default=900,
                   help="seconds allowed for each torch.compile attempt of --densenet (a cold compile took ~4 min here)")
    p.add_argument("--out", default="benchmarks")
    args = p.parse_args(argv)
    base = QUICK if args.quick else dict(models=",".join(MODELS), regimes=None, rounds=5, framework_batches=40,
                                         framework_epochs=3)
    for k, v in base.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if unknown := [m for m in args.models if m not in MODELS]:
        p.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    args.regimes = [r.strip() for r in args.regimes.split(",")] if args.regimes else None
    args.gpus = [g.strip().lower() for g in (args.project or "").split(",") if g.strip()]
    if unknown := [g for g in args.gpus if g not in P.PROFILES]:
        p.error(f"--project: unknown GPU(s) {unknown}; choose from {', '.join(P.PROFILES)}")
    args.project = args.gpus[0] if args.gpus else None
    args.argv = list(argv)
    return args


def _framework(args) -> dict:
    if args.framework_us is not None:
        return {"framework_us": args.framework_us, "framework_kernels": args.framework_kernels or 0, "given": True,
                "batches": 0, "epochs": 0, "trainer_kernels_per_step": float("nan"), "own_kernels_per_step": 0}
    fw = P.framework_overhead(args.framework_batches, args.framework_epochs, args.steps_per_batch)
    if args.framework_kernels is not None:
        fw["framework_kernels"] = args.framework_kernels
    fw |= P.paired_overhead(Path(args.out) / "overhead_cpu.json", fw["steps_per_batch"])
    _log(f"framework: {fw['framework_us']:.0f} µs and {fw['framework_kernels']} kernels per step over augbench's loop")
    return fw


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.densenet:
        from augbench.bench.densenet import study

        study(args, out)
    if not (args.project or args.check_kernels or args.update_kernels):
        return 0
    regimes = regime_factories(args.regimes)
    measured = P.measure(args.models, regimes, rounds=args.rounds if args.project else 0)
    fresh = tracking.counts_doc(measured)
    diff = tracking.compare(fresh, tracking.load())
    notes = tracking.describe(diff)
    for line in notes:
        _log(line)
    if args.update_kernels:
        tracking.write(fresh)
        _log(f"wrote {tracking.KERNELS_FILE}")
    if args.gpus:
        fw = _framework(args)
        densenet = None
        if "densenet" in args.models:
            from augbench.bench.densenet import layer_table_md

            densenet = layer_table_md()
        for gpu in args.gpus:
            write_projection(args, gpu, out, measured, fw, notes, densenet)
    return 1 if args.check_kernels and diff["grew"] else 0


def write_projection(args, gpu: str, out: Path, measured: dict, fw: dict, notes: list[str],
                     densenet: list[str] | None = None) -> dict:
    profile = P.profile_dict(gpu)
    result = {
        "label": "PROJECTION: GPU figures are projected from CPU counts and CPU host timings, not measured",
        "meta": {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
                 "python": platform.python_version(), "cpu": _device_name(torch.device("cpu")),
                 "command": shlex.join(["python", "-m", "augbench.bench", *args.argv])},
        "profile": profile, "assumptions": P.assumptions(args), "settings": P.run_settings(), "framework": fw,
        "measured": measured,
        "projection": P.project(measured, P.PROFILES[gpu], P.assumptions(args), fw),
        "tracking": notes, "densenet": densenet,
    }
    result["gpu_check"] = gpu_measurement(out, profile, result)
    (out / f"projection_{gpu}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    md = render(result)
    (out / f"projection_{gpu}.md").write_text(md)
    print(md)
    return result

"""The command line: ``python -m augbench.bench`` runs the sections and writes bench_<device>.{json,md}."""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path

import lightning as L
import torch
import torchvision

from augbench.bench.augment import bench_augment
from augbench.bench.common import AUG_TARGET, DEFAULTS, PRECISIONS, TRAINER_TARGET, _device_name, _log, _one_thread
from augbench.bench.concurrency import bench_concurrency
from augbench.bench.levers import bench_levers
from augbench.bench.markdown import render_md
from augbench.bench.pipelines import bench_pipelines, grid_hours
from augbench.bench.syncs import bench_syncs
from augbench.bench.trainer import _trainer_data, bench_trainer
from augbench.data import AugDataModule
from augbench.fakedata import write_fake_cifar
from augbench.models import MODELS
from augbench.training import resolve_precision

DESCRIPTION = "``python -m augbench.bench``: how fast augbench trains, against the conventional CIFAR pipeline."


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m augbench.bench", description=DESCRIPTION,
        epilog="The GPU projection has its own options: --project h100[,a100,h200] (a PROJECTION of the grid from "
               "kernels counted on the CPU), --check-kernels, --update-kernels (benchmarks/kernels.json), --densenet; "
               "`python -m augbench.bench --project h100 --help` lists them.")
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


def main(argv=None) -> dict | int:
    """The benchmark (returns its result dict); with --project, --check-kernels, --update-kernels or
    --densenet the projection's command instead (returns its exit code)."""
    from augbench.bench import projcli

    if projcli.wanted(sys.argv[1:] if argv is None else argv):
        return projcli.main(argv)
    if "--overhead" in (sys.argv[1:] if argv is None else argv):
        from augbench.bench import overhead

        return overhead.main(argv)
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
            # the Trainer as training sets it up: trainer.steps_per_batch of conf/trainer
            "trainer_ratio": trainer_vs_plain["trainer_grouped_over_plain"],
            "trainer_ratio_one_batch": trainer_vs_plain["trainer_over_plain"],
            "trainer_ratio_met": trainer_vs_plain["trainer_grouped_over_plain"] <= TRAINER_TARGET,
            "no_sync_every_step": syncs["no_sync_every_step"],
        },
    }


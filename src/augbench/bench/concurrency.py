"""Section 6: grid throughput with K runs per device (K processes training at once)."""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import statistics
import time

import torch

from augbench.bench.common import (CIFAR, EPOCH_IMAGES, GRID_RUNS, RUN_EPOCHS, _error, _log, _reset_peak,
                                   _sync)
from augbench.bench.pipelines import augbench_step
from augbench.callbacks import CropFlip


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



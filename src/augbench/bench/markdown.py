"""The benchmark's report: ``bench_<device>.md`` from the result dict."""

from __future__ import annotations

from augbench.bench.common import AUG_TARGET, EPOCH_IMAGES, GRID_RUNS, RUN_EPOCHS, SYNC_METHODS, TRAINER_TARGET, _f, _x
from augbench.models import MODELS


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
    lines += [f"augbench's step of section 1 (resident uint8 data, batched baseline+, `Classifier.training_loss`, "
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
        "on the device, `Classifier.training_loss`, SGD (momentum 0.9, nesterov, wd 5e-4) as `make_sgd` builds it "
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
              + f"; every loop at lr 0 from the same initial weights (trained weights change the compute itself); "
              f"median of {t['epochs']} interleaved epochs. Target: Trainer/plain ≤ {TRAINER_TARGET}.", "",
              "| loop | s/epoch | img/s | ratio to plain |", "|---|---:|---:|---:|"]
    for k, label in (("plain", "plain loop: net, cross-entropy, SGD"),
                     ("module", "plain loop calling `Classifier.training_loss`"),
                     ("trainer_automatic", "`lightning.Trainer.fit`, Lightning's automatic optimisation (before)"),
                     ("trainer", "`lightning.Trainer.fit`, the step taken in `training_step`, one batch a step"),
                     ("trainer_grouped", f"`lightning.Trainer.fit`, the same, trainer.steps_per_batch="
                                         f"{t.get('steps_per_batch')} (the default)")):
        if f"{k}_s_per_epoch" not in t:  # results written before that loop was measured
            continue
        lines.append(f"| {label} | {t[f'{k}_s_per_epoch']:.2f} | {_f(t[f'{k}_images_per_s'])} | "
                     f"{t[f'{k}_s_per_epoch'] / t['plain_s_per_epoch']:.3f} |")

    h = r["host_syncs"]
    lines += ["", "## 4. Host syncs per training step", "",
              f"Counted, not assumed: `torch.Tensor.{{{', '.join(SYNC_METHODS)}}}` are patched with counters "
              f"(and, on CUDA, `torch.cuda.set_sync_debug_mode` reports synchronising calls) during {h['steps']} "
              "steps of augbench's step loop per regime, and for a Trainer epoch as the difference between "
              f"a {2 * h['steps']}-step and a {h['steps']}-step epoch. A site that fires on every step is a per-step "
              "sync; others are periodic (the NaN check reads the summed training loss every 50 steps by design).", "",
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
              f"({tg['trainer_ratio']:.3f} with trainer.steps_per_batch={t.get('steps_per_batch', 1)}"
              + (f", {tg['trainer_ratio_one_batch']:.3f} one batch a step)" if "trainer_ratio_one_batch" in tg else ")"),
              f"- no host sync on every step: {'met' if tg['no_sync_every_step'] else 'MISSED'}", ""]
    return "\n".join(lines)



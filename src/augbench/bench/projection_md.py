"""``projection_<gpu>.md``: the projection's tables, every figure labelled a projection or a CPU measurement."""

from __future__ import annotations

import json
from pathlib import Path

from augbench.bench.common import _f
from augbench.bench.projection import ASSUMPTIONS, BATCH, GRID, PHASES, RUN_EPOCHS, STEPS_PER_EPOCH


def gpu_measurement(out: Path, profile: dict, result: dict) -> dict:
    """The projection against a GPU run of the benchmark (``make gpu-check`` writes bench_cuda.json into
    benchmarks/): its measured img/s of augbench's step (baseline+) per backbone, when there is one."""
    path = out / "bench_cuda.json"
    if not path.is_file():
        return {"status": "none", "text": f"No GPU measurement exists to check against ({path} is absent: run "
                "`make gpu-check` on a GPU machine, then this command again)."}
    bench = json.loads(path.read_text())
    name = bench.get("meta", {}).get("device_name", "?")
    key = profile["key"].upper()
    if key not in name.upper():
        return {"status": "other_gpu", "text": f"{path.name} was measured on {name}, not on the projected "
                f"{profile['name']}: project `--project` for that GPU to compare."}
    rows = []
    for p in bench.get("pipelines", []):
        proj = result["projection"]["steps"].get(p["model"], {}).get("baseline_plus")
        if proj:
            measured = p["augbench"]["images_per_s"]
            projected = BATCH / proj["eager_s"]
            # the kernels of the code that was measured; older measurements lack them: this run's count
            kernels = p["augbench"].get("gpu_kernels_per_step")
            row = {"model": p["model"], "measured_images_per_s": measured, "projected_images_per_s": projected,
                   "gap": projected / measured - 1, "kernels": kernels or proj["kernels"],
                   "kernels_of": "the measured code" if kernels else "this code (the measurement did not count them)"}
            if proj.get("eager_here_s"):  # the projection with this CPU's own host time per kernel
                row["projected_here_images_per_s"] = BATCH / proj["eager_here_s"]
                row["gap_here"] = row["projected_here_images_per_s"] / measured - 1
            # were the measured step all host time: what one kernel cost that GPU machine's host
            row["implied_host_us_per_kernel"] = BATCH / measured / row["kernels"] * 1e6
            rows.append(row)
    return {"status": "compared", "device_name": name, "rows": rows,
            "text": f"Projection (eager, baseline+) against {path.name}, measured on {name} (its section 1: "
                    "augbench's step, median of its windows). 'host as measured here' projects with this CPU's "
                    "host time per kernel; 'implied µs/kernel' is the measured step over its counted kernels, "
                    "the launch cost that would explain it were the step all host time:"}


def gap_row(row: dict) -> str:
    """One backbone's line of the table against a GPU measurement (– where this CPU's figure is absent)."""
    here = (f"{_f(row['projected_here_images_per_s'])} | {row['gap_here']:+.0%}" if "gap_here" in row else "– | –")
    return (f"| {row['model']} | {_f(row['measured_images_per_s'])} | {_f(row['projected_images_per_s'])} | "
            f"{row['gap']:+.0%} | {here} | {row['kernels']} | {row['implied_host_us_per_kernel']:.1f} |")


def _ms(s: float) -> str:
    return f"{s * 1e3:.2f}"


def _hours_table(g: dict, models: list[str]) -> list[str]:
    cols = [("eager", "eager"), ("eager_host_measured_here", "eager, host as measured here"),
            ("graphs", "whole-step CUDA graphs"), ("k2_eager", "K=2 runs per GPU (eager)"),
            ("k4_eager", "K=4 runs per GPU (eager)"), ("peak_floor", "floor: peak FLOP/s and bandwidth")]
    lines = ["| backbone | " + " | ".join(label for _, label in cols) + " |", "|---" + "|---:" * len(cols) + "|"]
    for m in models:
        lines.append(f"| {m} | " + " | ".join(f"{g[k]['per_backbone'].get(m, 0):.2f}" for k, _ in cols) + " |")
    lines.append("| **grid** | " + " | ".join(f"**{g[k]['total']:.2f}**" for k, _ in cols) + " |")
    return lines


def render(r: dict) -> str:
    p, a, fw, s = r["profile"], r["assumptions"], r["framework"], r["settings"]
    measured, proj = r["measured"], r["projection"]
    models = list(measured)
    lines = [f"# PROJECTION (not a measurement): augbench's grid on one {p['name']}", "",
             f"{r['meta']['date']} · torch {r['meta']['torch']} · counted and timed on {r['meta']['cpu']}", "",
             f"Command: `{r['meta']['command']}`", "",
             "Every GPU figure below is a **projection** from counts made on the CPU; no GPU ran. Kernels, FLOPs "
             "and bytes per step are counted with a dispatch mode (`augbench.bench.kernels`) on augbench's "
             f"step with the GPU's settings ({s['precision']} autocast on the CPU, channels_last, fused SGD, "
             f"batch {BATCH}, the callbacks of `conf/aug`); the host time 'measured here' is a CPU measurement. "
             "The model: step = max(host, device); eager host = kernels × launch + framework; graph host = one "
             "graph launch + framework; device = FLOPs/(peak·flop_eff) + bytes/(bandwidth·bw_eff) + kernels × "
             f"floor; K runs per GPU: each run's step = max(host, K·device). Epoch = {STEPS_PER_EPOCH} steps, run "
             f"= {RUN_EPOCHS} epochs, grid = {GRID['datasets']} datasets × {len(models)} backbones × "
             f"{len(GRID['regimes'])} regimes ({', '.join(GRID['regimes'])}) × {GRID['seeds']} seeds; training "
             "steps only (no validation, test, checkpoints or process start-up).", "",
             "## Assumptions (knobs)", "", "| knob | value | what, and the source of the default |", "|---|---:|---|",
             f"| GPU profile `{p['key']}` | {p['peak_tflops']} TFLOP/s bf16, {p['hbm_tbps']} TB/s | {p['source']} |"]
    lines += [f"| `--{k.replace('_', '-')}` | {a[k]} | {why} |" for k, (_, why) in ASSUMPTIONS.items()]
    paired = (f"from `{fw['paired_source']}` (`--overhead`: the median of {fw['paired_reps']} paired repetitions' "
              f"Trainer − plain loop, LeNet, batch {fw['paired_batch']}, one thread: {fw['paired_us']:+.0f} µs); this "
              "run's own epochs below, too noisy for an effect this small, gave "
              f"{1e3 * (fw['trainer_ms_per_step'] - fw['loop_ms_per_step']):+.0f} µs. "
              if "paired_source" in fw else "")
    lines += [f"| framework overhead per step | {fw['framework_us']:.0f} µs | "
              + ("given with --framework-us" if fw.get("given") else
                 paired + f"measured here: Lightning Trainer ({fw['trainer_ms_per_step']:.2f} ms/step) minus augbench's own "
                 f"step loop ({fw['loop_ms_per_step']:.2f} ms/step), LeNet, CropFlip, bf16-mixed, "
                 f"trainer.steps_per_batch={fw.get('steps_per_batch', 1)}, one CPU thread, no "
                 f"progress bar or logger; per step = (epoch of {2 * fw['batches']} − epoch of {fw['batches']} "
                 f"steps) / {fw['batches']}, medians of {fw['epochs']} interleaved epochs (a shared machine: noisy)")
              + " |",
              f"| framework kernels per step | {fw['framework_kernels']} | counted here: a Trainer epoch of n "
              f"and of 2n steps under the dispatch mode ({fw['trainer_kernels_per_step']:.1f} per step) minus "
              f"augbench's own step ({fw['own_kernels_per_step']}) |", ""]

    lines += ["## Per backbone and regime", "",
              "kernels: per training step (forward, backward, optimiser, data, augmentation, loss; + framework "
              "kernels in the projection). Host here (a CPU measurement): this CPU's host time per kernel, "
              "measured as LeNet's step at batch 2 (negligible compute, one thread, median of interleaved steps) "
              "over its kernels in the same regime, times the cell's kernels; for the grid's regimes (– elsewhere: "
              "counted, not timed). Projected (eager, graphs) step in ms, images/s, epoch s, run h.", "",
              "| backbone | regime | kernels | GFLOP | GB moved | host ms here | host µs/kernel here | projected "
              "host ms | projected device ms | **projected eager ms** | bound | projected graphs ms | eager img/s | "
              "eager s/epoch | eager h/run |", "|---|---|" + "---:|" * 13]
    for m, cells in measured.items():
        for reg, c in cells.items():
            q = proj["steps"][m][reg]
            host_here = c.get("host_s")
            lines.append(
                f"| {m} | {reg} | {c['kernels']} | {c['flops'] / 1e9:.1f} | {c['bytes'] / 1e9:.2f} | "
                + (f"{_ms(host_here)} | {c['host_per_kernel_s'] * 1e6:.1f} | " if host_here is not None else "– | – | ")
                + f"{_ms(q['host_s'])} | {_ms(q['device_s'])} | **{_ms(q['eager_s'])}** | {q['bound']} | "
                f"{_ms(q['graphs_s'])} | {_f(BATCH / q['eager_s'])} | {q['eager_s'] * STEPS_PER_EPOCH:.1f} | "
                f"{q['eager_s'] * STEPS_PER_EPOCH * RUN_EPOCHS / 3600:.2f} |")

    lines += ["", "## Kernels per step by phase (counted)", "",
              "| backbone | regime | " + " | ".join(PHASES) + " | total |", "|---|---|" + "---:|" * (len(PHASES) + 1)]
    for m, cells in measured.items():
        for reg, c in cells.items():
            lines.append(f"| {m} | {reg} | " + " | ".join(str(c["phases"].get(ph, {}).get("kernels", 0))
                                                           for ph in PHASES) + f" | {c['kernels']} |")

    lines += ["", f"## Projected grid hours on one {p['name']} (PROJECTION)", ""] + _hours_table(proj["grid_hours"], models)
    if len(models) < 4:
        lines += ["", f"Partial: only {', '.join(models)} counted; the grid figure covers those backbones only."]
    if r.get("densenet"):
        lines += ["", *r["densenet"]]
    g = r["gpu_check"]
    lines += ["", "## Projection against a GPU measurement", "", g["text"]]
    if g["status"] == "compared":
        lines += ["", "| backbone | measured img/s | projected img/s | gap | projected, host as measured here | gap "
                  "| kernels | implied µs/kernel |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [gap_row(row) for row in g["rows"]]
        lines += ["", f"Kernels per step: those of {' and '.join(sorted({r['kernels_of'] for r in g['rows']}))}."]
    if r.get("tracking"):
        notes = r["tracking"]
        shown = notes if len(notes) <= 13 else [*notes[:12], f"… {len(notes) - 13} more cells (all in the log)", notes[-1]]
        lines += ["", "## Tracked kernel counts against benchmarks/kernels.json before this run", "",
                  *[f"- {t}" for t in shown]]
    return "\n".join(lines) + "\n"

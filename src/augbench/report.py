"""Summarise a sweep: Table 1 (md/csv/tex), learning curves, the CutMix-probability
sweep, and a report.md listing the gaps and the findings computed from the numbers.

    python -m augbench.report multirun/ [--ci t|normal] [--out DIR]

Runs are found by globbing ``**/metrics.json``, so the folder nesting does not matter.
Every output is written to a temporary file in the output folder and moved into place
with ``os.replace``, so a reader never sees a half-written file.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import csv
import io
import json
import math
import re
import sys
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

from augbench.runs import atomic_write, describe_status

DATASETS = ("cifar10", "cifar100")
MODELS = ("resnet18", "lenet", "densenet", "vgg")
AUGS = ("baseline", "baseline_plus", "cutout", "mixup", "cutmix")
SWEEP = "cutmix_prob_sweep"
METRIC_NAMES = {"test_acc1": "test", "val_acc1": "validation"}

# The study's Table 1 (REFERENCE.md): final test accuracy in %, (mean, the study's "95%"
# figure, which is 1.96 * sample std), columns in AUGS order.
_STUDY_ROWS = {
    ("cifar10", "resnet18"): [(88.97, 0.73), (94.99, 0.24), (95.90, 0.28), (95.77, 0.46), (96.20, 0.48)],
    ("cifar10", "lenet"): [(63.63, 3.15), (75.15, 1.45), (71.60, 1.28), (74.95, 0.48), (70.01, 0.47)],
    ("cifar10", "densenet"): [(91.23, 0.28), (94.48, 0.22), (95.21, 0.30), (95.07, 0.19), (95.79, 0.23)],
    ("cifar10", "vgg"): [(87.64, 0.30), (92.26, 0.51), (92.87, 0.31), (92.43, 0.45), (93.26, 0.43)],
    ("cifar100", "resnet18"): [(63.26, 0.78), (77.50, 0.88), (77.63, 0.81), (79.03, 0.41), (79.77, 0.58)],
    ("cifar100", "lenet"): [(24.33, 1.30), (41.32, 0.81), (37.30, 1.18), (40.68, 0.95), (35.55, 0.19)],
    ("cifar100", "densenet"): [(70.13, 0.53), (75.94, 0.98), (76.88, 0.51), (77.23, 0.58), (77.79, 0.38)],
    ("cifar100", "vgg"): [(61.30, 0.71), (71.12, 0.66), (69.93, 0.16), (71.99, 0.38), (73.78, 0.86)],
}
STUDY = {(d, m, a): v for (d, m), row in _STUDY_ROWS.items() for a, v in zip(AUGS, row)}

# The two interval forms; the study's one is not a CI of the mean, so say so wherever shown.
CI_LABELS = {
    "t": "95% CI of the mean, t(0.975, n−1)·s/√n",
    "normal": "1.96·s, the study's '95% CI' convention (s = sample std; not a CI of the mean)",
}
_CI_TEX = {
    "t": r"95\% CI of the mean, $t_{0.975,\,n-1}\,s/\sqrt{n}$",
    "normal": r"$1.96\,s$, the study's `95\% CI' convention ($s$ = sample std; not a CI of the mean)",
}


class NoRunsError(RuntimeError):
    """The folder holds no metrics.json at all."""


# ----------------------------------------------------------------------------- statistics


@lru_cache(maxsize=None)
def t_value(n: int) -> float:
    """Two-sided 95% Student-t quantile for n samples, t(0.975, n-1)."""
    return float(stats.t.ppf(0.975, n - 1))


def _check_ci(ci: str) -> None:
    if ci not in CI_LABELS:
        raise ValueError(f"ci must be one of {sorted(CI_LABELS)}, got {ci!r}")


def mean_ci(values, ci: str = "t") -> tuple[float, float, int]:
    """(mean, half-width, n). Half-width is NaN for n < 2, mean is NaN for n = 0.

    ci="t": t(0.975, n-1)·s/√n; ci="normal": the study's 1.96·s (s with ddof=1)."""
    _check_ci(ci)
    x = np.asarray(list(values), dtype=float)
    n = int(x.size)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(x.mean())
    if n == 1:
        return mean, math.nan, 1
    s = float(x.std(ddof=1))
    return mean, (t_value(n) * s / math.sqrt(n) if ci == "t" else 1.96 * s), n


# ----------------------------------------------------------------------------- collecting


def _num(v):
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _from_path(run_dir: Path, key: str):
    """Value of a Hydra-style `key=value` folder name, e.g. seed=3."""
    for part in reversed(run_dir.parts):
        if part.startswith(key + "="):
            return part[len(key) + 1:]
    return None


def _name(m: dict, cfg: dict, key: str) -> str:
    v = m.get(key)
    if v is None:  # older writers may only have the Hydra config group
        c = cfg.get(key)
        v = c.get("name") if isinstance(c, dict) else c
    return "?" if v is None else str(v)


def _seed(v):
    with contextlib.suppress(TypeError, ValueError):
        return int(v)
    return v


def collect_runs(folder) -> list[dict]:
    """One dict per `**/metrics.json` under folder, sorted by path.

    Keys: dir, rel, status, experiment, data, model, aug, seed, prob, test_acc1
    (fraction), error, history, sweep (belongs to the cutmix-probability sweep), mtime."""
    folder = Path(folder)
    runs = []
    for mpath in sorted(folder.glob("**/metrics.json")):
        run_dir = mpath.parent
        try:
            m = json.loads(mpath.read_text())
            if not isinstance(m, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:
            m = {"status": "unreadable", "error": f"metrics.json: {e}"}
        cfg = m.get("config") if isinstance(m.get("config"), dict) else {}
        aug_cfg = cfg.get("aug") if isinstance(cfg.get("aug"), dict) else {}
        prob = aug_cfg.get("prob", m.get("prob", _from_path(run_dir, "prob")))
        seed = m.get("seed", cfg.get("seed", _from_path(run_dir, "seed")))
        runs.append({
            "dir": run_dir,
            "rel": run_dir.relative_to(folder).as_posix(),
            "status": m.get("status"),
            "experiment": m.get("experiment"),
            "data": _name(m, cfg, "data"),
            "model": _name(m, cfg, "model"),
            "aug": _name(m, cfg, "aug"),
            "seed": None if seed is None else _seed(seed),
            "prob": _num(prob),
            "test_acc1": _num(m.get("test_acc1")),
            "error": m.get("error"),
            "slurm_state": m.get("slurm_state"),
            "history": m.get("history") if isinstance(m.get("history"), dict) else None,
            # whole folder names only: a substring test would catch e.g. pytest's test_cutmix_prob_sweep0
            "sweep": m.get("experiment") == SWEEP or SWEEP in run_dir.resolve().parts,
            "mtime": mpath.stat().st_mtime,
        })
    return runs


def _completed(r: dict) -> bool:
    return r["status"] == "completed" and r["test_acc1"] is not None


def _dedupe(runs: list[dict]) -> tuple[list[dict], list[dict]]:
    """Keep one run per (experiment, cell, seed, prob), the newest: a seed counted twice
    would shrink the interval for nothing. Returns (kept, dropped)."""
    best: dict = {}
    for r in runs:
        seed = r["seed"] if r["seed"] is not None else r["rel"]  # unknown seed: never merge
        key = (r["experiment"], r["data"], r["model"], r["aug"], seed, r["prob"] if r["sweep"] else None)
        if key not in best or r["mtime"] > best[key]["mtime"]:
            best[key] = r
    keep = {id(r) for r in best.values()}
    return [r for r in runs if id(r) in keep], [r for r in runs if id(r) not in keep]


def _rank(name: str, known) -> tuple:
    """Known names in study order, unknown ones after them, sorted."""
    return (0, known.index(name), "") if name in known else (1, 0, name)


def _seed_key(s) -> tuple:
    return (0, s, "") if isinstance(s, int) else (1, 0, str(s))


def summarise(runs: list[dict], ci: str = "t") -> dict:
    """Table 1 from the completed non-sweep runs.

    Returns {"ci", "ci_label", "rows": [(data, model)], "augs": [...],
    "cells": {(data, model, aug): cell}, "duplicates": [run]}; a cell has data, model,
    aug, n, seeds, mean and ci (in %, None when n = 0 / n < 2), study_mean, study_ci,
    delta (ours − study, points) and best (highest mean in the row; ties all marked)."""
    _check_ci(ci)
    grid = [r for r in runs if not r["sweep"]]
    done, dupes = _dedupe([r for r in grid if _completed(r)])
    rows = sorted({(r["data"], r["model"]) for r in grid},
                  key=lambda dm: (_rank(dm[0], DATASETS), _rank(dm[1], MODELS)))
    augs = list(AUGS) + sorted({r["aug"] for r in grid} - set(AUGS))
    by_cell = defaultdict(list)
    for r in done:
        by_cell[r["data"], r["model"], r["aug"]].append(r)
    cells = {}
    for d, m in rows:
        for a in augs:
            rs = by_cell.get((d, m, a), [])
            mean, hw, n = mean_ci([100.0 * r["test_acc1"] for r in rs], ci)
            study_mean, study_ci = STUDY.get((d, m, a), (None, None))
            cells[d, m, a] = {
                "data": d, "model": m, "aug": a, "n": n,
                "seeds": sorted((r["seed"] for r in rs), key=_seed_key),
                "mean": mean if n else None, "ci": hw if n > 1 else None,
                "study_mean": study_mean, "study_ci": study_ci,
                "delta": mean - study_mean if n and study_mean is not None else None,
                "best": False,
            }
        row = [cells[d, m, a] for a in augs if cells[d, m, a]["n"]]
        if row:
            top = max(c["mean"] for c in row)
            for c in row:
                c["best"] = c["mean"] == top
    return {"ci": ci, "ci_label": CI_LABELS[ci], "rows": rows, "augs": augs,
            "cells": cells, "duplicates": dupes}


def summarise_prob_sweep(runs: list[dict], ci: str = "t") -> list[dict]:
    """Final test accuracy (%) per (data, model, cutmix prob) of the completed sweep runs."""
    _check_ci(ci)
    done, _ = _dedupe([r for r in runs if r["sweep"] and r["aug"] == "cutmix"
                       and _completed(r) and r["prob"] is not None])
    groups = defaultdict(list)
    for r in done:
        groups[r["data"], r["model"], r["prob"]].append(100.0 * r["test_acc1"])
    out = []
    for (d, m, p) in sorted(groups, key=lambda k: (_rank(k[0], DATASETS), _rank(k[1], MODELS), k[2])):
        mean, hw, n = mean_ci(groups[d, m, p], ci)
        out.append({"data": d, "model": m, "prob": p, "mean": mean, "ci": hw if n > 1 else None, "n": n})
    return out


# ----------------------------------------------------------------------------- curves


def _pairs(epochs, values) -> tuple[np.ndarray, np.ndarray] | None:
    """(epochs, accuracy %) from history lists; entries that are None/NaN are skipped.
    Lists of unequal length are paired from the start (a partial history)."""
    if not isinstance(values, list):
        return None
    if not isinstance(epochs, list):
        epochs = list(range(len(values)))
    pts = [(e, 100.0 * _num(v)) for e, v in zip(epochs, values) if _num(v) is not None and _num(e) is not None]
    if not pts:
        return None
    return np.array([p[0] for p in pts], dtype=float), np.array([p[1] for p in pts])


def _tb_curves(run_dir: Path) -> dict:
    """Curves from TensorBoard events under <run>/tb/; Lightning's `epoch` scalar, logged
    at the same global step, maps steps to epochs."""
    dirs = sorted({p.parent for p in (Path(run_dir) / "tb").glob("**/events.out.tfevents.*")})
    if not dirs:
        return {}
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    scalars: dict = defaultdict(dict)  # tag -> step -> value; later files win (resumed runs)
    for d in dirs:
        acc = EventAccumulator(str(d), size_guidance={SCALARS: 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            for ev in acc.Scalars(tag):
                scalars[tag][ev.step] = ev.value
    ep_steps = sorted(scalars.get("epoch", {}))
    out = {}
    for tag, key in (("test/acc1", "test_acc1"), ("val/acc1", "val_acc1")):
        per_epoch = {}
        for i, (step, v) in enumerate(sorted(scalars.get(tag, {}).items())):
            j = bisect.bisect_right(ep_steps, step) - 1  # last epoch value logged at or before step
            e = scalars["epoch"][ep_steps[j]] if j >= 0 else i
            per_epoch[int(round(e))] = v
        if per_epoch:
            ep = sorted(per_epoch)
            out[key] = (np.array(ep, dtype=float), 100.0 * np.array([per_epoch[e] for e in ep]))
    return out


def run_curves(run: dict) -> dict:
    """{"test_acc1"|"val_acc1": (epochs, accuracy %)} from the history in metrics.json,
    or from the run's TensorBoard events when the history has neither."""
    h = run.get("history") or {}
    out = {k: c for k in METRIC_NAMES if (c := _pairs(h.get("epoch"), h.get(k))) is not None}
    return out or _tb_curves(run["dir"])


def aggregate_curves(curves: list, ci: str = "t") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-epoch (epochs, mean, half-width, n) over runs; runs may cover different epochs."""
    per = defaultdict(list)
    for ep, ys in curves:
        for e, y in zip(ep, ys):
            per[float(e)].append(float(y))
    epochs = sorted(per)
    res = [mean_ci(per[e], ci) for e in epochs]
    return (np.array(epochs), np.array([r[0] for r in res]),
            np.array([r[1] for r in res]), np.array([r[2] for r in res]))


def _row_curves(runs: list[dict]) -> tuple[str | None, dict]:
    """Per-aug aggregates for one table row, using one metric for the whole plot so that test
    and validation curves are never mixed: the one most runs have (test on a tie)."""
    curves = {id(r): run_curves(r) for r in runs}
    counts = Counter(k for c in curves.values() for k in c)
    if not counts:
        return None, {}
    metric = max(METRIC_NAMES, key=lambda k: counts[k])
    series = {}
    for aug in list(AUGS) + sorted({r["aug"] for r in runs} - set(AUGS)):
        cs = [curves[id(r)][metric] for r in runs if r["aug"] == aug and metric in curves[id(r)]]
        if cs:
            series[aug] = (*aggregate_curves(cs, "t")[:3], len(cs))
    return metric, series


# ----------------------------------------------------------------------------- rendering


def _save_fig(fig: Figure, path: Path) -> None:
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110, bbox_inches="tight"))


def _new_fig(w: float, h: float):
    # A bare Figure on an Agg canvas: no pyplot, so no global backend switch for callers.
    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _fmt(x, spec=".2f") -> str:
    return "—" if x is None else format(x, spec)


def _cell_text(c: dict, pm: str = "±") -> str:
    if not c["n"]:
        return "—"
    if c["ci"] is None:
        return f"{c['mean']:.2f} (n={c['n']})"
    return f"{c['mean']:.2f} {pm} {c['ci']:.2f} (n={c['n']})"


def table_md(s: dict) -> str:
    augs, cells = s["augs"], s["cells"]
    lines = [
        f"**Table 1.** Final-epoch test accuracy (%) over completed seeds: mean ± {s['ci_label']}. "
        "**Bold**: best mean in the row. —: no completed run. "
        "Δ = ours − study (the study's Table 1), in accuracy points.",
        "",
        "| data | model | " + " | ".join(augs) + " | " + " | ".join(f"Δ {a}" for a in AUGS) + " |",
        "|---|---|" + "---|" * (len(augs) + len(AUGS)),
    ]
    for d, m in s["rows"]:
        vals = []
        for a in augs:
            c = cells[d, m, a]
            vals.append(f"**{_cell_text(c)}**" if c["best"] else _cell_text(c))
        vals += [_fmt(cells[d, m, a]["delta"], "+.2f") for a in AUGS]
        lines.append(f"| {d} | {m} | " + " | ".join(vals) + " |")
    if not s["rows"]:
        lines.append("\n_No grid runs (outside the cutmix probability sweep) were found._")
    return "\n".join(lines) + "\n"


def table_csv(s: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["data", "model", "aug", "mean", "ci", "ci_method", "n", "seeds",
                "study_mean", "study_ci", "delta", "best"])
    method = {"t": "t95", "normal": "1.96s"}[s["ci"]]
    r4 = lambda x: "" if x is None else round(x, 4)  # noqa: E731
    for d, m in s["rows"]:
        for a in s["augs"]:
            c = s["cells"][d, m, a]
            w.writerow([d, m, a, r4(c["mean"]), r4(c["ci"]), method, c["n"],
                        ";".join(map(str, c["seeds"])), r4(c["study_mean"]), r4(c["study_ci"]),
                        r4(c["delta"]), int(c["best"])])
    return buf.getvalue()


def _tex(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        s = s.replace(a, b)
    return s


def table_tex(s: dict) -> str:
    augs, cells = s["augs"], s["cells"]
    head = ["data", "model", *map(_tex, augs), *(rf"$\Delta$ {_tex(a)}" for a in AUGS)]
    lines = [
        r"\begin{table}[t]", r"\centering",
        rf"\caption{{Final-epoch test accuracy (\%) over completed seeds: mean $\pm$ {_CI_TEX[s['ci']]}. "
        r"Bold: best mean in the row; --: no completed run; $\Delta$ = ours $-$ study, in points.}",
        r"\label{tab:augbench-table1}",
        r"\begin{tabular}{ll|" + "c" * len(augs) + "|" + "c" * len(AUGS) + "}",
        r"\hline", " & ".join(head) + r" \\", r"\hline",
    ]
    for d, m in s["rows"]:
        vals = []
        for a in augs:
            c = cells[d, m, a]
            t = "--" if not c["n"] else _cell_text(c, pm=r"$\pm$")
            vals.append(rf"\textbf{{{t}}}" if c["best"] else t)
        vals += ["--" if cells[d, m, a]["delta"] is None else f"{cells[d, m, a]['delta']:+.2f}" for a in AUGS]
        lines.append(" & ".join([_tex(d), _tex(m), *vals]) + r" \\")
    lines += [r"\hline", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _plot_curves(path: Path, data: str, model: str, metric: str, series: dict) -> None:
    fig, ax = _new_fig(7, 4.5)
    for aug, (ep, mu, hw, n) in series.items():
        color = f"C{AUGS.index(aug)}" if aug in AUGS else None  # same colour per regime everywhere
        (line,) = ax.plot(ep, mu, label=f"{aug} (n={n})", color=color, lw=1.2)
        ok = np.isfinite(hw)
        ax.fill_between(ep, mu - np.where(ok, hw, 0), mu + np.where(ok, hw, 0), where=ok,
                        color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{METRIC_NAMES[metric]} top-1 accuracy (%)")
    ax.set_title(f"{data} / {model}: mean over seeds, shaded 95% t-CI")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save_fig(fig, path)


def _plot_prob(path: Path, sweep: list[dict], ci: str) -> None:
    fig, ax = _new_fig(6, 4)
    groups = defaultdict(list)
    for p in sweep:
        groups[p["data"], p["model"]].append(p)
    for (d, m), ps in groups.items():
        ax.errorbar([p["prob"] for p in ps], [p["mean"] for p in ps],
                    yerr=[p["ci"] or 0.0 for p in ps], marker="o", capsize=3, label=f"{d} / {m}")
    ax.set_xlabel("cutmix probability (config.aug.prob)")
    ax.set_ylabel("final test top-1 accuracy (%)")
    ax.set_title(f"CutMix probability sweep: mean ± {'95% t-CI' if ci == 't' else '1.96·s'} over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save_fig(fig, path)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


# ----------------------------------------------------------------------------- report text


def findings(s: dict) -> str:
    """One paragraph computed from the summary: winners and margins, win counts, mean gain
    over baseline_plus, agreement with the study."""
    cells, rows = s["cells"], s["rows"]
    per_row, wins, gains = [], Counter(), defaultdict(list)
    agree = compared = 0
    for d, m in rows:
        row = [cells[d, m, a] for a in s["augs"] if cells[d, m, a]["n"]]
        bp = cells[d, m, "baseline_plus"]
        if bp["n"]:
            for c in row:
                if c["aug"] != "baseline_plus":
                    gains[c["aug"]].append(c["mean"] - bp["mean"])
        if len(row) < 2:
            continue
        w, r2 = sorted(row, key=lambda c: -c["mean"])[:2]  # stable: regime order breaks ties
        wins[w["aug"]] += 1
        t = f"on {d}/{m} {w['aug']} wins with {w['mean']:.2f}%"
        if bp["n"] and "baseline_plus" not in (w["aug"], r2["aug"]):
            t += f", {w['mean'] - bp['mean']:+.2f} over baseline_plus"
        t += f" and {w['mean'] - r2['mean']:+.2f} over the runner-up {r2['aug']}"
        if w["ci"] is not None and r2["ci"] is not None and w["mean"] - w["ci"] <= r2["mean"] + r2["ci"]:
            t += " (their intervals overlap)"
        per_row.append(t)
        if (d, m) in _STUDY_ROWS and all(cells[d, m, a]["n"] for a in AUGS):
            compared += 1
            agree += w["aug"] == max(AUGS, key=lambda a: STUDY[d, m, a][0])
    if not per_row and not any(c["n"] for c in cells.values()):
        return "No completed grid runs yet, so there are no findings.\n"
    out = []
    if per_row:
        out.append("Per row, " + "; ".join(per_row) + ".")
        out.append(f"Across the {sum(wins.values())} rows with at least two regimes, wins: "
                   + ", ".join(f"{a} {k}" for a, k in wins.most_common()) + ".")
    else:
        out.append("No row has two regimes finished yet, so there are no winners.")
    if gains:
        out.append("Mean gain over baseline_plus (points, over rows where both finished): "
                   + ", ".join(f"{a} {np.mean(g):+.2f} ({len(g)} rows)"
                               for a, g in sorted(gains.items(), key=lambda kv: _rank(kv[0], AUGS))) + ".")
    deltas = [c for c in cells.values() if c["delta"] is not None]
    if deltas:
        worst = max(deltas, key=lambda c: abs(c["delta"]))
        out.append(f"Against the study's Table 1 the mean |Δ| is {np.mean([abs(c['delta']) for c in deltas]):.2f} "
                   f"points over {len(deltas)} cells (mean signed Δ {np.mean([c['delta'] for c in deltas]):+.2f}; "
                   f"largest {worst['data']}/{worst['model']}/{worst['aug']} {worst['delta']:+.2f})"
                   + (f", and our winner matches the study's in {agree} of {compared} complete rows." if compared else "."))
    return " ".join(out) + "\n"


def _missing(runs: list[dict], s: dict) -> list[str]:
    lines = []
    grid_done = [c for c in s["cells"].values() if c["n"]]
    max_n = max((c["n"] for c in grid_done), default=0)
    all_seeds = sorted({x for c in grid_done for x in c["seeds"]}, key=_seed_key)
    for (d, m), a in ((r, a) for r in s["rows"] for a in s["augs"]):
        c = s["cells"][d, m, a]
        if c["n"] == 0:
            lines.append(f"- {d}/{m}/{a}: no completed run")
        elif c["n"] < max_n:
            gone = [x for x in all_seeds if x not in c["seeds"]]
            lines.append(f"- {d}/{m}/{a}: {c['n']} of {max_n} seeds"
                         + (f" (missing seeds {', '.join(map(str, gone))})" if gone else ""))
    absent = [f"{d}/{m}" for d, m in _STUDY_ROWS if (d, m) not in s["rows"]]
    if s["rows"] and absent:
        lines.append(f"- study rows with no run at all: {', '.join(absent)}")
    desc = lambda r: f"`{r['rel']}` ({r['data']}/{r['model']}/{r['aug']} seed {r['seed']})"  # noqa: E731
    failed = [r for r in runs if r["status"] == "failed"]
    if failed:
        lines.append(f"\n**Failed runs ({len(failed)}), excluded from the statistics:**\n")
        lines += [f"- {desc(r)}: {describe_status(r)}" for r in failed]
    unfinished = [r for r in runs if r["status"] != "failed" and not _completed(r)]
    if unfinished:
        lines.append(f"\n**Unfinished runs ({len(unfinished)}):**\n")
        lines += [f"- {desc(r)}: " + ("completed, but no test_acc1" if r["status"] == "completed" else
                                       describe_status(r)) for r in unfinished]
    if s["duplicates"]:
        lines.append(f"\n**Duplicate seeds ignored ({len(s['duplicates'])}; the newest run of each was kept):**\n")
        lines += [f"- {desc(r)}" for r in s["duplicates"]]
    return lines or ["Nothing missing: every cell has the same number of seeds and no run failed or is unfinished."]


# ----------------------------------------------------------------------------- entry points


def write_report(folder, out=None, ci: str = "t") -> dict[str, Path]:
    """Write tables, curves, the prob-sweep plot and report.md; returns {file name: path}.
    Raises NoRunsError when there is no metrics.json under folder."""
    _check_ci(ci)
    folder = Path(folder)
    if not folder.is_dir():
        raise NoRunsError(f"{folder} is not a folder")
    runs = collect_runs(folder)
    if not runs:
        raise NoRunsError(f"no runs found: no metrics.json anywhere under {folder}")
    out = Path(out) if out is not None else folder
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    def put(name: str, text: str) -> None:
        atomic_write(out / name, lambda fh: fh.write(text.encode()))
        written[name] = out / name

    s = summarise(runs, ci)
    put("table1.md", table_md(s))
    put("table1.csv", table_csv(s))
    put("table1.tex", table_tex(s))

    done, _ = _dedupe([r for r in runs if not r["sweep"] and _completed(r)])
    curve_md, no_hist = [], []
    for d, m in s["rows"]:
        metric, series = _row_curves([r for r in done if (r["data"], r["model"]) == (d, m)])
        if not series:
            no_hist.append(f"{d}/{m}")
            continue
        name = f"curves_{_safe(d)}_{_safe(m)}.png"
        _plot_curves(out / name, d, m, metric, series)
        written[name] = out / name
        curve_md.append(f"### {d} / {m} ({METRIC_NAMES[metric]} accuracy)\n\n![{d} {m}]({name})\n")

    sweep = summarise_prob_sweep(runs, ci)
    if len({p["prob"] for p in sweep}) > 1:
        _plot_prob(out / "cutmix_prob.png", sweep, ci)
        written["cutmix_prob.png"] = out / "cutmix_prob.png"

    status = Counter("completed" if _completed(r) else r["status"] if r["status"] == "failed" else "unfinished"
                     for r in runs)
    parts = [
        "# augbench report\n",
        f"Runs under `{folder}`: {len(runs)} found, {status['completed']} completed, "
        f"{status['failed']} failed, {status['unfinished']} unfinished.",
        f"Intervals are mean ± {s['ci_label']}.\n",
    ]
    exps = sorted({str(r["experiment"]) for r in runs if not r["sweep"] and _completed(r)})
    if len(exps) > 1:
        parts.append(f"**Warning:** Table 1 pools runs from several experiments ({', '.join(exps)}).\n")
    parts += ["## Table 1\n", table_md(s), "Also as [CSV](table1.csv) and [LaTeX](table1.tex).\n",
              "## Findings\n", findings(s), "## Learning curves\n"]
    parts += curve_md or ["_No per-epoch history in any completed run._\n"]
    if curve_md and no_hist:
        parts.append(f"No per-epoch history for: {', '.join(no_hist)}.\n")
    if "cutmix_prob.png" in written:
        parts += ["## CutMix probability sweep\n", "![cutmix prob sweep](cutmix_prob.png)\n",
                  "| data | model | prob | accuracy (%) |", "|---|---|---|---|"]
        parts += [f"| {p['data']} | {p['model']} | {p['prob']:g} | "
                  + _cell_text(p) + " |" for p in sweep]
        parts.append("")
    parts += ["## Missing\n", *_missing(runs, s), ""]
    put("report.md", "\n".join(parts))
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m augbench.report",
                                description="Summarise an augbench sweep folder into Table 1, curves and report.md.")
    p.add_argument("folder", type=Path, help="folder searched recursively for */metrics.json")
    p.add_argument("--ci", choices=sorted(CI_LABELS), default="t",
                   help="t: 95%% t-interval of the mean (default); normal: the study's 1.96·s")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: FOLDER)")
    a = p.parse_args(argv)
    try:
        written = write_report(a.folder, a.out, a.ci)
    except NoRunsError as e:
        print(f"augbench.report: {e}", file=sys.stderr)
        return 2
    for path in written.values():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

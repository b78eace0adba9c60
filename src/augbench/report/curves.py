"""Learning curves from the runs' history (or TensorBoard events), and the CutMix-probability plot."""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from augbench.report.collect import num, regimes
from augbench.report.figures import BAND_NOTE, EPOCHS, draw_mean, finish, new_fig, palette, save_fig
from augbench.report.stats import band

METRIC_NAMES = {"test_acc1": "test", "val_acc1": "validation"}


def history_pairs(epochs, values, scale: float = 100.0) -> tuple[np.ndarray, np.ndarray] | None:
    """(epochs, scale·value) from history lists; entries that are None/NaN are skipped.
    Lists of unequal length are paired from the start (a partial history)."""
    if not isinstance(values, list):
        return None
    if not isinstance(epochs, list):
        epochs = list(range(len(values)))
    pts = [(num(e), scale * num(v)) for e, v in zip(epochs, values) if num(v) is not None and num(e) is not None]
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
    out = {k: c for k in METRIC_NAMES if (c := history_pairs(h.get("epoch"), h.get(k))) is not None}
    return out or _tb_curves(run["dir"])


def row_curves(runs: list[dict]) -> tuple[str | None, dict]:
    """{aug: [curve per run]} for one table row, using one metric for the whole plot so that test
    and validation curves are never mixed: the one most runs have (test on a tie)."""
    curves = {id(r): run_curves(r) for r in runs}
    counts = Counter(k for c in curves.values() for k in c)
    if not counts:
        return None, {}
    metric = max(METRIC_NAMES, key=lambda k: counts[k])
    series = {}
    for aug in regimes(runs):
        cs = [curves[id(r)][metric] for r in runs if r["aug"] == aug and metric in curves[id(r)]]
        if cs:
            series[aug] = cs
    return metric, series


def plot_curves(path: Path, data: str, model: str, metric: str, series: dict, augs=()):
    """Mean learning curve per regime with its clipped band; returns the figure (for tests)."""
    fig, (ax,) = new_fig(7.5, 4.5)
    colors = palette([*augs, *series])
    for aug, cs in series.items():
        draw_mean(ax, cs, f"{aug} (n={len(cs)})", colors[aug])
    ax.set_xlabel(EPOCHS)
    ax.set_ylabel(f"{METRIC_NAMES[metric]} top-1 accuracy (%)")
    finish(fig, [ax], f"{data} / {model}: {METRIC_NAMES[metric]} accuracy per epoch, mean over seeds\n{BAND_NOTE}")
    save_fig(fig, path)
    return fig


def plot_prob(path: Path, sweep: list[dict], ci: str):
    fig, (ax,) = new_fig(6, 4)
    groups = defaultdict(list)
    for p in sweep:
        groups[p["data"], p["model"]].append(p)
    for (d, m), ps in groups.items():
        mu = np.array([p["mean"] for p in ps])
        lo, hi, _ = band(mu, [np.nan if p["ci"] is None else p["ci"] for p in ps])  # bars stay in [0, 100]
        ax.errorbar([p["prob"] for p in ps], mu, yerr=[mu - lo, hi - mu], marker="o", capsize=3, label=f"{d} / {m}")
    ax.set_xlabel("cutmix probability (config.aug.prob)")
    ax.set_ylabel("final test top-1 accuracy (%)")
    finish(fig, [ax], f"CutMix probability sweep: mean ± {'95% t-CI' if ci == 't' else '1.96·s'} over seeds")
    save_fig(fig, path)
    return fig

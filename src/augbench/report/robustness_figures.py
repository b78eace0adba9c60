"""Robustness figures per (data, model), mean over seeds per regime, drawn only from data the runs
hold: accuracy vs occlusion hole size, vs FGSM ε, vs corruption severity; the in-between-class
rates; reliability curves averaged over seeds. Also the links to each run's own figures."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from augbench.report.collect import num
from augbench.report.figures import BAND_NOTE, draw_mean, finish, new_fig, palette, safe, save_fig

ACC = "top-1 accuracy (%)"


def _x(key):
    """A dict key as a number: "16" → 16, "0.5" → 0.5, "8/255" → 8 (ε in units of 1/255)."""
    return num(str(key).split("/")[0])


def dict_curve(d, field=None, scale: float = 100.0):
    """(xs, scale·ys) from {x: value} or {x: {field: value}}, sorted by x; None when empty."""
    if not isinstance(d, dict):
        return None
    pts = []
    for k, v in d.items():
        y = num(v.get(field) if isinstance(v, dict) else None) if field else num(v)
        if _x(k) is not None and y is not None:
            pts.append((_x(k), scale * y))
    pts.sort()
    return (np.array([p[0] for p in pts]), np.array([p[1] for p in pts])) if pts else None


def fgsm_curve(run):
    c = dict_curve((run["eval"] or {}).get("fgsm"))
    if c is None:
        return None
    return np.r_[0.0, c[0]], np.r_[100.0 * run["test_acc1"], c[1]]  # ε = 0 is the clean accuracy


def severity_curve(run):
    """Mean over corruptions of the accuracy at each severity (over those corruption_mean_acc
    averages, when the run names them)."""
    per = defaultdict(list)
    corr = (run["eval"] or {}).get("corruption") or {}
    over = (run["eval"] or {}).get("corruption_mean_over")
    for name, by_sev in corr.items():
        if isinstance(over, list) and name not in over:
            continue
        for x, y in zip(*(dict_curve(by_sev) or ((), ()))):
            per[x].append(y)
    return (np.array(sorted(per)), np.array([np.mean(per[x]) for x in sorted(per)])) if per else None


def reliability_bins(run):
    """(confidence, accuracy, count) arrays from eval.calibration_bins (or eval.calibration.bins): a
    dict of lists or a list of dicts, fractions; None when the run stored no bins."""
    ev = run["eval"] or {}
    b = ev.get("calibration_bins", (ev.get("calibration") or {}).get("bins"))
    if isinstance(b, list) and all(isinstance(x, dict) for x in b):
        b = {k: [x.get(k) for x in b] for k in ("confidence", "accuracy", "count")}
    if not isinstance(b, dict):
        return None
    pick = lambda *names: next((b[n] for n in names if isinstance(b.get(n), list)), None)  # noqa: E731
    conf, acc = pick("confidence", "conf", "mean_confidence"), pick("accuracy", "acc")
    count = pick("count", "counts") or [1] * len(conf or [])
    if not conf or not acc or len(conf) != len(acc):
        return None
    arr = [np.array([np.nan if num(v) is None else num(v) for v in x], dtype=float) for x in (conf, acc, count)]
    return arr[0], arr[1], np.nan_to_num(arr[2])


def mean_reliability(runs):
    """Per bin, the count-weighted mean confidence and accuracy (%) over runs; empty bins dropped."""
    got = [b for b in map(reliability_bins, runs) if b is not None]
    if not got or len({len(b[0]) for b in got}) != 1:
        return None
    conf, acc, cnt = (np.stack([b[i] for b in got]) for i in range(3))
    w = np.where(np.isfinite(conf) & np.isfinite(acc), cnt, 0.0)
    tot = w.sum(0)
    keep = tot > 0
    return (100 * (np.nan_to_num(conf) * w).sum(0)[keep] / tot[keep],
            100 * (np.nan_to_num(acc) * w).sum(0)[keep] / tot[keep])


def _curves(runs, fn):
    return [c for c in map(fn, runs) if c is not None]


def _panels(path, title, panels, colors, width=4.6):
    """panels: [(subtitle, xlabel, ylabel, [(aug, curves, linestyle, in legend)])]."""
    fig, axes = new_fig(width * len(panels) + 0.6, 4.4, len(panels))
    for ax, (sub, xl, yl, lines) in zip(axes, panels):
        for aug, cs, ls, labelled in lines:
            draw_mean(ax, cs, f"{aug} (n={len(cs)})" if labelled else "_nolegend_", colors[aug], ls, marker="o")
        ax.set_title(sub, fontsize=9)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
    finish(fig, axes, title, legend_below=True)
    save_fig(fig, path)
    return path


def robustness_figures(out: Path, data: str, model: str, groups: dict, augs) -> list[tuple[str, str]]:
    """Draw what the runs hold; groups: {aug: runs that count}. Returns [(caption, file name)]."""
    colors, made = palette([*augs, *groups]), []
    tag = f"{safe(data)}_{safe(model)}"
    head = f"{data} / {model}: mean over seeds per regime\n{BAND_NOTE}"

    def series(fn, ls="-", labelled=True):
        return [(a, cs, ls, labelled) for a, rs in groups.items() if (cs := _curves(rs, fn))]

    occ = {k: series(lambda r, k=k: dict_curve((r["eval"] or {}).get(f"occlusion_{k}")))
           for k in ("center", "boundary")}
    if occ["center"] or occ["boundary"]:
        name = f"robust_occlusion_{tag}.png"
        _panels(out / name, head, [
            ("center: a centred s×s square zeroed", "hole side s (pixels)", ACC, occ["center"]),
            ("boundary: all but the centred s×s square zeroed", "kept square side s (pixels)", ACC, occ["boundary"])],
            colors)
        made.append(("Accuracy vs occlusion size (s = 0: no occlusion for center, all zeroed for boundary)", name))
    if fg := series(fgsm_curve):
        name = f"robust_fgsm_{tag}.png"
        _panels(out / name, head, [("white-box one-step FGSM; ε = 0 is clean accuracy", "ε (× 1/255, pixel units)",
                                    ACC, fg)], colors, width=6.5)
        made.append(("Accuracy vs FGSM ε", name))
    if sev := series(severity_curve):
        name = f"robust_corruption_{tag}.png"
        _panels(out / name, head, [("mean over the corruptions at each severity", "severity", ACC, sev)],
                colors, width=6.5)
        made.append(("Accuracy vs corruption severity", name))
    ib_panels = []
    for kind, sub, xl in (("mixup", "mixup inputs λ·a + (1−λ)·b", "λ"),
                          ("cutmix", "CutMix inputs: a with a centred s×s patch of b", "patch side s (pixels)")):
        lines = [ln for f, ls in (("either", "-"), ("neither", "--"))
                 for ln in series(lambda r, kind=kind, f=f: dict_curve(((r["eval"] or {}).get("in_between") or {})
                                                                       .get(kind), f), ls, f == "either")]
        if lines:
            ib_panels.append((f"{sub}\nsolid: predicts a or b; dashed: neither", xl, "rate (%)", lines))
    if ib_panels:
        name = f"robust_inbetween_{tag}.png"
        _panels(out / name, head, ib_panels, colors)
        made.append(("In-between classes: rate of predicting either class of the pair, or neither", name))
    rel = {a: mr for a, rs in groups.items() if (mr := mean_reliability(rs)) is not None}
    if rel:
        name = f"robust_reliability_{tag}.png"
        fig, (ax,) = new_fig(6, 5)
        ax.plot([0, 100], [0, 100], ls="--", color="grey", lw=1, label="perfect calibration")
        for a, (conf, acc) in rel.items():
            ax.plot(conf, acc, marker="o", ms=3, lw=1.4, color=colors[a], label=f"{a} (n={len(groups[a])})")
        ax.set_xlabel("confidence (%), per bin")
        ax.set_ylabel("accuracy (%), per bin")
        finish(fig, [ax], f"{data} / {model}: reliability, bins pooled over seeds (count-weighted)")
        save_fig(fig, out / name)
        made.append(("Reliability diagram per regime (below the diagonal: over-confident)", name))
    return made


def run_figure_links(runs: list[dict], out: Path) -> list[str]:
    """A markdown table linking each run's own figures (eval.figures, relative to the run folder)."""
    names = sorted({n for r in runs for n in ((r["eval"] or {}).get("figures") or {})})
    if not names:
        return []
    lines = ["| run | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for r in runs:
        figs = (r["eval"] or {}).get("figures") or {}
        link = lambda n: (f"[png]({Path(os.path.relpath(r['dir'] / figs[n], out)).as_posix()})"  # noqa: E731
                          if isinstance(figs.get(n), str) else "—")
        lines.append(f"| {r['data']}/{r['model']}/{r['aug']} seed {r['seed']} | "
                     + " | ".join(link(n) for n in names) + " |")
    return lines

"""Drawing helpers shared by every figure: a bare Agg figure (no pyplot, so no global backend
switch for callers), one colour per regime, mean-over-seeds lines with clipped interval bands."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from augbench.report.stats import band, mean_ci
from augbench.runs import atomic_write

BAND_NOTE = "shaded: 95% t-CI of the mean over seeds, clipped to [0, 100]"
EPOCHS = "epoch"


def new_fig(w: float, h: float, ncols: int = 1):
    """(figure, list of axes) on an Agg canvas, constrained layout so legends outside fit."""
    fig = Figure(figsize=(w, h), layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def save_fig(fig: Figure, path: Path) -> Path:
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    return path


def safe(name) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name))


def palette(names) -> dict:
    """A distinct colour per name, in the given order (the report's regime order everywhere)."""
    names = list(dict.fromkeys(names))
    cols = colormaps["tab10" if len(names) <= 10 else "tab20"].colors
    return {n: cols[i % len(cols)] for i, n in enumerate(names)}


def aggregate_curves(curves: list, ci: str = "t") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-x (xs, mean, half-width, n) over runs' (xs, ys); runs may cover different xs."""
    per = defaultdict(list)
    for xs, ys in curves:
        for x, y in zip(xs, ys):
            per[float(x)].append(float(y))
    xs = sorted(per)
    res = [mean_ci(per[x], ci) for x in xs]
    return (np.array(xs), np.array([r[0] for r in res]),
            np.array([r[1] for r in res]), np.array([r[2] for r in res]))


def draw_mean(ax, curves: list, label: str, color=None, ls: str = "-", marker=None, clip=(0.0, 100.0)):
    """Plot the mean over runs of (xs, ys) curves with its 95% t-band, clipped to `clip`."""
    xs, mu, hw, n = aggregate_curves(curves, "t")
    (line,) = ax.plot(xs, mu, label=label, color=color, ls=ls, marker=marker, lw=1.4, ms=4)
    lo, hi, ok = band(mu, hw, *clip)
    if ok.any():
        ax.fill_between(xs, lo, hi, where=ok, color=line.get_color(), alpha=0.15, lw=0)
    return line


def finish(fig, axes, title: str, legend_below: bool = False) -> None:
    """Grid, title and one legend: inside the only axes, or below all of them. Epoch axes get
    whole-number ticks."""
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_xlabel() == EPOCHS:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title, fontsize=10)
    if legend_below:
        seen = {}
        for ax in axes:  # a regime may have data in one panel only
            for h, label in zip(*ax.get_legend_handles_labels()):
                seen.setdefault(label, h)
        if seen:
            fig.legend(list(seen.values()), list(seen), loc="outside lower center",
                       ncols=min(len(seen), 4), fontsize=8)
    elif axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=8)

"""Occlusion robustness and the in-between-class analysis of the CutMix paper.

Holes are centred s×s squares: top = (H − s) // 2, left = (W − s) // 2, so when H − s is odd the
extra row (column) falls below (right of) the hole. "Zeroed" means 0 after normalisation, i.e. the
per-channel mean pixel, as in Cutout and CutMix's own occlusion test. Accuracies are fractions.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch

from augbench.evaluation.common import (
    Model, Stats, accuracy, batched_logits, channel_view, model_device, new_figure, predict_logits,
    save_png, to_unit,
)

MODES = ("center", "boundary")
LAMS = tuple(i / 10 for i in range(11))


def center_mask(height: int, width: int, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(1, 1, H, W) bool, True inside the centred ``size``×``size`` square."""
    if not 0 <= size <= min(height, width):
        raise ValueError(f"hole size {size} does not fit a {height}x{width} image")
    mask = torch.zeros(1, 1, height, width, dtype=torch.bool, device=device)
    top, left = (height - size) // 2, (width - size) // 2
    mask[..., top:top + size, left:left + size] = True
    return mask


def occlusion(model: Model, images_u8: torch.Tensor, labels: torch.Tensor, mean: Stats, std: Stats,
              sizes: Iterable[int] = range(0, 33, 4), mode: str = "center",
              batch_size: int = 1000) -> dict[int, float]:
    """``{s: top1}``: ``center`` sets the centred s×s square to the mean pixel, ``boundary``
    everything outside it. Centre s = 0 and boundary s = H leave the image untouched."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}; choose one of {MODES}")
    _, _, h, w = images_u8.shape
    device = model_device(model, images_u8.device)
    out = {}
    for s in sizes:
        hidden = center_mask(h, w, s, device)
        hidden = hidden if mode == "center" else ~hidden

        def fill(x: torch.Tensor, hidden: torch.Tensor = hidden) -> torch.Tensor:
            return torch.where(hidden, channel_view(mean, x), x)

        out[int(s)] = accuracy(predict_logits(model, images_u8, mean, std, batch_size, fill), labels)
    return out


def draw_pairs(labels: torch.Tensor, n_pairs: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) index tensors on the CPU: ``min(n_pairs, N)`` distinct images a, each with a partner b
    drawn uniformly from the images of the other classes, from a generator seeded by ``seed``."""
    labels = labels.cpu().long()
    n = len(labels)
    counts = torch.bincount(labels)
    if (counts > 0).sum() < 2:
        raise ValueError("in-between-class pairs need at least two classes")
    gen = torch.Generator().manual_seed(seed)
    a = torch.randperm(n, generator=gen)[:n_pairs]
    # images sorted by class: a's own class is one contiguous run, so a uniform position among
    # the other n − n_c images that jumps over that run picks a partner of another class
    order = torch.argsort(labels, stable=True)
    start = torch.cumsum(counts, 0) - counts
    own = labels[a]
    others = n - counts[own]
    pos = (torch.rand(len(a), generator=gen, dtype=torch.float64) * others).long().clamp_(max=others - 1)
    pos = pos + (pos >= start[own]) * counts[own]
    return a, order[pos]


def _rates(logits: torch.Tensor, ya: torch.Tensor, yb: torch.Tensor) -> dict[str, float]:
    pred = logits.argmax(1)
    a = (pred == ya).float().mean().item()
    b = (pred == yb).float().mean().item()  # a and b are different classes: the two are disjoint
    return {"a": a, "b": b, "either": a + b, "neither": 1.0 - (a + b)}


def lam_key(lam: float) -> str:
    return str(round(float(lam), 6))


def in_between(model: Model, images_u8: torch.Tensor, labels: torch.Tensor, mean: Stats, std: Stats,
               n_pairs: int = 1000, seed: int = 0, lams: Sequence[float] = LAMS,
               sizes: Iterable[int] = range(0, 33, 4), batch_size: int = 1000) -> dict:
    """How often mixed images of two classes are predicted as either class (fractions).

    ``{"mixup": {"0.0": rates, ..., "1.0": rates}, "cutmix": {"0": rates, ...}, "pairs": n}`` with
    rates ``{"a", "b", "either", "neither"}``. Mixup: λ·x_a + (1 − λ)·x_b, mixed in pixels; the
    normalisation is affine, so this equals mixing normalised inputs. CutMix: x_a with its centred
    s×s square taken from x_b. λ = 1 and s = 0 give x_a; λ = 0 and s = H give x_b.
    """
    device = model_device(model, images_u8.device)
    a, b = draw_pairs(labels, n_pairs, seed)
    ya, yb = (labels[i.to(labels.device)].to(device) for i in (a, b))
    a, b = a.to(images_u8.device), b.to(images_u8.device)
    _, _, h, w = images_u8.shape

    def pair(sl: slice) -> tuple[torch.Tensor, torch.Tensor]:
        return (to_unit(images_u8[a[sl]].to(device, non_blocking=True)),
                to_unit(images_u8[b[sl]].to(device, non_blocking=True)))

    def rates(mix) -> dict[str, float]:
        logits = batched_logits(model, len(a), lambda sl: mix(*pair(sl)), mean, std, batch_size)
        return _rates(logits, ya, yb)

    mixup = {lam_key(lam): rates(lambda xa, xb, lam=float(lam): lam * xa + (1.0 - lam) * xb) for lam in lams}
    cutmix = {}
    for s in sizes:
        hole = center_mask(h, w, s, device)
        cutmix[str(int(s))] = rates(lambda xa, xb, hole=hole: torch.where(hole, xb, xa))
    return {"mixup": mixup, "cutmix": cutmix, "pairs": len(a)}


def plot_occlusion(results: Mapping[str, Mapping], path: str | Path, title: str) -> None:
    """Top-1 (%) against hole size, one line per entry of ``results`` (e.g. ``{"center": {s: top1},
    "boundary": {...}}``; keys may be ints or, after a JSON round trip, strings)."""
    fig, (ax,) = new_figure(5.0, 3.6)
    for (label, curve), marker in zip(results.items(), itertools.cycle("os^vDx*")):
        points = sorted((int(s), 100.0 * acc) for s, acc in curve.items())
        ax.plot(*zip(*points), marker=marker, label=label)
    ax.set(ylim=(0, 100), xlabel="hole size s (pixels, s×s centred square)", ylabel="top-1 accuracy (%)",
           title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    save_png(fig, path)

"""Calibration of top-1 confidence: NLL, ECE, MCE, overconfidence, and a reliability diagram.

Binning is torchmetrics' (``MulticlassCalibrationError``), so ``ece``/``mce`` equal its ``norm="l1"``
/ ``norm="max"``: edges ``linspace(0, 1, n_bins + 1)`` in float32, each bin ``[lower, upper)``
(``bucketize(..., right=True) - 1``). A confidence of exactly 1.0, which float32 softmax gives
whenever the top logit leads by ~17 or more, falls past the last edge into an extra bin
``[1, 1]``; it is kept as bin ``n_bins`` rather than merged, to stay equal to torchmetrics.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from augbench.evaluation.common import new_figure, save_png


def calibration(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> dict:
    """``{"nll", "ece", "mce", "overconfidence", "bins"}``; all fractions / nats as floats.

    ``bins`` is a dict of ``n_bins + 1`` long lists: ``lower``, ``upper``, ``count``, ``accuracy``,
    ``confidence`` (accuracy and confidence are 0.0 in an empty bin, as in torchmetrics; ``count``
    tells them apart). The last entry is the exactly-1.0 bin described in the module docstring.
    """
    logits, labels = logits.float(), labels.to(logits.device)
    # float32 softmax, as torchmetrics takes it: a float64 one would move confidences across edges
    conf, pred = torch.softmax(logits, dim=1).max(dim=1)
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float32, device=logits.device)
    index = torch.bucketize(conf, edges, right=True) - 1  # in [0, n_bins]; n_bins only for conf == 1

    def per_bin(weights: torch.Tensor | None) -> torch.Tensor:
        # on the CPU: CUDA's bincount adds with atomics, so torch.use_deterministic_algorithms (a run with
        # trainer.deterministic=true) refuses it, and its float sums would vary run to run anyway
        w = None if weights is None else weights.cpu()
        return torch.bincount(index.cpu(), w, minlength=n_bins + 1).double()

    count = per_bin(None)
    seen = count.clamp(min=1)
    acc = per_bin((pred == labels).double()) / seen
    mean_conf = per_bin(conf.double()) / seen
    share = count / count.sum()
    gap = mean_conf - acc
    lower = edges.double().tolist()
    return {
        "nll": F.cross_entropy(logits, labels).item(),
        "ece": (share * gap.abs()).sum().item(),
        "mce": gap.abs().max().item(),
        "overconfidence": (share * mean_conf * gap.clamp(min=0)).sum().item(),
        "bins": {"lower": lower, "upper": lower[1:] + [1.0], "count": [int(c) for c in count.tolist()],
                 "accuracy": acc.tolist(), "confidence": mean_conf.tolist()},
    }


def _display_bins(bins: dict) -> dict:
    """The extra [1, 1] bin folded into the last regular bar, count-weighted (one bar per width)."""
    cols = {k: list(v) for k, v in bins.items()}
    if len(cols["lower"]) > 1 and cols["lower"][-1] == cols["upper"][-1]:
        c1, c2 = cols["count"][-2], cols["count"].pop()
        for key in ("accuracy", "confidence"):
            v2 = cols[key].pop()
            cols[key][-1] = (c1 * cols[key][-1] + c2 * v2) / max(c1 + c2, 1)
        cols["count"][-1] = c1 + c2
        cols["lower"].pop()
        cols["upper"].pop()
        cols["upper"][-1] = 1.0
    return cols


def reliability_diagram(cal: dict, path: str | Path, title: str) -> None:
    """Per-bin accuracy bars against the diagonal, the gap to mean confidence overlaid, and the
    confidence histogram below; written to ``path`` as a PNG, atomically."""
    b = _display_bins(cal["bins"])
    left = b["lower"]
    width = [u - lo for lo, u in zip(left, b["upper"])]
    filled = [c > 0 for c in b["count"]]
    fig, (top, bottom) = new_figure(5.0, 6.0, rows=2, sharex=True, gridspec_kw={"height_ratios": [3, 1]})

    acc = [a if f else 0.0 for a, f in zip(b["accuracy"], filled)]
    top.bar(left, acc, width=width, align="edge", color="tab:blue", edgecolor="black", linewidth=0.5,
            label="accuracy")
    gap_base = [min(a, c) for a, c in zip(b["accuracy"], b["confidence"])]
    gap_height = [abs(c - a) if f else 0.0 for a, c, f in zip(b["accuracy"], b["confidence"], filled)]
    top.bar(left, gap_height, bottom=gap_base, width=width, align="edge", color="tab:red", alpha=0.3,
            edgecolor="tab:red", hatch="//", linewidth=0.5, label="gap to confidence")
    top.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title=title)
    top.legend(loc="upper left", title=f"ECE {100 * cal['ece']:.2f}%  MCE {100 * cal['mce']:.2f}%",
               fontsize="small")

    total = max(sum(b["count"]), 1)
    bottom.bar(left, [100 * c / total for c in b["count"]], width=width, align="edge", color="gray",
               edgecolor="black", linewidth=0.5)
    bottom.set(xlim=(0, 1), xlabel="confidence (top-1 probability)", ylabel="% of samples")
    save_png(fig, path)

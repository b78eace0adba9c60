"""Out-of-distribution detection by maximum softmax probability (MSP), as in the CutMix paper.

The test set is the positive class; a threshold t calls an image in-distribution when its score
is ≥ t. All metrics are fractions in [0, 1] (the CutMix paper prints them in percent).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from augbench.evaluation.common import Model, Stats, predict_logits

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, the weights PIL's convert("L") uses


def msp(logits: torch.Tensor) -> torch.Tensor:
    """Maximum softmax probability per image (float32)."""
    return torch.softmax(logits.float(), dim=1).amax(dim=1)


def auroc(pos: torch.Tensor, neg: torch.Tensor) -> float:
    """P(score_pos > score_neg) + ½·P(tie), from mid-ranks (Mann–Whitney U), in float64."""
    scores = torch.cat([pos, neg]).double()
    _, inverse, counts = torch.unique(scores, sorted=True, return_inverse=True, return_counts=True)
    # tied scores share the mean of the ranks they span: (first + last) / 2, ranks from 1
    last = torch.cumsum(counts, 0).double()
    mid_rank = (last - (counts.double() - 1) / 2)[inverse]
    n_pos, n_neg = len(pos), len(neg)
    u = mid_rank[:n_pos].sum().item() - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def ood_metrics(in_scores: torch.Tensor, out_scores: torch.Tensor) -> dict[str, float]:
    """``{"auroc", "tnr_at_tpr95", "detection_acc"}``, fractions; in-distribution is positive.

    - ``tnr_at_tpr95``: TNR at the largest threshold whose TPR is ≥ 0.95, i.e. the ⌈0.95·n_in⌉-th
      largest in-distribution score (the best TNR that keeps 95% of the test set).
    - ``detection_acc``: max over thresholds of ½(TPR + TNR) (ODIN's 1 − detection error), the
      thresholds being every observed score plus +∞.
    """
    pos, neg = in_scores.double().flatten().cpu(), out_scores.double().flatten().cpu()
    if not len(pos) or not len(neg):
        raise ValueError("OOD metrics need at least one in- and one out-of-distribution score")
    pos_sorted, neg_sorted = pos.sort().values, neg.sort().values

    def rates(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tpr = 1 - torch.searchsorted(pos_sorted, t).double() / len(pos)  # share of pos ≥ t
        tnr = torch.searchsorted(neg_sorted, t).double() / len(neg)  # share of neg < t
        return tpr, tnr

    k = -(-95 * len(pos) // 100)  # ⌈0.95·n⌉ in integers: 0.95·100 is 95.00000000000001 in floats
    _, tnr95 = rates(pos_sorted[len(pos) - k].view(1))
    thresholds = torch.cat([torch.unique(torch.cat([pos, neg])), torch.tensor([float("inf")], dtype=torch.float64)])
    tpr, tnr = rates(thresholds)
    return {"auroc": auroc(pos, neg), "tnr_at_tpr95": tnr95.item(),
            "detection_acc": (0.5 * (tpr + tnr)).max().item()}


def synthetic_sets(n: int, shape: tuple[int, int, int] = (3, 32, 32), seed: int = 0) -> dict[str, torch.Tensor]:
    """ODIN's noise test sets as uint8 (n, C, H, W) on the CPU: ``uniform`` draws each pixel from
    {0..255}; ``gaussian`` from N(0.5, 1) in [0, 1] pixel units, clipped to [0, 1], rounded to
    8 bits (so about 31% of its pixels are 0 and 31% are 255)."""
    gen = torch.Generator().manual_seed(seed)
    size = (n, *shape)
    uniform = torch.randint(0, 256, size, generator=gen, dtype=torch.uint8)
    gaussian = ((0.5 + torch.randn(size, generator=gen)).clamp_(0, 1) * 255).round_().to(torch.uint8)
    return {"uniform": uniform, "gaussian": gaussian}


def adapt_images(images_u8: torch.Tensor, channels: int) -> torch.Tensor:
    """An OOD set in the model's channel count: gray → RGB by repetition, RGB → gray by BT.601 luma."""
    have = images_u8.shape[1]
    if have == channels:
        return images_u8
    if have == 1 and channels == 3:
        return images_u8.expand(-1, 3, -1, -1).contiguous()
    if have == 3 and channels == 1:
        weights = torch.tensor(LUMA, device=images_u8.device).view(1, 3, 1, 1)
        luma = (images_u8.float() * weights).sum(1, keepdim=True)
        return luma.round_().clamp_(0, 255).to(torch.uint8)
    raise ValueError(f"cannot convert {have}-channel images to {channels} channels")


def ood(model: Model, in_images_u8: torch.Tensor, out_sets: Mapping[str, torch.Tensor], mean: Stats,
        std: Stats, batch_size: int = 1000) -> dict[str, dict[str, float]]:
    """``{set name: ood_metrics(...)}`` with the MSP of the in-distribution test images as positives.
    Out sets are converted to the test set's channel count; their H×W must already match."""
    in_scores = msp(predict_logits(model, in_images_u8, mean, std, batch_size))
    out = {}
    for name, images in out_sets.items():
        if images.shape[2:] != in_images_u8.shape[2:]:
            raise ValueError(f"OOD set {name!r} is {tuple(images.shape[2:])}, the test set "
                             f"{tuple(in_images_u8.shape[2:])}: resize it first")
        images = adapt_images(images, in_images_u8.shape[1])
        out[name] = ood_metrics(in_scores, msp(predict_logits(model, images, mean, std, batch_size)))
    return out

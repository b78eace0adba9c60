"""Mixing: images blended or pasted across the batch, labels weighted by each partner's share.

A mixed batch carries K partners per image: ``targets`` (N, K) long and ``weights`` (N, K) float32
whose rows sum to 1; the loss is Σ_k w_k·CE(logits, y_k)."""

from __future__ import annotations

import torch

from augbench.augment.common import box_mask, centred_box, randint, check_alpha, check_prob, sample_beta

# ------------------------------------------------------------------- mixup / cutmix
def mixup(
    x: torch.Tensor, y: torch.Tensor, *, alpha: float, generator, per_sample: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """mixup: x̃ = λ·x + (1-λ)·x[j]; returns (x̃, y[j], λ) with λ float32 (N,).

    Loss: λ·CE(out, y) + (1-λ)·CE(out, y_b). One λ per batch unless per_sample.
    """
    check_alpha(alpha)
    n = x.shape[0]
    lam = sample_beta(alpha, n if per_sample else 1, generator, x.device).expand(n)
    j = torch.randperm(n, generator=generator, device=x.device)  # one permutation: images and labels
    lam_x = lam.to(x.dtype).view(n, *([1] * (x.dim() - 1)))
    return lam_x * x + (1 - lam_x) * x[j], y[j], lam.contiguous()


def cutmix(
    x: torch.Tensor, y: torch.Tensor, *, alpha: float, prob: float, generator, per_sample: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CutMix: paste the same box of x[j] into x; returns (x̃, y_b, λ), λ float32 (N,).

    λ is recomputed from the clipped box (1 - area/(H·W)), so it is the true share of
    the own image. The batch (each image, if per_sample) is mixed with probability
    ``prob``, gated once; unmixed images come back unchanged with y_b = y and λ = 1.
    """
    check_alpha(alpha)
    check_prob(prob)
    n, _, h, w = x.shape
    m = n if per_sample else 1
    dev = x.device
    gate = torch.rand(m, generator=generator, device=dev) < prob  # prob=1 always passes: rand < 1
    lam0 = sample_beta(alpha, m, generator, dev)
    j = torch.randperm(n, generator=generator, device=dev)
    cx = randint(w, m, generator, dev)
    cy = randint(h, m, generator, dev)
    cut = torch.sqrt(1.0 - lam0)
    cut_w = torch.floor(w * cut).long()  # int(W·√(1-λ))
    cut_h = torch.floor(h * cut).long()
    y1, y2, x1, x2 = centred_box(cy, cx, cut_h // 2, cut_w // 2, h, w)
    area = ((x2 - x1) * (y2 - y1)).float()
    lam = torch.where(gate, 1.0 - area / (h * w), 1.0).expand(n)
    mask = (box_mask(y1, y2, x1, x2, h, w) & gate[:, None, None])[:, None]  # (M, 1, H, W)
    x_mixed = torch.where(mask, x[j], x)
    y_b = torch.where(gate.expand(n), y[j], y)
    return x_mixed, y_b, lam.float().contiguous()


def two_partners(y: torch.Tensor, y_b: torch.Tensor, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A two-image mix as K = 2 partners: targets (y, y_b), weights (λ, 1−λ)."""
    return torch.stack([y, y_b], 1), torch.stack([lam, 1 - lam], 1)

"""Mixing: images blended or pasted across the batch, labels weighted by each partner's share.

A mixed batch carries K partners per image: ``targets`` (N, K) long and ``weights`` (N, K) float32
whose rows sum to 1; the loss is Σ_k w_k·CE(logits, y_k)."""

from __future__ import annotations

import math

import torch

from augbench.augment.common import (box_mask, centred_box, check_alpha, check_prob, is_number, randint, require,
                                     sample_beta)

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


CUTMIX_CENTERS = ("uniform", "gaussian")
CUTMIX_LABEL_MODES = ("area", "one_hot", "complete")


def cutmix(
    x: torch.Tensor, y: torch.Tensor, *, alpha: float, prob: float, generator, per_sample: bool = False,
    center: str = "uniform", sigma: float = 0.25, fixed_lam: float | None = None, label_mode: str = "area",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CutMix: paste the same box of x[j] into x; returns (x̃, y_b, λ), λ float32 (N,). The draws and
    the box are :func:`cutmix_plan`'s, for the image's size."""
    n, _, h, w = x.shape
    mask, j, y_b, lam = cutmix_plan(y, h, w, alpha=alpha, prob=prob, generator=generator, per_sample=per_sample,
                                    center=center, sigma=sigma, fixed_lam=fixed_lam, label_mode=label_mode)
    return torch.where(mask, x[j], x), y_b, lam


def cutmix_plan(
    y: torch.Tensor, h: int, w: int, *, alpha: float, prob: float, generator, per_sample: bool = False,
    center: str = "uniform", sigma: float = 0.25, fixed_lam: float | None = None, label_mode: str = "area",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """CutMix's draws for a batch of N maps of size h×w: (mask (M, 1, h, w) bool, partner j (N,), y_b, λ).

    ``cutmix`` applies it to the images; feature-level CutMix applies it to a feature map (its own h×w),
    so at the input both draw the same.

    λ is recomputed from the clipped box (1 - area/(H·W)), so it is the true share of
    the own image. The batch (each image, if per_sample) is mixed with probability
    ``prob``, gated once; unmixed images come back unchanged with y_b = y and λ = 1.

    The CutMix paper's Table 8 ablations (the defaults reproduce plain CutMix draw for draw):

    - ``center="gaussian"``: the box centre is ``round(c + sigma·side·z)``, z ~ N(0, 1), c = side/2
      (the image centre; the default box at c is symmetric), clipped into [0, side − 1], drawn per
      axis as ``randn(2, M)`` (row 0 → x, row 1 → y) in place of the two uniform ``randint``.
      ``sigma`` is a fraction of the side; the paper gives none, 0.25 (8 px at 32 px) is our choice:
      ±2σ spans the image, about 4.6% of centres per axis land on the clipped border.
    - ``fixed_lam=λ``: no Beta draw; a box of side ``round(W·√(1−λ))`` × ``round(H·√(1−λ))``
      occupying [c − side//2, c − side//2 + side), clipped (Fixed-size: 16×16 at 32 px, λ = 0.75).
      λ is still recomputed from the clipped box.
    - ``label_mode``: the returned λ is the weight of ``y`` (1 − λ that of ``y_b``). "area": the
      clipped-box share, as above. "one_hot": 1 if the own image holds at least half the pixels
      (ties → own image), else 0. "complete": 0.5 for every image that passed the gate, whatever
      its box (even an empty one); gated-off images keep λ = 1.
    """
    check_alpha(alpha)
    check_prob(prob)
    require(center in CUTMIX_CENTERS, "center", center, "one of " + ", ".join(CUTMIX_CENTERS))
    require(is_number(sigma) and sigma > 0, "sigma", sigma, "a number > 0 (a fraction of the side)")
    require(fixed_lam is None or (is_number(fixed_lam) and 0 < fixed_lam < 1), "fixed_lam", fixed_lam,
            "null or a number in (0, 1)")
    require(label_mode in CUTMIX_LABEL_MODES, "label_mode", label_mode, "one of " + ", ".join(CUTMIX_LABEL_MODES))
    n = y.shape[0]
    m = n if per_sample else 1
    dev = y.device
    gate = torch.rand(m, generator=generator, device=dev) < prob  # prob=1 always passes: rand < 1
    if fixed_lam is None:
        lam0 = sample_beta(alpha, m, generator, dev)
    j = torch.randperm(n, generator=generator, device=dev)
    if center == "uniform":
        cx = randint(w, m, generator, dev)
        cy = randint(h, m, generator, dev)
    else:
        z = torch.randn(2, m, generator=generator, device=dev)
        cx = torch.round(w / 2 + sigma * w * z[0]).long().clamp(0, w - 1)
        cy = torch.round(h / 2 + sigma * h * z[1]).long().clamp(0, h - 1)
    if fixed_lam is None:
        cut = torch.sqrt(1.0 - lam0)
        cut_w = torch.floor(w * cut).long()  # int(W·√(1-λ))
        cut_h = torch.floor(h * cut).long()
        y1, y2, x1, x2 = centred_box(cy, cx, cut_h // 2, cut_w // 2, h, w)
    else:
        side_w = round(w * math.sqrt(1.0 - fixed_lam))
        side_h = round(h * math.sqrt(1.0 - fixed_lam))
        y1, x1 = cy - side_h // 2, cx - side_w // 2
        y1, y2 = y1.clamp(0, h), (y1 + side_h).clamp(0, h)
        x1, x2 = x1.clamp(0, w), (x1 + side_w).clamp(0, w)
    area = ((x2 - x1) * (y2 - y1)).float()
    share = 1.0 - area / (h * w)
    if label_mode == "one_hot":
        share = (share >= 0.5).float()
    elif label_mode == "complete":
        share = torch.full_like(share, 0.5)
    lam = torch.where(gate, share, 1.0).expand(n)
    mask = (box_mask(y1, y2, x1, x2, h, w) & gate[:, None, None])[:, None]  # (M, 1, H, W)
    y_b = torch.where(gate.expand(n), y[j], y)
    return mask, j, y_b, lam.float().contiguous()


def two_partners(y: torch.Tensor, y_b: torch.Tensor, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A two-image mix as K = 2 partners: targets (y, y_b), weights (λ, 1−λ)."""
    return torch.stack([y, y_b], 1), torch.stack([lam, 1 - lam], 1)


# ---------------------------------------------------------------------- mixup ⟷ cutmix
def mixup_cutmix(
    x: torch.Tensor, y: torch.Tensor, *, mixup_alpha: float, cutmix_alpha: float, prob: float,
    switch_prob: float, generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """timm's Mixup switch (timm/data/mixup.py, mode="batch", correct_lam=True) without host syncs.

    Per batch: mixed with probability ``prob``; if mixed, CutMix (α = ``cutmix_alpha``, λ recomputed
    from the clipped box) with probability ``switch_prob``, else mixup (α = ``mixup_alpha``). Returns
    (x̃, y_b, λ) like :func:`mixup`; an unmixed batch comes back as (x, y, 1).

    Construction (what makes it sync-free): two uniforms are drawn first, ``u = rand(2)``; gate
    ``u[0] < prob``, switch ``u[1] < switch_prob``. Then both candidates are computed from the same
    generator, in this order: ``mixup(x, y, alpha=mixup_alpha)`` and ``cutmix(x, y, alpha=cutmix_alpha,
    prob=1)`` (the gate is applied here, once), and the result is picked with ``torch.where`` on the
    device booleans. Every draw has a fixed shape, so the generator advances the same amount
    whichever branch is taken. Unlike timm, the partner is a random permutation, not ``x.flip(0)``.
    """
    check_alpha(mixup_alpha, "mixup_alpha")
    check_alpha(cutmix_alpha, "cutmix_alpha")
    check_prob(prob, "prob")
    check_prob(switch_prob, "switch_prob")
    n = x.shape[0]
    u = torch.rand(2, generator=generator, device=x.device)
    gate, use_cut = u[0] < prob, u[1] < switch_prob  # 0-dim device booleans; prob=1 always passes
    x_mu, yb_mu, lam_mu = mixup(x, y, alpha=mixup_alpha, generator=generator)
    x_cm, yb_cm, lam_cm = cutmix(x, y, alpha=cutmix_alpha, prob=1.0, generator=generator)
    x_out = torch.where(gate, torch.where(use_cut, x_cm, x_mu), x)
    y_b = torch.where(gate, torch.where(use_cut, yb_cm, yb_mu), y)
    lam = torch.where(gate, torch.where(use_cut, lam_cm, lam_mu), torch.ones((), device=x.device))
    return x_out, y_b, lam.float().expand(n).contiguous()


# --------------------------------------------------------------------------- RICAP
def ricap_draw(n: int, h: int, w: int, *, beta: float, generator, device) -> dict[str, torch.Tensor]:
    """RICAP's draws for one batch, all on the device (jackryo/ricap, trainers.py):

    - ``bw``, ``bh``: the boundary point, ``round(W·Beta(β,β))`` and ``round(H·Beta(β,β))`` as the
      official ``int(np.round(...))`` (torch.round also rounds half to even); 0-dim long.
    - ``perm`` (4, N): one permutation of the batch per patch.
    - ``ox``, ``oy`` (4,): each patch's crop origin, uniform integers in [0, W − w_k] and
      [0, H − h_k] inclusive (``np.random.randint(0, W - w_k + 1)``), shared by the whole batch.

    Patches k = 0..3 have sizes (w_k, h_k) = (bw, bh), (W−bw, bh), (bw, H−bh), (W−bw, H−bh).
    """
    check_alpha(beta, "beta")
    b = sample_beta(beta, 2, generator, device)
    bw = torch.round(w * b[0]).long()
    bh = torch.round(h * b[1]).long()
    pw, ph = _patch_sizes(bw, bh, h, w)
    perm = torch.stack([torch.randperm(n, generator=generator, device=device) for _ in range(4)])
    u = torch.rand(2, 4, generator=generator, device=device)
    # floor(U·(m+1)) is uniform on {0..m}; the clamp guards U·(m+1) rounding up to m+1 in float32
    ox = torch.minimum(torch.floor(u[0] * (w - pw + 1)).long(), w - pw)
    oy = torch.minimum(torch.floor(u[1] * (h - ph + 1)).long(), h - ph)
    return {"bw": bw, "bh": bh, "perm": perm, "ox": ox, "oy": oy}


def _patch_sizes(bw, bh, h: int, w: int):
    """Widths and heights (4,) of the top-left, top-right, bottom-left and bottom-right patches."""
    pw = torch.stack([bw, w - bw, bw, w - bw])
    ph = torch.stack([bh, bh, h - bh, h - bh])
    return pw, ph


def ricap_patch(
    x: torch.Tensor, y: torch.Tensor, *, bw, bh, perm, ox, oy
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Patch four crops into each image for given draws (see :func:`ricap_draw`).

    Output pixel (r, c) lies in patch k = 2·[r ≥ bh] + [c ≥ bw]; it is pixel
    (oy_k + r − r0_k, ox_k + c − c0_k) of image ``perm[k, i]``, (r0_k, c0_k) being the patch's corner.
    One gather over the whole batch. Returns (x̃, targets (N, 4) long, weights (N, 4) float32), with
    ``targets[:, k] = y[perm[k]]`` and ``weights[:, k] = area_k / (H·W)``.
    """
    n, _, h, w = x.shape
    dev = x.device
    r = torch.arange(h, device=dev)[:, None]
    c = torch.arange(w, device=dev)[None, :]
    below, right = r >= bh, c >= bw  # (H, 1), (1, W)
    k = 2 * below.long() + right.long()  # (H, W)
    src_r = oy[k] + r - torch.where(below, bh, 0)  # (H, W)
    src_c = ox[k] + c - torch.where(right, bw, 0)
    src_i = perm.t()[:, k]  # (N, H, W): image index per output pixel
    x_out = x[src_i, :, src_r, src_c].permute(0, 3, 1, 2).contiguous()  # advanced dims first: (N, H, W, C)
    pw, ph = _patch_sizes(bw, bh, h, w)
    weights = ((pw * ph).float() / (h * w)).expand(n, 4).contiguous()
    return x_out, y[perm].t().contiguous(), weights


def ricap(
    x: torch.Tensor, y: torch.Tensor, *, beta: float, generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RICAP (Takahashi et al. 2018): four crops patched around one boundary point per batch.

    Returns (x̃, targets (N, 4) long, weights (N, 4) float32 rows summing to 1); the loss is
    Σ_k w_k·CE(y_k) with w_k the area share of patch k."""
    n, _, h, w = x.shape
    return ricap_patch(x, y, **ricap_draw(n, h, w, beta=beta, generator=generator, device=x.device))

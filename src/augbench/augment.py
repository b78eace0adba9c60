"""Batched, device-side data augmentation (see REFERENCE.md, "Augmentation semantics").

Every function works on a whole normalised batch ``x`` (N×C×H×W float) at once:
no per-image Python loops, no global RNG (all draws use the explicit ``generator``,
which must live on ``x.device``), no in-place writes into the inputs, fixed shapes
and no host syncs.
"""

from __future__ import annotations

import math

import torch

__all__ = ["sample_beta", "crop_flip", "cutout", "mixup", "cutmix"]

# Marsaglia–Tsang accepts with probability > 0.95 for every shape >= 1 (we never use
# it below 1), so 16 proposals all fail with probability < 1e-20: a static shape
# instead of a rejection loop.
_PROPOSALS = 16


# ----------------------------------------------------------------------- validation
def _require(ok: bool, name: str, value, rule: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {rule}, got {name}={value!r}")


def check_alpha(alpha: float, name: str = "alpha") -> None:
    """Beta(α, α) needs α > 0 (``not >`` also rejects NaN)."""
    _require(alpha > 0, name, alpha, "> 0")


def check_prob(prob: float, name: str = "prob") -> None:
    _require(0.0 <= prob <= 1.0, name, prob, "in [0, 1]")


# ------------------------------------------------------------------------- sampling
def _log_gamma_mt(shape: float, size: tuple[int, ...], generator, device) -> torch.Tensor:
    """log of Gamma(shape, 1) draws by Marsaglia–Tsang; needs shape >= 1."""
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    z = torch.randn(*size, _PROPOSALS, generator=generator, device=device)
    u = 1.0 - torch.rand(*size, _PROPOSALS, generator=generator, device=device)  # (0, 1]: log finite
    v = (1.0 + c * z) ** 3
    log_v = torch.log(v.clamp_min(torch.finfo(v.dtype).tiny))  # v <= 0 is rejected anyway
    accept = (v > 0) & (torch.log(u) < 0.5 * z * z + d - d * v + d * log_v)
    first = accept.to(torch.uint8).argmax(dim=-1, keepdim=True)  # argmax returns the first max
    log_v = torch.where(accept.any(dim=-1), log_v.gather(-1, first).squeeze(-1), 0.0)
    return math.log(d) + log_v


def sample_beta(alpha: float, n: int, generator: torch.Generator, device) -> torch.Tensor:
    """float32 (n,) draws of Beta(alpha, alpha) as G1 / (G1 + G2), Gi ~ Gamma(alpha).

    Works in log space: for small alpha the Gamma draws underflow float32, the ratio
    sigmoid(log G1 - log G2) does not.
    """
    check_alpha(alpha)
    _require(n >= 0, "n", n, ">= 0")
    boost = alpha < 1.0  # Gamma(a) = Gamma(a + 1) · U^(1/a): keeps Marsaglia–Tsang at shape >= 1
    log_g = _log_gamma_mt(alpha + 1.0 if boost else alpha, (2, n), generator, device)
    if boost:
        u = 1.0 - torch.rand(2, n, generator=generator, device=device)
        log_g = log_g + torch.log(u) / alpha
    return torch.sigmoid(log_g[0] - log_g[1]).float()


def _randint(high: int, n: int, generator, device) -> torch.Tensor:
    return torch.randint(0, high, (n,), generator=generator, device=device)


# ------------------------------------------------------------------------ baseline+
def crop_flip(x: torch.Tensor, *, padding: int, fill: torch.Tensor, generator, flip: bool = True) -> torch.Tensor:
    """RandomCrop(H, padding) + RandomHorizontalFlip(0.5), each image its own offset and flip.

    ``fill`` (C,) is the normalised value of black (-mean/std): padding happens after
    normalisation, so padding with 0 would be mid-grey, not black.
    """
    _require(padding >= 0, "padding", padding, ">= 0")
    n, c, h, w = x.shape
    _require(tuple(fill.shape) == (c,), "fill.shape", tuple(fill.shape), f"({c},)")
    p = padding
    # Top-left corner in the padded image, uniform in [0, 2p]² == offset in [-p, p]².
    top = _randint(2 * p + 1, n, generator, x.device)
    left = _randint(2 * p + 1, n, generator, x.device)
    rows = top[:, None] - p + torch.arange(h, device=x.device)  # (N, H) source rows, maybe outside
    cols = torch.arange(w, device=x.device).expand(n, w)
    if flip:
        flipped = torch.rand(n, generator=generator, device=x.device) < 0.5
        cols = torch.where(flipped[:, None], cols.flip(-1), cols)  # flip the crop: read columns backwards
    cols = left[:, None] - p + cols  # (N, W)
    # One gather from the unpadded image; pixels that fall in the padding become `fill`. No padded
    # copy and no 4-D advanced indexing: this is the hot path of every regime but baseline.
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]  # (N, H, W)
    src = rows.clamp(0, h - 1)[:, :, None] * w + cols.clamp(0, w - 1)[:, None, :]
    out = x.reshape(n, c, h * w).gather(2, src.view(n, 1, h * w).expand(n, c, h * w)).view(n, c, h, w)
    return torch.where(inside[:, None], out, fill.to(x).view(1, c, 1, 1))


# ---------------------------------------------------------------------------- boxes
def _box_mask(y1, y2, x1, x2, h: int, w: int) -> torch.Tensor:
    """(..., H, W) bool mask of [y1, y2) × [x1, x2) for boxes of shape (...)."""
    r = torch.arange(h, device=y1.device)
    col = torch.arange(w, device=x1.device)
    in_r = (r >= y1[..., None]) & (r < y2[..., None])
    in_c = (col >= x1[..., None]) & (col < x2[..., None])
    return in_r[..., :, None] & in_c[..., None, :]


def _centred_box(cy, cx, half_h, half_w, h: int, w: int):
    """Box [cy ± half_h) × [cx ± half_w) clipped at the border, as in both papers' code."""
    return (
        (cy - half_h).clamp(0, h),
        (cy + half_h).clamp(0, h),
        (cx - half_w).clamp(0, w),
        (cx + half_w).clamp(0, w),
    )


# --------------------------------------------------------------------------- cutout
def cutout(x: torch.Tensor, *, n_holes: int, length: int, generator, per_sample: bool = True) -> torch.Tensor:
    """Cutout (DeVries & Taylor): zero ``n_holes`` squares of side ``length``.

    The centre is uniform over the whole image (so border holes are clipped smaller);
    0 is the mean colour after normalisation. per_sample=False shares the holes.
    """
    _require(n_holes >= 0, "n_holes", n_holes, ">= 0")
    _require(length > 0, "length", length, "> 0")
    n, _, h, w = x.shape
    m = n if per_sample else 1
    cy = torch.randint(0, h, (m, n_holes), generator=generator, device=x.device)
    cx = torch.randint(0, w, (m, n_holes), generator=generator, device=x.device)
    half = length // 2
    holes = _box_mask(*_centred_box(cy, cx, half, half, h, w), h, w)  # (M, holes, H, W)
    mask = holes.any(dim=1, keepdim=True)  # (M, 1, H, W); False when n_holes == 0
    return torch.where(mask, torch.zeros((), dtype=x.dtype, device=x.device), x)


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
    cx = _randint(w, m, generator, dev)
    cy = _randint(h, m, generator, dev)
    cut = torch.sqrt(1.0 - lam0)
    cut_w = torch.floor(w * cut).long()  # int(W·√(1-λ))
    cut_h = torch.floor(h * cut).long()
    y1, y2, x1, x2 = _centred_box(cy, cx, cut_h // 2, cut_w // 2, h, w)
    area = ((x2 - x1) * (y2 - y1)).float()
    lam = torch.where(gate, 1.0 - area / (h * w), 1.0).expand(n)
    mask = (_box_mask(y1, y2, x1, x2, h, w) & gate[:, None, None])[:, None]  # (M, 1, H, W)
    x_mixed = torch.where(mask, x[j], x)
    y_b = torch.where(gate.expand(n), y[j], y)
    return x_mixed, y_b, lam.float().contiguous()

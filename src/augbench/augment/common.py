"""What every augmentation family shares: knob checks, Beta draws, boxes.

No global RNG anywhere: every draw takes an explicit ``generator`` living on the batch's device."""

from __future__ import annotations

import math

import torch

# ----------------------------------------------------------------------- validation
def require(ok: bool, name: str, value, rule: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {rule}, got {name}={value!r}")


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_alpha(alpha: float, name: str = "alpha") -> None:
    """Beta(α, α) needs α > 0 (``not >`` also rejects NaN)."""
    require(alpha > 0, name, alpha, "> 0")


def check_prob(prob: float, name: str = "prob") -> None:
    require(0.0 <= prob <= 1.0, name, prob, "in [0, 1]")


# ------------------------------------------------------------------------- sampling
# Marsaglia–Tsang accepts with probability > 0.95 for every shape >= 1 (we never use
# it below 1), so 16 proposals all fail with probability < 1e-20: a static shape
# instead of a rejection loop.
_PROPOSALS = 16


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
    require(n >= 0, "n", n, ">= 0")
    boost = alpha < 1.0  # Gamma(a) = Gamma(a + 1) · U^(1/a): keeps Marsaglia–Tsang at shape >= 1
    log_g = _log_gamma_mt(alpha + 1.0 if boost else alpha, (2, n), generator, device)
    if boost:
        u = 1.0 - torch.rand(2, n, generator=generator, device=device)
        log_g = log_g + torch.log(u) / alpha
    return torch.sigmoid(log_g[0] - log_g[1]).float()


def randint(high: int, n: int, generator, device) -> torch.Tensor:
    return torch.randint(0, high, (n,), generator=generator, device=device)


# ---------------------------------------------------------------------------- boxes
def box_mask(y1, y2, x1, x2, h: int, w: int) -> torch.Tensor:
    """(..., H, W) bool mask of [y1, y2) × [x1, x2) for boxes of shape (...)."""
    r = torch.arange(h, device=y1.device)
    col = torch.arange(w, device=x1.device)
    in_r = (r >= y1[..., None]) & (r < y2[..., None])
    in_c = (col >= x1[..., None]) & (col < x2[..., None])
    return in_r[..., :, None] & in_c[..., None, :]


def centred_box(cy, cx, half_h, half_w, h: int, w: int):
    """Box [cy ± half_h) × [cx ± half_w) clipped at the border, as in both papers' code."""
    return (
        (cy - half_h).clamp(0, h),
        (cy + half_h).clamp(0, h),
        (cx - half_w).clamp(0, w),
        (cx + half_w).clamp(0, w),
    )



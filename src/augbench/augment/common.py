"""What every augmentation family shares: knob checks, Beta draws, bands and boxes, cached tables.

No global RNG anywhere: every draw takes an explicit ``generator`` living on the batch's device.

Every family is split in two (see :mod:`augbench.augment`): a *draw* that takes the generator and only
calls the random number functions (as few calls as possible), and a pure *apply*/*plan* that builds
masks and indices from those draws with static shapes and no host syncs. The second part compiles
under ``torch.compile(fullgraph=True)``; the first cannot (Dynamo has no way to trace a
``torch.Generator`` argument), so a captured step takes the draws as inputs."""

from __future__ import annotations

import functools
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


def beta_noise(alpha: float, n: int, generator, device):
    """The random numbers behind ``n`` Beta(α, α) draws, in as few calls as possible.

    α = 1: Beta(1, 1) is exactly U(0, 1), one ``rand(n)``. Otherwise Marsaglia–Tsang's proposals for
    two Gamma draws per value: normals ``z`` (2, n, P) and standard exponentials ``e`` (2, n, P + b),
    ``e = −log U``; when α < 1 the extra column (b = 1) is the boost's U of Gamma(α) = Gamma(α + 1)·U^(1/α).
    """
    check_alpha(alpha)
    require(n >= 0, "n", n, ">= 0")
    if alpha == 1.0:
        return torch.rand(n, generator=generator, device=device)
    z = torch.randn(2, n, _PROPOSALS, generator=generator, device=device)
    e = torch.empty(2, n, _PROPOSALS + (alpha < 1.0), device=device).exponential_(generator=generator)
    return z, e


def beta_from_noise(alpha: float, noise) -> torch.Tensor:
    """float32 Beta(α, α) draws from :func:`beta_noise`'s numbers (pure: compiles without graph breaks).

    α ≠ 1: G1 / (G1 + G2) for Gi ~ Gamma(α), computed as sigmoid(log G1 − log G2): for small α the
    Gamma draws underflow float32, their log ratio does not. Gamma(s ≥ 1) by Marsaglia–Tsang
    (d = s − 1/3, c = 1/√(9d), v = (1 + c·z)³, accept if v > 0 and log U < z²/2 + d − d·v + d·log v,
    then G = d·v), the first accepted of the static proposals (if none is, < 1e-20, the first
    proposal); the common factor d cancels in the ratio and is left out.
    """
    if alpha == 1.0:
        return noise.float()
    z, e = noise
    boost = alpha < 1.0
    d = alpha + 1.0 - 1.0 / 3.0 if boost else alpha - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    v = (z * c).add_(1.0).pow_(3)
    log_v = v.clamp_min(torch.finfo(v.dtype).tiny).log_()  # v <= 0 is rejected anyway
    # log U < z²/2 + d − d·v + d·log v  ⟺  e + d·(log v − v) + z²/2 > −d, with e = −log U
    slack = torch.addcmul(torch.add(e[..., :_PROPOSALS], log_v.sub(v), alpha=d), z, z, value=0.5)
    accept = (slack > -d) & (v > 0)
    first = accept.max(dim=-1, keepdim=True).indices  # max returns the first maximal index
    log_g = log_v.gather(-1, first).squeeze(-1)  # (2, n): log(G / d)
    if boost:
        log_g = torch.add(log_g, e[..., _PROPOSALS], alpha=-1.0 / alpha)  # + log(U) / α
    return torch.sigmoid(log_g[0] - log_g[1]).float()


def sample_beta(alpha: float, n: int, generator: torch.Generator, device) -> torch.Tensor:
    """float32 (n,) draws of Beta(alpha, alpha): :func:`beta_from_noise` of :func:`beta_noise`."""
    return beta_from_noise(alpha, beta_noise(alpha, n, generator, device))


def uniform_and_beta_noise(alpha: float, m: int, generator, device):
    """``rand(m)`` then :func:`beta_noise` ``(alpha, m)`` from the same generator: (U (m,), noise).

    For α = 1 the noise is uniform too, and both come from one ``rand(2, m)`` call: on the CPU the same
    stream as the two calls (the generator fills element after element), on a GPU a different but
    equally distributed one."""
    if alpha == 1.0:
        check_alpha(alpha)
        u = torch.rand(2, m, generator=generator, device=device)
        return u[0], u[1]
    return torch.rand(m, generator=generator, device=device), beta_noise(alpha, m, generator, device)


def randint(high: int, n: int, generator, device) -> torch.Tensor:
    return torch.randint(0, high, (n,), generator=generator, device=device)


def centres(sizes: tuple[int, int], shape: tuple[int, ...], generator, device) -> torch.Tensor:
    """Uniform pixel positions, (2, *shape) long: row i ~ randint(sizes[i]), drawn in that order.

    One call when both sizes agree (a square image: on the CPU the same stream as two calls), two calls
    and a stack otherwise."""
    if sizes[0] == sizes[1]:
        return torch.randint(0, sizes[0], (2, *shape), generator=generator, device=device)
    first = torch.randint(0, sizes[0], shape, generator=generator, device=device)
    return torch.stack([first, torch.randint(0, sizes[1], shape, generator=generator, device=device)])


def floor_uniform(u: torch.Tensor, count) -> torch.Tensor:
    """floor(U·count), uniform on {0, …, count − 1} for U ~ U[0, 1) float32 and integers 1 <= count < 2^24.

    Needs no clamp: float32 U is at most 1 − 2^-24, and for such counts the rounded product
    (1 − 2^-24)·count stays below count (checked in tests/test_aug_kernels.py)."""
    return (u * count).floor()


# ---------------------------------------------------------------------------- boxes
def band(centre, half, size: int) -> torch.Tensor:
    """(..., size) bool: pixel r is in the band when |r + 0.5 − centre| < half (centre, half: (...)).

    The box [a, a + s) of integers is the band around a + s/2 of half-width s/2, clipped at the border
    for free since r only runs over [0, size). Three ops (sub, abs, lt) for any number of bands."""
    r = pixel_centres(size, centre.device)
    half = half[..., None] if isinstance(half, torch.Tensor) else half
    return (r - centre[..., None]).abs() < half


def bands(centre, half, sizes: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`band` of stacked (2, ...) centres and half-widths, row i along an axis of ``sizes[i]``
    pixels: ((..., sizes[0]), (..., sizes[1])), one set of ops for both axes whatever the aspect."""
    b = band(centre, half, max(sizes))
    return b[0, ..., :sizes[0]], b[1, ..., :sizes[1]]


def outer(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(..., H, W) bool mask rows[..., :, None] & cols[..., None, :]."""
    return rows[..., :, None] & cols[..., None, :]


def box_mask(y1, y2, x1, x2, h: int, w: int) -> torch.Tensor:
    """(..., H, W) bool mask of [y1, y2) × [x1, x2) for boxes of shape (...): the explicit construction
    (with :func:`centred_box`) that :func:`bands` replaces; the tests' frozen CutMix reference uses it."""
    r = torch.arange(h, device=y1.device)
    col = torch.arange(w, device=x1.device)
    in_r = (r >= y1[..., None]) & (r < y2[..., None])
    in_c = (col >= x1[..., None]) & (col < x2[..., None])
    return outer(in_r, in_c)


def centred_box(cy, cx, half_h, half_w, h: int, w: int):
    """Box [cy ± half_h) × [cx ± half_w) clipped at the border, as in both papers' code."""
    return (
        (cy - half_h).clamp(0, h),
        (cy + half_h).clamp(0, h),
        (cx - half_w).clamp(0, w),
        (cx + half_w).clamp(0, w),
    )


# --------------------------------------------------------------------------- tables
def cached(fn):
    """Memoise a table builder on its (hashable) arguments: a table is built once per shape and device
    and never written to, so in eager mode it costs no kernel per step. Under torch.compile the builder
    itself is traced (it is pure) and the compiler folds it into the graph."""
    memo = functools.lru_cache(maxsize=64)(fn)

    @functools.wraps(fn)
    def table(*args):
        return fn(*args) if torch.compiler.is_compiling() else memo(*args)

    table.cache_clear = memo.cache_clear
    return table


@cached
def positions(size: int, device) -> torch.Tensor:
    """(size,) long 0, 1, …, size − 1: pixel indices along an axis."""
    return torch.arange(size, device=device)


@cached
def pixel_centres(size: int, device) -> torch.Tensor:
    """(size,) float32 0.5, 1.5, …: the centres of the pixels along an axis."""
    return torch.arange(0.5, size, 1.0, device=device)


@cached
def column(values: tuple, device, dtype=torch.float32) -> torch.Tensor:
    """(len(values), 1) constant: a knob per row of a stacked layout, e.g. per axis for :func:`bands`."""
    return torch.tensor([[v] for v in values], device=device, dtype=dtype)

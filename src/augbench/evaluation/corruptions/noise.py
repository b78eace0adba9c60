"""The noise family of make_cifar_c.py, with its CIFAR constants: pixels v/255 in float64, noise added,
clipped to [0, 1] and stored as uint8 by truncation. Every channel gets its own noise."""

from __future__ import annotations

import numpy as np

from augbench.evaluation.corruptions._core import corruption, to_u8, unit

GAUSSIAN_NOISE = (0.04, 0.06, 0.08, 0.09, 0.10)  # σ
SHOT_NOISE = (500, 250, 100, 75, 50)  # photons per unit intensity
IMPULSE_NOISE = (0.01, 0.02, 0.03, 0.05, 0.07)  # share of values flipped to 0 or 1
SPECKLE_NOISE = (0.06, 0.10, 0.12, 0.16, 0.20)  # σ of the multiplicative noise


@corruption(GAUSSIAN_NOISE)
def gaussian_noise(x, c, rng):
    """x + N(0, c²)."""
    x = unit(x)
    return to_u8(x + rng.normal(scale=c, size=x.shape))


@corruption(SHOT_NOISE)
def shot_noise(x, c, rng):
    """Poisson(x·c) / c."""
    return to_u8(rng.poisson(unit(x) * c) / c)


@corruption(IMPULSE_NOISE)
def impulse_noise(x, c, rng):
    """skimage's random_noise(mode='s&p', amount=c): each value is hit with probability c, and a hit
    value becomes 1 (salt) or 0 (pepper) with probability ½ each."""
    x = unit(x)
    hit = rng.random(x.shape) <= c
    salt = rng.random(x.shape) <= 0.5
    out = np.where(hit & salt, 1.0, x)
    return to_u8(np.where(hit & ~salt, 0.0, out))


@corruption(SPECKLE_NOISE)
def speckle_noise(x, c, rng):
    """x + x·N(0, c²)."""
    x = unit(x)
    return to_u8(x + x * rng.normal(scale=c, size=x.shape))

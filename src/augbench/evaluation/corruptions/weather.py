"""The weather family of make_cifar_c.py (fog, snow), with its CIFAR constants. Frost and spatter are
not here: see ``LEFT_OUT`` in the registry for why."""

from __future__ import annotations

import numpy as np

from augbench.evaluation.corruptions._core import (
    clipped_zoom, corruption, magick_motion_blur, to_u8, unit, unit32,
)

FOG = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))  # fog strength, plasma wibble decay
# snow: flake mean, σ, zoom, threshold, ImageMagick blur radius, blur σ, blend of the image with its brightened copy
SNOW = ((0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8))
PLASMA_SIZE = 32  # make_cifar_c.py's plasma map side (ImageNet-C uses 256)


def plasma_fractal(n: int, wibble_decay: float, rng: np.random.Generator, size: int = PLASMA_SIZE) -> np.ndarray:
    """(n, size, size) diamond-square height maps in [0, 1], make_cifar_c.py's ``plasma_fractal`` for
    n maps at once: each midpoint is the mean of its 4 neighbours (wrapping round) plus
    wibble·U(−wibble, wibble), wibble starting at 100 and divided by ``wibble_decay`` per level."""
    if size & (size - 1):
        raise ValueError(f"plasma map size must be a power of two, got {size}")
    m = np.empty((n, size, size))
    m[:, 0, 0] = 0
    step, wibble = size, 100.0

    def wibbled_mean(a):
        return a / 4 + wibble * rng.uniform(-wibble, wibble, a.shape)

    while step >= 2:
        half = step // 2
        corners = m[:, 0::step, 0::step]  # squares: their centres
        acc = corners + np.roll(corners, -1, axis=1)
        acc += np.roll(acc, -1, axis=2)
        m[:, half::step, half::step] = wibbled_mean(acc)
        centres, corners = m[:, half::step, half::step], m[:, 0::step, 0::step]  # diamonds: edge midpoints
        m[:, 0::step, half::step] = wibbled_mean((centres + np.roll(centres, 1, axis=1))
                                                 + (corners + np.roll(corners, -1, axis=2)))
        m[:, half::step, 0::step] = wibbled_mean((centres + np.roll(centres, 1, axis=2))
                                                 + (corners + np.roll(corners, -1, axis=1)))
        step //= 2
        wibble /= wibble_decay
    m -= m.min(axis=(1, 2), keepdims=True)
    return m / m.max(axis=(1, 2), keepdims=True)


@corruption(FOG)
def fog(x, c, rng):
    """x + strength·plasma (the same map on every channel), rescaled by max/(max + strength), the max
    taken over the whole image."""
    n, _, h, w = x.shape
    if h > PLASMA_SIZE or w > PLASMA_SIZE:
        raise ValueError(f"fog's CIFAR plasma map is {PLASMA_SIZE}×{PLASMA_SIZE}; images are {h}×{w}")
    x = unit(x)
    top = x.max(axis=(1, 2, 3), keepdims=True)
    x = x + c[0] * plasma_fractal(n, c[1], rng)[:, None, :h, :w]
    return to_u8(x * top / (top + c[0]))


def luma32(x: np.ndarray) -> np.ndarray:
    """cv2.cvtColor(RGB2GRAY) of float32 (N, 3, H, W) → (N, 1, H, W); a grey image is its own luma."""
    if x.shape[1] == 1:
        return x
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return r * np.float32(0.299) + g * np.float32(0.587) + b * np.float32(0.114)


@corruption(SNOW)
def snow(x, c, rng):
    """A layer of N(mean, σ²) flakes per image, zoomed, thresholded, stored as a uint8 grey image and
    motion-blurred by ImageMagick at an angle from U(−135°, −45°); the image is blended with
    max(x, 1.5·luma + 0.5) and the layer added twice (as is and rotated 180°)."""
    n, _, h, w = x.shape
    x = unit32(x)
    layer = clipped_zoom(rng.normal(loc=c[0], scale=c[1], size=(n, h, w)), c[2])
    layer[layer < c[3]] = 0
    flakes = (np.clip(layer, 0, 1) * 255).astype(np.uint8)[:, None]
    layer = unit(magick_motion_blur(flakes, c[4], c[5], rng.uniform(-135, -45, size=n)))
    x = c[6] * x + (1 - c[6]) * np.maximum(x, luma32(x) * 1.5 + 0.5)
    return to_u8(x + layer + layer[:, :, ::-1, ::-1])

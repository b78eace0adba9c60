"""The blur family of make_cifar_c.py, with its CIFAR constants. Each channel is blurred alike."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from augbench.evaluation.corruptions._core import (
    clipped_zoom, corruption, gaussian, magick_motion_blur, to_u8, unit,
)

GAUSSIAN_BLUR = (0.4, 0.6, 0.7, 0.8, 1.0)  # σ
GLASS_BLUR = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))  # σ, max Δ, iterations
DEFOCUS_BLUR = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))  # disk radius, its alias blur σ
MOTION_BLUR = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))  # ImageMagick radius, σ
ZOOM_BLUR = tuple(tuple(float(z) for z in np.arange(1, end, 0.01))  # np.arange's own float steps:
                  for end in (1.06, 1.11, 1.16, 1.21, 1.26))  # 7, 12, 16, 21 and 26 zoom factors


@corruption(GAUSSIAN_BLUR)
def gaussian_blur(x, c, rng):
    """skimage.filters.gaussian(σ = c) of every channel."""
    return to_u8(gaussian(unit(x), c))


def glass_shuffle(u: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """One pass of make_cifar_c.py's local pixel shuffle, vectorised.

    The original walks h = H−1 … 2 and, in each row, w = W−1 … 2, drawing (dx, dy) from
    randint(−1, 1) (so each is −1 or 0), and runs ``x[h, w], x[h', w'] = x[h', w'], x[h, w]``.
    On an (H, W, 3) array both sides are views, so that statement *copies* pixel (h', w') into
    (h, w) and leaves (h', w') as it was. The source (h', w') is never written before it is read
    (it is at or before (h, w) in raster order, and the walk runs backwards), so the pass is one gather:
    new[h, w] = old[h + dy, w + dx] for 2 ≤ h, w, every other pixel unchanged.
    ``dx``, ``dy``: (N, H, W) offsets in {−1, 0}; entries outside the walked region are ignored.
    """
    n, c, h, w = u.shape
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    walked = (rows >= 2) & (cols >= 2)
    src = (rows + dy * walked) * w + (cols + dx * walked)
    return np.take_along_axis(u.reshape(n, c, -1), src.reshape(n, 1, -1), axis=2).reshape(u.shape)


@corruption(GLASS_BLUR)
def glass_blur(x, c, rng):
    """Gaussian blur, stored as uint8 (truncated), the local shuffle ``iterations`` times, blur again."""
    sigma, max_delta, iterations = c
    if max_delta != 1:  # with Δ > 1 a source can be written before it is read: not one gather any more
        raise NotImplementedError("glass_blur is vectorised for the CIFAR constants (max Δ = 1) only")
    u = (gaussian(unit(x), sigma) * 255).astype(np.uint8)
    n, _, h, w = u.shape
    for _ in range(iterations):
        d = rng.integers(-max_delta, max_delta, size=(n, 2, h, w))
        u = glass_shuffle(u, d[:, 0], d[:, 1])
    return to_u8(gaussian(unit(u), sigma))


def _reflect101_correlate(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """cv2.filter2D's default: correlation, the border reflected without repeating the edge. (scipy skips
    weights below 2.2e-16, which cannot move a float64 sum of [0, 1] pixels.)"""
    return ndimage.correlate(x, weights, mode="mirror")


def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """make_cifar_c.py's ``disk``: the pixels within ``radius`` of the centre of a 17×17 grid, normalised,
    then cv2.GaussianBlur(3×3, σ = alias_blur) in float32; returned cropped to its non-zero support."""
    if radius > 8:
        raise NotImplementedError("disk radii above 8 (ImageNet-C's) are not needed for CIFAR")
    grid = np.arange(-8, 9)
    xx, yy = np.meshgrid(grid, grid)
    disk = ((xx ** 2 + yy ** 2) <= radius ** 2).astype(np.float32)
    disk /= disk.sum()
    taps = np.exp(-(np.arange(-1.0, 2.0) ** 2) / (2 * alias_blur ** 2))
    taps = (taps / taps.sum()).astype(np.float32)  # cv2.getGaussianKernel(3, σ, CV_32F)
    blurred = disk
    for axis in (1, 0):  # sepFilter2D: rows, then columns; reflect-101 border
        blurred = ndimage.correlate1d(blurred, taps, axis=axis, mode="mirror")
    r = int(np.abs(np.argwhere(blurred != 0) - 8).max())
    return blurred[8 - r:9 + r, 8 - r:9 + r]


@corruption(DEFOCUS_BLUR)
def defocus_blur(x, c, rng):
    """cv2.filter2D of every channel with the anti-aliased disk (float64 image, reflect-101 border)."""
    kernel = disk_kernel(*c).astype(np.float64)
    return to_u8(_reflect101_correlate(unit(x), kernel[None, None]))


@corruption(MOTION_BLUR)
def motion_blur(x, c, rng):
    """ImageMagick's motion blur (radius, σ) at an angle drawn per image from U(−45°, 45°), applied to
    the uint8 image (see ``magick_motion_blur``); the result is ImageMagick's uint8 output."""
    return magick_motion_blur(x, c[0], c[1], rng.uniform(-45, 45, size=len(x)))


@corruption(ZOOM_BLUR)
def zoom_blur(x, c, rng):
    """Mean of the image and its centre zooms by each factor (float32, as the original)."""
    x = unit(x).astype(np.float32)
    out = np.zeros_like(x)
    for z in c:
        out += clipped_zoom(x, z)
    return to_u8((x + out) / (len(c) + 1))

"""What the corruption families share: make_cifar_c.py's pixel conversions and rounding, and the
library operations it calls (skimage's Gaussian and HSV, scipy's zoom, ImageMagick's motion blur),
written once for whole (N, C, H, W) batches.

Each corruption is an ``impl(x, c, rng)`` on a uint8 numpy batch, ``c`` the severity's constants and
``rng`` a ``numpy.random.Generator``; ``corruption(constants)`` wraps it into the public
``fn(images, severity, rng) -> uint8 tensor``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from scipy import ndimage


def as_uint8(images) -> np.ndarray:
    """(N, C, H, W) uint8 numpy from a uint8 or [0, 1] float tensor/array. make_cifar_c.py always starts
    from a uint8 image, so float input is first rounded to the nearest of the 256 levels."""
    x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if x.ndim != 4:
        raise ValueError(f"corruptions take a batch (N, C, H, W), got shape {tuple(x.shape)}")
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"corruptions take uint8 or float images in [0, 1], got {x.dtype}")
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def unit(x: np.ndarray) -> np.ndarray:
    """``np.array(img) / 255.``: float64 in [0, 1]."""
    return x / 255.0


def unit32(x: np.ndarray) -> np.ndarray:
    """``np.array(img, dtype=np.float32) / 255.``: float32 in [0, 1]."""
    return x.astype(np.float32) / 255.0


def to_u8(x: np.ndarray) -> np.ndarray:
    """``np.uint8(np.clip(x, 0, 1) * 255)``, how make_cifar_c.py stores a result: truncated, not rounded."""
    return (np.clip(x, 0, 1) * 255).astype(np.uint8)


def gaussian(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """skimage.filters.gaussian (multichannel) over the last two axes: scipy's gaussian_filter with
    skimage's defaults (mode ``nearest``, truncate 4); sigma 0 leaves the image as it is."""
    sigmas = [0.0] * (x.ndim - 2) + [sigma, sigma]
    return ndimage.gaussian_filter(x, sigmas, mode=mode, truncate=truncate)


def _linear_zoom_matrix(size_in: int, size_out: int) -> np.ndarray:
    """(out, in) weights of scipy.ndimage.zoom(order=1) along one axis (grid_mode=False: output i
    samples input i·(in − 1)/(out − 1), corners on corners), in float64."""
    step = (size_in - 1) / (size_out - 1) if size_out > 1 else 1.0
    pos = np.arange(size_out) * step
    lo = np.minimum(np.floor(pos).astype(np.int64), size_in - 1)
    hi = np.minimum(lo + 1, size_in - 1)
    frac = pos - lo
    w = np.zeros((size_out, size_in))
    np.add.at(w, (np.arange(size_out), lo), 1.0 - frac)
    np.add.at(w, (np.arange(size_out), hi), frac)
    return w


@functools.lru_cache(maxsize=64)
def _clipped_zoom_matrix(h: int, zoom: float) -> torch.Tensor:
    """(h, h) float64: crop the centre ⌈h/zoom⌉, zoom it (scipy's output size, round(crop·zoom)), trim
    the centre h, as one linear map along an axis."""
    ch = int(np.ceil(h / zoom))
    top = (h - ch) // 2
    out = int(round(ch * zoom))
    trim = (out - h) // 2
    w = np.zeros((h, h))
    w[:, top:top + ch] = _linear_zoom_matrix(ch, out)[trim:trim + h]
    return torch.from_numpy(w)


def clipped_zoom(x: np.ndarray, zoom: float) -> np.ndarray:
    """make_cifar_c.py's ``clipped_zoom`` over the last two (square) axes: the centre ⌈H/zoom⌉ crop,
    scipy-zoomed (order 1) by ``zoom``, trimmed back to H×H; computed in float64 as two matrix
    products (columns, then rows), returned in x's dtype."""
    w = _clipped_zoom_matrix(x.shape[-1], float(zoom))
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
    zoomed = ((t @ w.T).transpose(-1, -2) @ w.T).transpose(-1, -2)
    return zoomed.numpy().astype(x.dtype)


# --- ImageMagick 6's MotionBlurImage (effect.c), which make_cifar_c.py calls through Wand -------------

QUANTUM = 257  # ImageMagick Q16: the 8-bit value v is the quantum 257·v


def magick_motion_blur(u8: np.ndarray, radius: float, sigma: float, angles: np.ndarray) -> np.ndarray:
    """MotionBlurImage(radius, sigma, angle) of each uint8 image (N, C, H, W), one angle (degrees) per
    image, returned as uint8 the way Wand's PNG round trip stores it.

    As in ImageMagick 6 (effect.c, gem.c): width = 2·⌈radius⌉ + 1 taps; tap i weighs exp(−i²/2σ²),
    normalised to sum 1; it reads the pixel at column x + ⌈i·cos θ − ½⌉, row y + ⌈i·sin θ − ½⌉, past the
    border the edge pixel (the default virtual-pixel method). The sum, in Q16 quanta, is rounded to a
    quantum (ClampToQuantum) and written to the 8-bit PNG as (q + 128) // 257 (ScaleQuantumToChar).
    """
    n, c, h, w = u8.shape
    width = int(2.0 * math.ceil(radius) + 1.0)
    taps = np.arange(width, dtype=np.float64)
    kernel = np.exp(-(taps * taps) / (2.0 * sigma * sigma)) / (math.sqrt(2.0 * math.pi) * sigma)
    total = 0.0
    for k in kernel:  # ImageMagick sums the weights in tap order
        total += k
    kernel = kernel / total
    rad = math.pi * np.asarray(angles, dtype=np.float64) / 180.0
    px, py = width * np.sin(rad), width * np.cos(rad)
    hyp = np.hypot(px, py)[:, None]
    dx = np.ceil(taps * py[:, None] / hyp - 0.5).astype(np.int64)  # (N, width) column offsets
    dy = np.ceil(taps * px[:, None] / hyp - 0.5).astype(np.int64)  # row offsets
    padded = np.pad(u8, ((0, 0), (0, 0), (width, width), (width, width)), mode="edge")
    wp = w + 2 * width
    flat = padded.reshape(n, c, -1)
    rows, cols = np.meshgrid(np.arange(h) + width, np.arange(w) + width, indexing="ij")
    base = (rows * wp + cols).reshape(1, -1)
    acc = np.zeros((n, c, h * w))
    for i in range(width):
        idx = base + (dy[:, i] * wp + dx[:, i])[:, None]
        acc += kernel[i] * (QUANTUM * np.take_along_axis(flat, idx[:, None, :], axis=2).astype(np.float64))
    q = np.where(acc <= 0.0, 0.0, np.where(acc >= 65535.0, 65535.0, np.floor(acc + 0.5)))
    return ((q.astype(np.int64) + 128) // QUANTUM).astype(np.uint8).reshape(n, c, h, w)


# --- skimage.color.rgb2hsv / hsv2rgb, channel axis 1 ----------------------------------------------------

def rgb2hsv(rgb: np.ndarray) -> np.ndarray:
    """skimage's rgb2hsv on (N, 3, H, W) float64, ties between maxima resolved as skimage does (blue,
    then green, then red)."""
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    v = rgb.max(axis=1)
    delta = v - rgb.min(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(delta == 0, 0.0, delta / v)
        h = np.where(r == v, (g - b) / delta, 0.0)
        h = np.where(g == v, 2.0 + (b - r) / delta, h)
        h = np.where(b == v, 4.0 + (r - g) / delta, h)
    h = np.where(delta == 0, 0.0, (h / 6.0) % 1.0)
    return np.stack([h, s, v], axis=1)


def hsv2rgb(hsv: np.ndarray) -> np.ndarray:
    """skimage's hsv2rgb on (N, 3, H, W) float64."""
    h, s, v = hsv[:, 0], hsv[:, 1], hsv[:, 2]
    hi = np.floor(h * 6)
    f = h * 6 - hi
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    sector = hi.astype(np.uint8) % 6  # 0..5: (v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)
    return np.stack([np.choose(sector, (v, q, p, p, t, v)), np.choose(sector, (t, v, v, q, p, p)),
                     np.choose(sector, (p, p, t, v, v, q))], axis=1)


# --- the public wrapper ----------------------------------------------------------------------------------

def as_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator or an int seed, got {type(rng).__name__}")


def corruption(constants):
    """Decorator: ``impl(x_u8, c, rng) -> uint8 ndarray`` becomes ``fn(images, severity, rng) -> uint8
    tensor`` (N, C, H, W) with ``fn.constants`` the five severities' constants of make_cifar_c.py."""
    def wrap(impl):
        @functools.wraps(impl)
        def fn(images, severity: int, rng) -> torch.Tensor:
            if severity not in range(1, len(constants) + 1):
                raise ValueError(f"{impl.__name__}: severity must be 1..{len(constants)}, got {severity}")
            x = as_uint8(images)
            out = impl(x, constants[severity - 1], as_rng(rng)) if len(x) else x.copy()
            return torch.from_numpy(np.ascontiguousarray(out, dtype=np.uint8))

        fn.constants = constants
        return fn

    return wrap

"""The digital family of make_cifar_c.py (brightness, contrast, saturate, elastic, pixelate, JPEG), with
its CIFAR constants."""

from __future__ import annotations

import io

import numpy as np
from scipy import ndimage

from augbench.evaluation.corruptions._core import (
    corruption, gaussian, hsv2rgb, rgb2hsv, to_u8, unit, unit32,
)

BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)  # added to HSV value
CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)  # factor on the distance from each channel's mean
SATURATE = ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2))  # HSV saturation · a + b
_S = 32  # make_cifar_c.py's IMSIZE: elastic's constants are fractions of it
ELASTIC = tuple((_S * a, _S * s, _S * d) for a, s, d in  # displacement scale α, its smoothing σ, affine jitter
                ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)))
PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)  # side of the downsampled image, as a fraction
JPEG_QUALITY = (80, 65, 58, 50, 40)


def _hsv_adjust(x: np.ndarray, channel: int, scale: float, shift: float) -> np.ndarray:
    """skimage rgb2hsv → clip(channel·scale + shift, 0, 1) → hsv2rgb, on float64 RGB (N, 3, H, W)."""
    hsv = rgb2hsv(x)
    hsv[:, channel] = np.clip(hsv[:, channel] * scale + shift, 0, 1)
    return hsv2rgb(hsv)


@corruption(BRIGHTNESS)
def brightness(x, c, rng):
    """HSV value + c. A grey image is treated as the RGB image with three equal channels, which the HSV
    round trip maps to clip(v + c, 0, 1), still grey."""
    x = unit(x)
    if x.shape[1] == 1:
        return to_u8(_hsv_adjust(np.repeat(x, 3, axis=1), 2, 1.0, c)[:, :1])
    return to_u8(_hsv_adjust(x, 2, 1.0, c))


@corruption(SATURATE)
def saturate(x, c, rng):
    """HSV saturation · c[0] + c[1]. RGB only: on grey images (saturation 0) it would paint them red."""
    if x.shape[1] != 3:
        raise ValueError(f"saturate is defined on RGB images; got {x.shape[1]} channel(s)")
    return to_u8(_hsv_adjust(unit(x), 1, c[0], c[1]))


@corruption(CONTRAST)
def contrast(x, c, rng):
    """(x − m)·c + m, m the mean of each channel of each image."""
    x = unit(x)
    means = x.mean(axis=(2, 3), keepdims=True)
    return to_u8((x - means) * c + means)


# --- elastic: cv2.getAffineTransform + cv2.warpAffine, then scipy's map_coordinates ---------------------

INTER_BITS = 5  # OpenCV samples warps at 1/32 pixel
AB_BITS = 10  # through 10-bit fixed-point coordinates


def _reflect101(i: np.ndarray, n: int) -> np.ndarray:
    """cv2.borderInterpolate(BORDER_REFLECT_101): ... 2 1 | 0 1 2 ... n−1 | n−2 ..."""
    if n == 1:
        return np.zeros_like(i)
    period = 2 * (n - 1)
    i = np.abs(i) % period
    return np.where(i >= n, period - i, i)


def warp_affine(img: np.ndarray, m: np.ndarray) -> np.ndarray:
    """cv2.warpAffine(img, M, (W, H), flags=INTER_LINEAR, borderMode=BORDER_REFLECT_101) of float32
    (N, C, H, W), one forward 2×3 map per image (N, 2, 3): M is inverted as OpenCV does (in float64),
    each destination pixel's source position rounded to 1/32 pixel through OpenCV's fixed point, and
    the four neighbours weighed in float32 by products of 1/32-step bilinear weights."""
    n, c, h, w = img.shape
    a, b, t0 = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
    d, e, t1 = m[:, 1, 0], m[:, 1, 1], m[:, 1, 2]
    det = a * e - b * d
    det = np.divide(1.0, det, out=np.zeros_like(det), where=det != 0)
    i00, i01, i10, i11 = e * det, b * -det, d * -det, a * det
    i02, i12 = -i00 * t0 - i01 * t1, -i10 * t0 - i11 * t1
    ys, xs = np.arange(h, dtype=np.float64)[None, :, None], np.arange(w, dtype=np.float64)[None, None, :]
    scale, half_step = 1 << AB_BITS, (1 << AB_BITS) >> (INTER_BITS + 1)

    def fixed(row_coef, const, col_coef):  # (X0 + adelta) >> (AB_BITS − INTER_BITS), X0 rounded per row
        x0 = np.rint((row_coef[:, None, None] * ys + const[:, None, None]) * scale).astype(np.int64)
        dx = np.rint(col_coef[:, None, None] * xs * scale).astype(np.int64)
        return (x0 + half_step + dx) >> (AB_BITS - INTER_BITS)

    sx, sy = fixed(i01, i02, i00), fixed(i11, i12, i10)
    tab = 1 << INTER_BITS
    fx, fy = (sx & (tab - 1)).astype(np.float32) / tab, (sy & (tab - 1)).astype(np.float32) / tab
    ix, iy = sx >> INTER_BITS, sy >> INTER_BITS
    x0, x1, y0, y1 = _reflect101(ix, w), _reflect101(ix + 1, w), _reflect101(iy, h), _reflect101(iy + 1, h)
    flat = img.reshape(n, c, -1)

    def at(yy, xx):
        return np.take_along_axis(flat, (yy * w + xx).reshape(n, 1, -1), axis=2).reshape(n, c, h, w)

    wy0, wy1, wx0, wx1 = (np.float32(1) - fy)[:, None], fy[:, None], (np.float32(1) - fx)[:, None], fx[:, None]
    return (at(y0, x0) * (wy0 * wx0) + at(y0, x1) * (wy0 * wx1)) + at(y1, x0) * (wy1 * wx0) + at(y1, x1) * (wy1 * wx1)


def affine_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """cv2.getAffineTransform: the (N, 2, 3) maps taking the 3 points ``src`` (3, 2) to ``dst`` (N, 3, 2)."""
    design = np.concatenate([src.astype(np.float64), np.ones((3, 1))], axis=1)
    return np.linalg.solve(design[None], dst.astype(np.float64)).transpose(0, 2, 1)


@corruption(ELASTIC)
def elastic_transform(x, c, rng):
    """A random affine map (the points (26, 26), (26, 6), (6, 6) jittered by U(−c[2], c[2])), then a
    displacement field of U(−1, 1) noise smoothed by a Gaussian (σ = c[1], reflect, truncate 3) and
    scaled by c[0], sampled by scipy's map_coordinates (order 1, reflect) in float32."""
    n, ch, h, w = x.shape
    img = unit32(x)
    centre, side = np.float32((h, w)) // 2, min(h, w) // 3
    src = np.float32([centre + side, [centre[0] + side, centre[1] - side], centre - side])
    dst = src + rng.uniform(-c[2], c[2], size=(n, 3, 2)).astype(np.float32)
    img = warp_affine(img, affine_from_points(src, dst))
    dx, dy = ((gaussian(rng.uniform(-1, 1, size=(n, h, w)), c[1], mode="reflect", truncate=3) * c[0])
              .astype(np.float32) for _ in range(2))
    nn, yy, xx = np.meshgrid(np.arange(n), np.arange(h), np.arange(w), indexing="ij")
    coords = (nn, yy + dy, xx + dx)
    out = np.stack([ndimage.map_coordinates(img[:, k], coords, order=1, mode="reflect") for k in range(ch)], axis=1)
    return to_u8(out)


# --- pixelate: PIL's Image.resize(..., BOX), in its integer arithmetic ----------------------------------

PIL_PRECISION_BITS = 22  # Pillow's 8-bit resampling: weights in fixed point with 22 fraction bits


def pil_box_weights(size_in: int, size_out: int) -> np.ndarray:
    """(out, in) int64 fixed-point weights of Pillow's BOX resampling along one axis (Resample.c's
    precompute_coeffs and normalize_coeffs_8bpc): output pixel i averages, with equal weight, the input
    pixels whose centres fall in its box; enlarging, that is the nearest input pixel."""
    scale = size_in / size_out
    filter_scale = max(scale, 1.0)
    support, inv = 0.5 * filter_scale, 1.0 / filter_scale
    w = np.zeros((size_out, size_in), dtype=np.int64)
    for i in range(size_out):
        centre = (i + 0.5) * scale
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), size_in)
        taps = [1.0 if -0.5 < (j - centre + 0.5) * inv <= 0.5 else 0.0 for j in range(lo, hi)]
        total = sum(taps)
        for j, k in zip(range(lo, hi), taps):
            w[i, j] = int(0.5 + (k / total if total else k) * (1 << PIL_PRECISION_BITS))
    return w


def _pil_pass(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One Pillow resampling pass along the last axis of uint8 ``x``: rounded, clipped to uint8. The
    sums stay below 2^31, so float64 products (BLAS) are exact integers."""
    acc = (x.astype(np.float64) @ weights.T.astype(np.float64)).astype(np.int64) + (1 << (PIL_PRECISION_BITS - 1))
    return np.clip(acc >> PIL_PRECISION_BITS, 0, 255).astype(np.uint8)


def pil_box_resize(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """PIL Image.resize((width, height), Image.BOX) of uint8 (N, C, H, W): horizontal pass, then vertical."""
    if width != x.shape[3]:
        x = _pil_pass(x, pil_box_weights(x.shape[3], width))
    if height != x.shape[2]:
        x = _pil_pass(x.swapaxes(2, 3), pil_box_weights(x.shape[2], height)).swapaxes(2, 3)
    return np.ascontiguousarray(x)


@corruption(PIXELATE)
def pixelate(x, c, rng):
    """BOX-resize to ⌊32·c⌋ pixels a side and BOX-resize back (Pillow's arithmetic, not torchvision's)."""
    _, _, h, w = x.shape
    return pil_box_resize(pil_box_resize(x, int(h * c), int(w * c)), h, w)


@corruption(JPEG_QUALITY)
def jpeg_compression(x, c, rng):
    """Saved by PIL as a JPEG of quality c (PIL's defaults: 4:2:0 chroma subsampling for RGB; a grey
    image is saved as a one-channel JPEG) and decoded by PIL. One image at a time: every image is its
    own JPEG file."""
    from PIL import Image  # Pillow comes with torchvision and matplotlib

    out = np.empty_like(x)
    for i, img in enumerate(x):
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0))).save(
            buf, format="JPEG", quality=int(c))
        buf.seek(0)
        with Image.open(buf) as decoded:
            arr = np.asarray(decoded)
        out[i] = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return out

"""The registry of procedural corruptions, what is left out and why, and seeded generation."""

from __future__ import annotations

import zlib

import numpy as np
import torch

from augbench.evaluation.corruptions import blur, digital, noise, weather
from augbench.evaluation.corruptions._core import as_uint8

# CIFAR-10-C's 15 benchmark corruptions and its 4 extras, in make_cifar_c.py's order
BENCHMARK_15 = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
                "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
                "jpeg_compression")
EXTRA_4 = ("speckle_noise", "gaussian_blur", "spatter", "saturate")

_FNS = (noise.gaussian_noise, noise.shot_noise, noise.impulse_noise, blur.defocus_blur, blur.glass_blur,
        blur.motion_blur, blur.zoom_blur, weather.snow, weather.fog, digital.brightness, digital.contrast,
        digital.elastic_transform, digital.pixelate, digital.jpeg_compression,
        noise.speckle_noise, blur.gaussian_blur, digital.saturate)
# name -> (fn(images, severity, rng) -> uint8 (N, C, H, W) tensor, the 5 severities' CIFAR constants)
CORRUPTIONS = {name: (fn, fn.constants) for name in BENCHMARK_15 + EXTRA_4
               for fn in _FNS if fn.__name__ == name}

# what is not generated procedurally, and why (the official .npy files are used when present)
LEFT_OUT = {
    "frost": "needs the frost photographs (frost1.png ... frost5.jpg) that ship with hendrycks/robustness; "
             "they are not available here, and another texture would be a different corruption",
    "spatter": "severities 1-3 are built from OpenCV operations with no faithful torch/numpy/scipy equivalent "
               "(Canny edges, the 5x5-mask approximate distanceTransform, equalizeHist, uint8-saturating "
               "filter2D); only severities 4-5 could be reproduced, and half of spatter is not spatter",
}
LEFT_OUT_GRAYSCALE = {
    "saturate": "changes HSV saturation, which grey images do not have (it is 0); severities 4-5 add "
                "0.1-0.2 to it and would paint grey images red",
}
assert set(CORRUPTIONS) | set(LEFT_OUT) == set(BENCHMARK_15 + EXTRA_4) and not set(CORRUPTIONS) & set(LEFT_OUT)

GEN_BLOCK = 1000  # images generated per random stream: results do not depend on the evaluation batch size


def left_out(channels: int) -> dict[str, str]:
    """What cannot be generated procedurally for images with ``channels`` channels, with reasons."""
    return dict(LEFT_OUT) | (dict(LEFT_OUT_GRAYSCALE) if channels == 1 else {})


def implemented(channels: int) -> list[str]:
    """The corruptions generated procedurally for ``channels``-channel images, in CIFAR-10-C's order."""
    skip = left_out(channels)
    return [name for name in CORRUPTIONS if name not in skip]


def block_rng(seed: int, name: str, severity: int, block: int) -> np.random.Generator:
    """The random stream of images [block·GEN_BLOCK, (block + 1)·GEN_BLOCK) for (seed, name, severity)."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode()), int(severity), int(block)])


def corrupt(images, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """``name`` at ``severity`` of uint8 (or [0, 1] float) images (N, C, H, W) → uint8 tensor, the same
    for the same (seed, name, severity) whatever the batch it is evaluated in."""
    if name not in CORRUPTIONS:
        why = LEFT_OUT.get(name)
        raise ValueError(f"corruption {name!r} is not generated procedurally: {why}" if why else
                         f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}")
    fn = CORRUPTIONS[name][0]
    x = as_uint8(images)
    parts = [fn(x[i:i + GEN_BLOCK], severity, block_rng(seed, name, severity, i // GEN_BLOCK))
             for i in range(0, len(x), GEN_BLOCK)]
    return torch.cat(parts) if parts else torch.from_numpy(x.copy())

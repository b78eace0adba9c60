"""CIFAR-10-C-style corruption robustness (Hendrycks & Dietterich, ``make_cifar_c.py``).

Procedural corruptions reimplement make_cifar_c.py with its CIFAR constants (not ImageNet-C's) on
(N, C, H, W) batches, severities 1-5: every ``CORRUPTIONS[name][0](images, severity, rng)`` takes
uint8 or [0, 1] float images and a ``numpy.random.Generator`` (or int seed) and returns uint8, clipped
and truncated as the original stores its results. On grey images (C = 1) each corruption works on the
one channel (brightness and snow's luma as on an RGB image of three equal channels), except those in
``LEFT_OUT_GRAYSCALE``; ``LEFT_OUT`` says why frost and spatter are not generated at all.

Fidelity notes: motion_blur and snow reimplement ImageMagick 6's MotionBlurImage (which the original
calls through Wand) from its source; ImageMagick is not installed here, so they were not compared pixel
for pixel with Wand's output. glass_blur keeps the original's local shuffle as it actually behaves (its
"swap" of two numpy views copies the neighbour, see ``blur.glass_shuffle``). Random numbers come from
numpy's Generator, not the legacy global stream: the images are the same distribution as CIFAR-10-C's,
never the same draws. The published files are used instead when ``<data root>/CIFAR-10-C`` exists.
"""

from augbench.evaluation.corruptions.benchmark import (
    OFFICIAL, SEVERITIES, corruption_accuracy, load_official, official_dir, plot_corruptions,
)
from augbench.evaluation.corruptions.registry import (
    BENCHMARK_15, CORRUPTIONS, EXTRA_4, GEN_BLOCK, LEFT_OUT, LEFT_OUT_GRAYSCALE, block_rng, corrupt, implemented,
    left_out,
)

__all__ = ["BENCHMARK_15", "CORRUPTIONS", "EXTRA_4", "GEN_BLOCK", "LEFT_OUT", "LEFT_OUT_GRAYSCALE", "OFFICIAL",
           "SEVERITIES", "block_rng", "corrupt", "corruption_accuracy", "implemented", "left_out",
           "load_official", "official_dir", "plot_corruptions"]

"""Regional dropout: parts of each image set to 0 after normalisation (the mean colour)."""

from __future__ import annotations

import math

import torch

from augbench.augment.common import box_mask, centred_box, require

# --------------------------------------------------------------------------- cutout
def cutout(x: torch.Tensor, *, n_holes: int, length: int, generator, per_sample: bool = True) -> torch.Tensor:
    """Cutout (DeVries & Taylor): zero ``n_holes`` squares of side ``length``.

    The centre is uniform over the whole image (so border holes are clipped smaller);
    0 is the mean colour after normalisation. per_sample=False shares the holes.
    """
    require(n_holes >= 0, "n_holes", n_holes, ">= 0")
    require(length > 0, "length", length, "> 0")
    n, _, h, w = x.shape
    m = n if per_sample else 1
    cy = torch.randint(0, h, (m, n_holes), generator=generator, device=x.device)
    cx = torch.randint(0, w, (m, n_holes), generator=generator, device=x.device)
    half = length // 2
    holes = box_mask(*centred_box(cy, cx, half, half, h, w), h, w)  # (M, holes, H, W)
    mask = holes.any(dim=1, keepdim=True)  # (M, 1, H, W); False when n_holes == 0
    return torch.where(mask, torch.zeros((), dtype=x.dtype, device=x.device), x)



# ------------------------------------------------------------------- random erasing
def random_erasing(x: torch.Tensor, *, prob: float = 0.5, area_min: float = 0.02, area_max: float = 0.4,
                   ratio_min: float = 0.3, attempts: int = 100, fill: str = "zero", generator) -> torch.Tensor:
    """Random Erasing (Zhong et al., zhunzhong07/Random-Erasing ``RandomErasing``), per image.

    The official code loops: erase with probability ``prob``; up to ``attempts`` times draw an area
    fraction U(area_min, area_max) and an aspect U(ratio_min, 1/ratio_min) (linear, not log-uniform
    as torchvision/timm), h = round(√(area·r)), w = round(√(area/r)), stop at the first h < H, w < W,
    then a top-left corner uniform over [0, H−h] × [0, W−w]. Here all attempts of all images are
    drawn at once and the first accepted one is picked: same distribution, static shapes, no syncs.
    ``fill="zero"`` is the mean colour after normalisation; ``"random"`` is per-pixel N(0, 1).
    """
    require(0.0 <= prob <= 1.0, "prob", prob, "in [0, 1]")
    require(0.0 < area_min <= area_max <= 1.0, "area_min, area_max", (area_min, area_max), "0 < min <= max <= 1")
    require(0.0 < ratio_min <= 1.0, "ratio_min", ratio_min, "in (0, 1]")
    require(attempts >= 1, "attempts", attempts, ">= 1")
    require(fill in ("zero", "random"), "fill", fill, "'zero' or 'random'")
    n, _, h, w = x.shape
    dev, g = x.device, generator
    erase = torch.rand(n, generator=g, device=dev) < prob
    area = (area_min + (area_max - area_min) * torch.rand(n, attempts, generator=g, device=dev)) * (h * w)
    ratio = ratio_min + (1.0 / ratio_min - ratio_min) * torch.rand(n, attempts, generator=g, device=dev)
    eh = torch.round(torch.sqrt(area * ratio)).long()  # torch.round and Python's round both round half to even
    ew = torch.round(torch.sqrt(area / ratio)).long()
    accept = (eh < h) & (ew < w)
    first = accept.to(torch.uint8).argmax(dim=1, keepdim=True)  # the first accepted attempt (0 if none)
    eh, ew = eh.gather(1, first).squeeze(1), ew.gather(1, first).squeeze(1)
    erase = erase & accept.any(dim=1)  # no attempt accepted: unchanged, as the official loop
    # inclusive uniform corner: floor(U·(count)), clamped against U·count rounding up to count in float32
    y1 = (torch.rand(n, generator=g, device=dev) * (h - eh + 1)).long().clamp_max(h - eh)
    x1 = (torch.rand(n, generator=g, device=dev) * (w - ew + 1)).long().clamp_max(w - ew)
    mask = box_mask(y1, y1 + eh, x1, x1 + ew, h, w) & erase[:, None, None]
    if fill == "random":
        value = torch.randn(x.shape, generator=g, device=dev, dtype=x.dtype)
    else:
        value = torch.zeros((), dtype=x.dtype, device=dev)
    return torch.where(mask[:, None], value, x)


# ------------------------------------------------------------------- hide-and-seek
def hide_and_seek(x: torch.Tensor, *, grid_sizes, hide_prob: float = 0.5, generator) -> torch.Tensor:
    """Hide-and-Seek (Singh & Lee, kkanshul/Hide-and-Seek ``hide_patch``), per image.

    Each image draws a grid size s uniformly from ``grid_sizes``: s is the side in pixels of a
    square cell, the grid starts at the top-left corner and cells at the right/bottom border are
    partial (as the official loop over range(0, H, s)); s = 0 hides nothing. Every cell is hidden
    (set to 0, the mean after normalisation) independently with probability ``hide_prob``.
    Batched: one cell-index map per candidate size, Bernoulli draws for the largest cell count,
    and each image reads its own map.
    """
    sizes = [int(s) for s in grid_sizes]
    require(len(sizes) > 0 and all(s >= 0 for s in sizes), "grid_sizes", sizes, "a non-empty list of ints >= 0")
    require(0.0 <= hide_prob <= 1.0, "hide_prob", hide_prob, "in [0, 1]")
    n, _, h, w = x.shape
    dev, g = x.device, generator
    cells = [-(-h // s) * -(-w // s) if s else 0 for s in sizes]
    none = max(cells)  # index of an extra, never-hidden cell: where s = 0 points
    rows, cols = torch.arange(h, device=dev), torch.arange(w, device=dev)
    maps = torch.stack([(rows[:, None] // s) * -(-w // s) + cols[None, :] // s if s
                        else torch.full((h, w), none, device=dev, dtype=torch.long) for s in sizes])
    choice = torch.randint(0, len(sizes), (n,), generator=g, device=dev)
    hide = torch.rand(n, none + 1, generator=g, device=dev) < hide_prob
    hide[:, none] = False  # a fresh tensor of ours, not an input
    mask = hide.gather(1, maps[choice].view(n, h * w)).view(n, 1, h, w)
    return torch.where(mask, torch.zeros((), dtype=x.dtype, device=dev), x)


# ------------------------------------------------------------------------- gridmask
def gridmask(x: torch.Tensor, *, d1: int, d2: int, ratio: float, prob: float, mode: int = 1,
             generator) -> torch.Tensor:
    """GridMask (Chen et al., akuxcw/GridMask ``grid.py`` Grid) without rotation, per image.

    With probability ``prob`` an image draws a unit d ~ randint[d1, d2), l = ceil(d·ratio) and
    offsets δy, δx ~ randint[0, d). Official convention: stripes [δ + k·d, δ + k·d + l) of length l
    (``ratio`` is the *kept* fraction of the unit side in mode 1) are zeroed along both axes; mode 1
    inverts that, so the dropped set is the squares of side d − l between the stripes:
    pixel (i, j) dropped iff (i − δy) mod d >= l and (j − δx) mod d >= l; mode 0 drops the stripes.
    The official mask is centre-cropped from a larger one: that only shifts δ, uniform mod d anyway.
    0 is the mean after normalisation. The epoch ramp of ``prob`` is the callback's.
    """
    require(1 <= d1 < d2, "d1, d2", (d1, d2), "1 <= d1 < d2")
    require(0.0 < ratio < 1.0, "ratio", ratio, "in (0, 1)")
    require(0.0 <= prob <= 1.0, "prob", prob, "in [0, 1]")
    require(mode in (0, 1), "mode", mode, "0 or 1")
    n, _, h, w = x.shape
    dev, g = x.device, generator
    apply = torch.rand(n, generator=g, device=dev) < prob
    d = torch.randint(d1, d2, (n,), generator=g, device=dev)
    # l from Python floats exactly as the official math.ceil(d * ratio) (float32 could differ by 1)
    l = torch.tensor([math.ceil(k * ratio) for k in range(d1, d2)], device=dev)[d - d1]
    dy = (torch.rand(n, generator=g, device=dev) * d).long().clamp_max(d - 1)
    dx = (torch.rand(n, generator=g, device=dev) * d).long().clamp_max(d - 1)
    in_r = (torch.arange(h, device=dev) - dy[:, None]).remainder(d[:, None]) >= l[:, None]  # (N, H)
    in_c = (torch.arange(w, device=dev) - dx[:, None]).remainder(d[:, None]) >= l[:, None]  # (N, W)
    squares = in_r[:, :, None] & in_c[:, None, :]
    mask = (squares if mode == 1 else ~squares) & apply[:, None, None]
    return torch.where(mask[:, None], torch.zeros((), dtype=x.dtype, device=dev), x)

"""Regional dropout: parts of each image set to 0 after normalisation (the mean colour).

Each family is a draw (the generator's calls, nothing else) and an apply (pure: static shapes, no host
syncs, capturable); the public function is the two in a row."""

from __future__ import annotations

import math

import torch

from augbench.augment.common import bands, cached, centres, column, floor_uniform, outer, positions, require


def zero_where(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x with the pixels of ``mask`` (broadcast to x) set to 0, the mean colour: a fresh tensor, one kernel."""
    return x.masked_fill(mask, 0)


# --------------------------------------------------------------------------- cutout
def cutout_draw(n: int, h: int, w: int, *, n_holes: int, per_sample: bool = True, generator, device) -> dict:
    """Hole centres uniform over the whole image: ``centre`` (2, M, holes), row 0 y, row 1 x."""
    require(n_holes >= 0, "n_holes", n_holes, ">= 0")
    return {"centre": centres((h, w), (n if per_sample else 1, n_holes), generator, device)}


def cutout_apply(x: torch.Tensor, *, length: int, centre: torch.Tensor) -> torch.Tensor:
    """Zero the squares [c − length//2, c + length//2) around each centre, clipped at the border."""
    require(length > 0, "length", length, "> 0")
    _, _, h, w = x.shape
    rows, cols = bands(centre, length // 2, (h, w))
    holes = outer(rows, cols)  # (M, holes, H, W)
    mask = holes if holes.shape[1] == 1 else holes.any(dim=1, keepdim=True)  # False when n_holes == 0
    return zero_where(x, mask)


def cutout(x: torch.Tensor, *, n_holes: int, length: int, generator, per_sample: bool = True) -> torch.Tensor:
    """Cutout (DeVries & Taylor): zero ``n_holes`` squares of side ``length``.

    The centre is uniform over the whole image (so border holes are clipped smaller);
    0 is the mean colour after normalisation. per_sample=False shares the holes.
    """
    require(n_holes >= 0, "n_holes", n_holes, ">= 0")
    require(length > 0, "length", length, "> 0")
    n, _, h, w = x.shape
    draw = cutout_draw(n, h, w, n_holes=n_holes, per_sample=per_sample, generator=generator, device=x.device)
    return cutout_apply(x, length=length, **draw)


# ------------------------------------------------------------------- random erasing
def random_erasing_draw(shape, *, attempts: int = 100, fill: str = "zero", generator, device) -> dict:
    """All uniforms of all attempts of all images in one call, ``u`` (N·(3 + 2·attempts),), laid out as
    the five draws of the per-image loop's batched form: erase? (N), areas (N, attempts), aspects
    (N, attempts), corner y (N), corner x (N); plus ``noise`` N(0, 1) of the batch's ``shape`` for
    fill="random"."""
    require(attempts >= 1, "attempts", attempts, ">= 1")
    draw = {"u": torch.rand(shape[0] * (3 + 2 * attempts), generator=generator, device=device)}
    if fill == "random":
        draw["noise"] = torch.randn(tuple(shape), generator=generator, device=device)
    return draw


def random_erasing_apply(x: torch.Tensor, *, prob: float, area_min: float, area_max: float, ratio_min: float,
                         u: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """The first accepted attempt of each image (see :func:`random_erasing`), erased with probability ``prob``."""
    n, _, h, w = x.shape
    attempts = (u.shape[0] // n - 3) // 2
    erase_u, tries, corner_u = u[:n], u[n:n * (1 + 2 * attempts)].view(2, n, attempts), u[-2 * n:].view(2, n)
    area = (area_min + (area_max - area_min) * tries[0]) * (h * w)  # (N, attempts) pixels
    ratio = ratio_min + (1.0 / ratio_min - ratio_min) * tries[1]  # aspect h/w
    # heights √(area·r), widths √(area/r), rounded half to even as Python's round
    sides = torch.stack([area * ratio, area / ratio]).sqrt_().round_()  # (2, N, attempts)
    fits = (sides < column((h, w), x.device)[..., None]).all(dim=0)
    # the first attempt that fits (0 if none: then not erased); uint8, as Inductor's C++ code for a max
    # over bool with a vector tail fails to compile (torch 2.15, attempts=100)
    any_fit, first = fits.to(torch.uint8).max(dim=1)
    erase = erase_u < any_fit * prob  # U < prob, and an attempt fits
    side = sides.gather(2, first.view(1, n, 1).expand(2, n, 1)).squeeze(2) * erase  # (2, N); 0: not erased
    corner = floor_uniform(corner_u, column((h + 1, w + 1), x.device) - side)  # inclusive [0, H − h] × [0, W − w]
    rows, cols = bands(torch.add(corner, side, alpha=0.5), side * 0.5, (h, w))  # [corner, corner + side)
    mask = outer(rows, cols)[:, None]
    if noise is not None:
        return torch.where(mask, noise.to(x.dtype), x)
    return zero_where(x, mask)


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
    draw = random_erasing_draw(x.shape, attempts=attempts, fill=fill, generator=generator, device=x.device)
    return random_erasing_apply(x, prob=prob, area_min=area_min, area_max=area_max, ratio_min=ratio_min, **draw)


# ------------------------------------------------------------------- hide-and-seek
def _cells(s: int, h: int, w: int) -> int:
    return -(-h // s) * -(-w // s) if s else 0


@cached
def hide_and_seek_tables(sizes: tuple[int, ...], hide_prob: float, h: int, w: int, device):
    """(cell maps (S, H·W) long, thresholds (cells + 1,)): for each candidate size the cell index of every
    pixel (cells of side s from the top-left corner, partial at the right/bottom border); s = 0 points
    at an extra cell whose threshold is 0, so it is never hidden (U < 0 never holds)."""
    none = max(_cells(s, h, w) for s in sizes)
    rows, cols = torch.arange(h, device=device), torch.arange(w, device=device)
    maps = torch.stack([(rows[:, None] // s) * -(-w // s) + cols[None, :] // s if s
                        else torch.full((h, w), none, device=device, dtype=torch.long) for s in sizes])
    threshold = torch.full((none + 1,), float(hide_prob), device=device)
    threshold[none] = 0.0
    return maps.view(len(sizes), h * w), threshold


def hide_and_seek_draw(n: int, h: int, w: int, *, grid_sizes, generator, device) -> dict:
    """Each image's size index ``choice`` (the first draw), then ``u``: one uniform per cell of the
    largest grid, plus one for the never-hidden cell."""
    sizes = [int(s) for s in grid_sizes]
    choice = torch.randint(0, len(sizes), (n,), generator=generator, device=device)
    return {"choice": choice, "u": torch.rand(n, max(_cells(s, h, w) for s in sizes) + 1, generator=generator,
                                              device=device)}


def hide_and_seek_apply(x: torch.Tensor, *, grid_sizes, hide_prob: float, choice: torch.Tensor,
                        u: torch.Tensor) -> torch.Tensor:
    """Hide every cell whose uniform is below ``hide_prob``, each image reading its own size's cell map."""
    n, _, h, w = x.shape
    maps, threshold = hide_and_seek_tables(tuple(int(s) for s in grid_sizes), float(hide_prob), h, w, x.device)
    mask = (u < threshold).gather(1, maps[choice]).view(n, 1, h, w)
    return zero_where(x, mask)


def hide_and_seek(x: torch.Tensor, *, grid_sizes, hide_prob: float = 0.5, generator) -> torch.Tensor:
    """Hide-and-Seek (Singh & Lee, kkanshul/Hide-and-Seek ``hide_patch``), per image.

    Each image draws a grid size s uniformly from ``grid_sizes``: s is the side in pixels of a
    square cell, the grid starts at the top-left corner and cells at the right/bottom border are
    partial (as the official loop over range(0, H, s)); s = 0 hides nothing. Every cell is hidden
    (set to 0, the mean after normalisation) independently with probability ``hide_prob``.
    Batched: one cell-index map per candidate size (a cached table), a uniform per cell of the
    largest grid, and each image reads its own map.
    """
    sizes = [int(s) for s in grid_sizes]
    require(len(sizes) > 0 and all(s >= 0 for s in sizes), "grid_sizes", sizes, "a non-empty list of ints >= 0")
    require(0.0 <= hide_prob <= 1.0, "hide_prob", hide_prob, "in [0, 1]")
    n, _, h, w = x.shape
    draw = hide_and_seek_draw(n, h, w, grid_sizes=sizes, generator=generator, device=x.device)
    return hide_and_seek_apply(x, grid_sizes=sizes, hide_prob=hide_prob, **draw)


# ------------------------------------------------------------------------- gridmask
@cached
def gridmask_kept(d2: int, ratio: float, device) -> torch.Tensor:
    """(d2,) long: l = ceil(d·ratio) for every d < d2, from Python floats exactly as the official
    ``math.ceil(d * ratio)`` (float32 could differ by 1)."""
    return torch.tensor([math.ceil(k * ratio) for k in range(d2)], device=device)


def gridmask_draw(n: int, *, d1: int, d2: int, prob: float, generator, device, rotate: int = 0) -> dict:
    """Per image: applied? (U < prob), the unit d ~ randint[d1, d2), and the two offsets' uniforms
    ``u`` (2, N), row 0 for y, row 1 for x (the stream of three calls rand, randint, rand, rand); with
    ``rotate`` > 1 also the angle r ~ randint[0, rotate) in degrees (a fourth call; the official
    ``np.random.randint(rotate)``, so rotate 0 or 1 is no rotation and draws nothing more)."""
    require(1 <= d1 < d2, "d1, d2", (d1, d2), "1 <= d1 < d2")
    require(0.0 <= prob <= 1.0, "prob", prob, "in [0, 1]")
    apply = torch.rand(n, generator=generator, device=device) < prob
    d = torch.randint(d1, d2, (n,), generator=generator, device=device)
    draw = {"apply": apply, "d": d, "u": torch.rand(2, n, generator=generator, device=device)}
    if rotate > 1:
        draw["angle"] = torch.randint(0, rotate, (n,), generator=generator, device=device)
    return draw


def gridmask_apply(x: torch.Tensor, *, d2: int, ratio: float, mode: int = 1, apply: torch.Tensor, d: torch.Tensor,
                   u: torch.Tensor, angle: torch.Tensor | None = None) -> torch.Tensor:
    """Drop the squares (mode 1) or the stripes (mode 0) of each image's grid (see :func:`gridmask`),
    the grid turned by ``angle`` degrees when given."""
    require(mode in (0, 1), "mode", mode, "0 or 1")
    n, _, h, w = x.shape
    kept = gridmask_kept(d2, float(ratio), x.device)[d]  # l per image
    offset = floor_uniform(u, d)  # (2, N): δy, δx uniform on [0, d)
    if angle is not None:
        square = rotated_squares(angle, offset, d, kept, h, w)
        mask = (square if mode == 1 else ~square) & apply[:, None, None]
        return zero_where(x, mask[:, None])
    r = positions(max(h, w), x.device)
    dropped = (r - offset[..., None]).remainder(d[:, None]) >= kept[:, None]  # (2, N, L): outside the kept stripe
    rows, cols = dropped[0, :, :h], dropped[1, :, :w]
    if mode == 1:  # the squares between the stripes; an image not applied drops no row
        mask = outer(rows & apply[:, None], cols)
    else:  # the stripes: the complement of the squares
        mask = ~outer(rows, cols) & apply[:, None, None]
    return zero_where(x, mask[:, None])


def rotated_squares(angle, offset, d, kept, h: int, w: int) -> torch.Tensor:
    """(N, H, W) bool: pixel (i, j) lies in a square of the grid turned counter-clockwise by ``angle``
    degrees, as the official code turns its mask with PIL's ``Image.rotate(r)`` (nearest neighbour):
    each output pixel centre is turned back by r about the centre of the official square canvas of side
    ceil(√(h² + w²)), from which the image is the centred crop, and reads the unturned grid at the
    pixel it lands in. The canvas is large enough that no pixel of the crop reads outside it."""
    side = math.ceil(math.sqrt(h * h + w * w))
    cy, cx = side / 2 - (side - h) // 2, side / 2 - (side - w) // 2  # the canvas centre, in crop pixels
    theta = angle.float() * (math.pi / 180)
    cos, sin = theta.cos()[:, None, None], theta.sin()[:, None, None]
    y = (positions(h, angle.device) + 0.5 - cy).float()[None, :, None]
    x = (positions(w, angle.device) + 0.5 - cx).float()[None, None, :]
    src_y = (sin * x + cos * y + cy).floor()  # PIL's inverse map: output pixel centre -> source point
    src_x = (cos * x - sin * y + cx).floor()
    dn, ln = d[:, None, None], kept[:, None, None]
    return (((src_y - offset[0, :, None, None]).remainder(dn) >= ln)
            & ((src_x - offset[1, :, None, None]).remainder(dn) >= ln))


def gridmask(x: torch.Tensor, *, d1: int, d2: int, ratio: float, prob: float, mode: int = 1, rotate: int = 0,
             generator) -> torch.Tensor:
    """GridMask (Chen et al., akuxcw/GridMask ``grid.py`` Grid), per image.

    With probability ``prob`` an image draws a unit d ~ randint[d1, d2), l = ceil(d·ratio) and
    offsets δy, δx ~ randint[0, d). Official convention: stripes [δ + k·d, δ + k·d + l) of length l
    (``ratio`` is the *kept* fraction of the unit side in mode 1) are zeroed along both axes; mode 1
    inverts that, so the dropped set is the squares of side d − l between the stripes:
    pixel (i, j) dropped iff (i − δy) mod d >= l and (j − δx) mod d >= l; mode 0 drops the stripes.
    The official mask is centre-cropped from a larger one: that only shifts δ, uniform mod d anyway.
    With ``rotate`` > 1 the grid is turned by r ~ randint[0, rotate) degrees (:func:`rotated_squares`).
    0 is the mean after normalisation. The epoch ramp of ``prob`` is the callback's.
    """
    require(1 <= d1 < d2, "d1, d2", (d1, d2), "1 <= d1 < d2")
    require(0.0 < ratio < 1.0, "ratio", ratio, "in (0, 1)")
    require(0.0 <= prob <= 1.0, "prob", prob, "in [0, 1]")
    require(mode in (0, 1), "mode", mode, "0 or 1")
    require(rotate >= 0, "rotate", rotate, ">= 0")
    draw = gridmask_draw(x.shape[0], d1=d1, d2=d2, prob=prob, generator=generator, device=x.device, rotate=rotate)
    return gridmask_apply(x, d2=d2, ratio=ratio, mode=mode, **draw)

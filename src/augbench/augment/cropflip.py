"""baseline+: random crop with black padding and horizontal flip, per image, in one gather."""

from __future__ import annotations

import torch

from augbench.augment.common import cached, column, require

_LOW = 1 << 24  # a float32 uniform is the low 24 bits of a 32-bit draw, times 2^-24


@cached
def crop_table(h: int, w: int, padding: int, flip: bool, device) -> torch.Tensor:
    """(2p + 1, 2p + 1, 2 or 1, H·W) long: for a crop corner (top, left) in the padded image and a flip
    index (0: flipped, as U < 0.5; 1: not), the source of every output pixel in the flattened image,
    H·W for a pixel of the padding (the fill value is appended there)."""
    p, side = padding, 2 * padding + 1
    offsets = torch.arange(side, device=device) - p
    rows = offsets[:, None] + torch.arange(h, device=device)  # (side, H) source rows, maybe outside
    cols = torch.arange(w, device=device)
    cols = torch.stack([cols.flip(0), cols] if flip else [cols])  # flipped: read the crop's columns backwards
    cols = offsets[:, None, None] + cols  # (side, 2 or 1, W)
    inside = ((rows >= 0) & (rows < h))[:, None, None, :, None] & ((cols >= 0) & (cols < w))[None, :, :, None, :]
    src = rows[:, None, None, :, None] * w + cols[None, :, :, None, :]  # (top, left, flip, H, W)
    return torch.where(inside, src, h * w).flatten(-2)


def crop_flip_draw(n: int, *, padding: int, flip: bool = True, generator, device) -> dict:
    """One ``randint`` call for the whole batch: ``r`` (3, N) (2, N without the flip).

    Rows 0 and 1 modulo 2p + 1 are each image's crop corner (top, left) and bit 23 of row 2 its flip:
    on the CPU exactly the three draws ``randint(2p + 1, N)``, ``randint(2p + 1, N)``, ``rand(N) < 0.5``
    of a per-image loop (and of this function's earlier versions), since ``randint`` keeps a 32-bit
    draw modulo its range and ``rand`` its low 24 bits, and (2p + 1)·2^24 is a multiple of both. Every
    outcome is uniform and independent on any device."""
    require(padding >= 0, "padding", padding, ">= 0")
    side = 2 * padding + 1
    if not flip:
        return {"r": torch.randint(0, side, (2, n), generator=generator, device=device)}
    high = side * _LOW if side * _LOW < 1 << 32 else side * 2  # (paddings over 127: another, equal law)
    return {"r": torch.randint(0, high, (3, n), generator=generator, device=device)}


def crop_flip_apply(x: torch.Tensor, *, padding: int, fill: torch.Tensor, r: torch.Tensor,
                    flip: bool = True) -> torch.Tensor:
    """The crops of :func:`crop_flip_draw`: the outcomes decoded, a table lookup, the fill appended as
    pixel H·W, one gather (the output is exactly a padded, shifted, maybe flipped copy of each image)."""
    n, c, h, w = x.shape
    require(tuple(fill.shape) == (c,), "fill.shape", tuple(fill.shape), f"({c},)")
    side, table = 2 * padding + 1, crop_table(h, w, padding, flip, x.device)
    if flip:  # (top, left, U >= 0.5): rows 0-1 modulo the side, bit 23 of row 2 (bit 0 for huge paddings)
        low, half = (_LOW, _LOW // 2) if side * _LOW < 1 << 32 else (2, 1)
        r = r.remainder(column((side, side, low), x.device, torch.long)).div(
            column((1, 1, half), x.device, torch.long), rounding_mode="floor")
        src = table[r[0], r[1], r[2]]  # (N, H·W)
    else:
        src = table[r[0], r[1], 0]
    padded = torch.cat([x.reshape(n, c, h * w), fill.to(x).view(1, c, 1).expand(n, c, 1)], 2)
    return padded.gather(2, src[:, None, :].expand(n, c, h * w)).view(n, c, h, w)


# ------------------------------------------------------------------------ baseline+
def crop_flip(x: torch.Tensor, *, padding: int, fill: torch.Tensor, generator, flip: bool = True) -> torch.Tensor:
    """RandomCrop(H, padding) + RandomHorizontalFlip(0.5), each image its own offset and flip.

    ``fill`` (C,) is the normalised value of black (-mean/std): padding happens after
    normalisation, so padding with 0 would be mid-grey, not black.
    """
    require(padding >= 0, "padding", padding, ">= 0")
    require(tuple(fill.shape) == (x.shape[1],), "fill.shape", tuple(fill.shape), f"({x.shape[1]},)")
    draw = crop_flip_draw(x.shape[0], padding=padding, flip=flip, generator=generator, device=x.device)
    return crop_flip_apply(x, padding=padding, fill=fill, flip=flip, **draw)

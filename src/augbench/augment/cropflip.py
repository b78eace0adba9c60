"""baseline+: random crop with black padding and horizontal flip, per image, in one gather."""

from __future__ import annotations

import torch

from augbench.augment.common import randint, require

# ------------------------------------------------------------------------ baseline+
def crop_flip(x: torch.Tensor, *, padding: int, fill: torch.Tensor, generator, flip: bool = True) -> torch.Tensor:
    """RandomCrop(H, padding) + RandomHorizontalFlip(0.5), each image its own offset and flip.

    ``fill`` (C,) is the normalised value of black (-mean/std): padding happens after
    normalisation, so padding with 0 would be mid-grey, not black.
    """
    require(padding >= 0, "padding", padding, ">= 0")
    n, c, h, w = x.shape
    require(tuple(fill.shape) == (c,), "fill.shape", tuple(fill.shape), f"({c},)")
    p = padding
    # Top-left corner in the padded image, uniform in [0, 2p]² == offset in [-p, p]².
    top = randint(2 * p + 1, n, generator, x.device)
    left = randint(2 * p + 1, n, generator, x.device)
    rows = top[:, None] - p + torch.arange(h, device=x.device)  # (N, H) source rows, maybe outside
    cols = torch.arange(w, device=x.device).expand(n, w)
    if flip:
        flipped = torch.rand(n, generator=generator, device=x.device) < 0.5
        cols = torch.where(flipped[:, None], cols.flip(-1), cols)  # flip the crop: read columns backwards
    cols = left[:, None] - p + cols  # (N, W)
    # One gather from the unpadded image; pixels that fall in the padding become `fill`. No padded
    # copy and no 4-D advanced indexing: this is the hot path of every regime but baseline.
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]  # (N, H, W)
    src = rows.clamp(0, h - 1)[:, :, None] * w + cols.clamp(0, w - 1)[:, None, :]
    out = x.reshape(n, c, h * w).gather(2, src.view(n, 1, h * w).expand(n, c, h * w)).view(n, c, h, w)
    return torch.where(inside[:, None], out, fill.to(x).view(1, c, 1, 1))



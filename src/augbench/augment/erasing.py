"""Regional dropout: parts of each image set to 0 after normalisation (the mean colour)."""

from __future__ import annotations

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



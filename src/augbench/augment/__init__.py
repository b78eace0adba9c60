"""Batched, device-side data augmentation, one module per family (see REFERENCE.md, "Augmentation semantics").

Every function works on a whole normalised batch ``x`` (N×C×H×W float) at once:
no per-image Python loops, no global RNG (all draws use the explicit ``generator``,
which must live on ``x.device``), no in-place writes into the inputs, fixed shapes
and no host syncs.
"""

from augbench.augment.common import check_alpha, check_prob, sample_beta
from augbench.augment.cropflip import crop_flip
from augbench.augment.erasing import cutout, gridmask, hide_and_seek, random_erasing
from augbench.augment.mixing import cutmix, cutmix_plan, mixup, mixup_cutmix, ricap, ricap_draw, ricap_patch, two_partners

__all__ = ["sample_beta", "check_alpha", "check_prob", "crop_flip", "cutout", "random_erasing", "hide_and_seek", "gridmask", "mixup", "cutmix", "cutmix_plan", "mixup_cutmix", "ricap",
           "ricap_draw", "ricap_patch", "two_partners"]

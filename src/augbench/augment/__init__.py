"""Batched, device-side data augmentation, one module per family (see REFERENCE.md, "Augmentation semantics").

Every function works on a whole normalised batch ``x`` (N×C×H×W float) at once:
no per-image Python loops, no global RNG (all draws use the explicit ``generator``,
which must live on ``x.device``), no in-place writes into the inputs, fixed shapes
and no host syncs.

Each method ``m`` is also offered in two halves, ``m_draw`` (every call to the generator, as few as
possible) and ``m_apply`` / ``m_plan_from`` (pure tensor code of the draws), with ``m = apply(draw)``.
The pure half compiles under ``torch.compile(fullgraph=True)``; the draws cannot, because Dynamo
cannot trace a ``torch.Generator`` argument (see tests/test_capture.py).
"""

from augbench.augment.common import check_alpha, check_prob, sample_beta
from augbench.augment.cropflip import crop_flip, crop_flip_apply, crop_flip_draw
from augbench.augment.erasing import (cutout, cutout_apply, cutout_draw, gridmask, gridmask_apply, gridmask_draw,
                                      hide_and_seek, hide_and_seek_apply, hide_and_seek_draw, random_erasing,
                                      random_erasing_apply, random_erasing_draw)
from augbench.augment.mixing import (cutmix, cutmix_draw, cutmix_plan, cutmix_plan_from, mixup, mixup_apply,
                                     mixup_cutmix, mixup_cutmix_apply, mixup_cutmix_draw, mixup_draw, paste, ricap,
                                     ricap_draw, ricap_from_noise, ricap_noise, ricap_patch, two_partners)

__all__ = ["sample_beta", "check_alpha", "check_prob", "crop_flip", "cutout", "random_erasing", "hide_and_seek",
           "gridmask", "mixup", "cutmix", "cutmix_plan", "mixup_cutmix", "ricap", "ricap_draw", "ricap_patch",
           "two_partners", "crop_flip_draw", "crop_flip_apply", "cutout_draw", "cutout_apply", "random_erasing_draw",
           "random_erasing_apply", "hide_and_seek_draw", "hide_and_seek_apply", "gridmask_draw", "gridmask_apply",
           "mixup_draw", "mixup_apply", "cutmix_draw", "cutmix_plan_from", "paste", "mixup_cutmix_draw",
           "mixup_cutmix_apply", "ricap_noise", "ricap_from_noise"]

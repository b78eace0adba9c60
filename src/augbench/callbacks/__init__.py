"""Augmentations as Lightning callbacks that rewrite the device batch in ``on_train_batch_start``.

The work is done by the pure functions in :mod:`augbench.augment`; a callback owns a
``torch.Generator`` on the training device and replaces entries of the batch dict in place, since
Lightning ignores return values. The generator is reseeded from (seed, callback, epoch) at the start
of every epoch instead of being saved: checkpoints are written at epoch ends only, so a resumed run
draws exactly what an uninterrupted one would, and it may resume on another kind of device (a CPU
generator's state cannot be loaded into a CUDA generator).
Only training batches pass through here: validation and test batches are never touched.
"""

from augbench.callbacks.base import BatchAugment
from augbench.callbacks.cropflip import CropFlip
from augbench.callbacks.erasing import Cutout, GridMask, HideAndSeek, RandomErasing
from augbench.callbacks.gallery import GalleryLogger, describe_batch
from augbench.callbacks.mixing import RICAP, CutMix, Mixup, MixupCutMix

__all__ = ["BatchAugment", "CropFlip", "Cutout", "RandomErasing", "HideAndSeek", "GridMask", "Mixup", "CutMix", "MixupCutMix", "RICAP", "GalleryLogger", "describe_batch"]

"""Regional dropout callbacks: parts of each image set to the mean colour."""

from __future__ import annotations

from augbench import augment
from augbench.callbacks.base import BatchAugment, check_knob


class Cutout(BatchAugment):
    """Cutout (DeVries & Taylor): ``n_holes`` squares of side ``length`` set to 0 after normalisation."""

    def __init__(self, n_holes: int = 1, length: int = 16, per_sample: bool = True, seed: int = 0):
        super().__init__(seed)
        check_knob(n_holes >= 0, "aug.n_holes", n_holes, ">= 0")
        check_knob(length > 0, "aug.length", length, "> 0 (and at most the image size)")
        self.n_holes, self.length, self.per_sample = n_holes, length, per_sample

    def apply(self, batch):
        batch["image"] = augment.cutout(batch["image"], n_holes=self.n_holes, length=self.length,
                                        generator=self.generator, per_sample=self.per_sample)



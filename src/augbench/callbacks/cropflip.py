"""baseline+ as a callback."""

from __future__ import annotations

from augbench import augment
from augbench.callbacks.base import BatchAugment, check_knob


class CropFlip(BatchAugment):
    """baseline+: per-image random crop with ``padding`` px of black, per-image horizontal flip."""

    def __init__(self, padding: int = 4, flip: bool = True, seed: int = 0):
        super().__init__(seed)
        check_knob(padding >= 0, "aug.padding", padding, ">= 0")
        self.padding, self.flip = padding, flip

    def prepare(self, mean, std, device) -> None:
        super().prepare(mean, std, device)
        self.fill = -self.mean / self.std  # black, after normalisation

    def draw(self, batch):
        return augment.crop_flip_draw(len(batch["image"]), padding=self.padding, flip=self.flip,
                                      generator=self.generator, device=batch["image"].device)

    def transform(self, batch, draw):
        batch["image"] = augment.crop_flip_apply(batch["image"], padding=self.padding, fill=self.fill, flip=self.flip,
                                                 **draw)



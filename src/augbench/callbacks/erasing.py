"""Regional dropout callbacks: parts of each image set to the mean colour."""

from __future__ import annotations

from collections.abc import Sequence

from augbench import augment
from augbench.augment.common import is_int
from augbench.callbacks.base import BatchAugment, check_knob, ramped


class Cutout(BatchAugment):
    """Cutout (DeVries & Taylor): ``n_holes`` squares of side ``length`` set to 0 after normalisation."""

    def __init__(self, n_holes: int = 1, length: int = 16, per_sample: bool = True, seed: int = 0):
        super().__init__(seed)
        check_knob(n_holes >= 0, "aug.n_holes", n_holes, ">= 0")
        check_knob(length > 0, "aug.length", length, "> 0 (and at most the image size)")
        self.n_holes, self.length, self.per_sample = n_holes, length, per_sample

    def draw(self, batch):
        n, _, h, w = batch["image"].shape
        return augment.cutout_draw(n, h, w, n_holes=self.n_holes, per_sample=self.per_sample,
                                   generator=self.generator, device=batch["image"].device)

    def transform(self, batch, draw):
        batch["image"] = augment.cutout_apply(batch["image"], length=self.length, **draw)




class RandomErasing(BatchAugment):
    """Random Erasing (Zhong et al.): per image, with probability ``prob``, one random rectangle set to ``fill``."""

    def __init__(self, prob: float = 0.5, area_min: float = 0.02, area_max: float = 0.4, ratio_min: float = 0.3,
                 attempts: int = 100, fill: str = "zero", seed: int = 0):
        super().__init__(seed)
        check_knob(0.0 <= prob <= 1.0, "aug.prob", prob, "in [0, 1]")
        check_knob(0.0 < area_min <= 1.0, "aug.area_min", area_min, "in (0, 1]")
        check_knob(area_min <= area_max <= 1.0, "aug.area_max", area_max, "in [aug.area_min, 1]")
        check_knob(0.0 < ratio_min <= 1.0, "aug.ratio_min", ratio_min, "in (0, 1] (aspects span [r, 1/r])")
        check_knob(is_int(attempts) and attempts >= 1, "aug.attempts", attempts, "an integer >= 1")
        check_knob(fill in ("zero", "random"), "aug.fill", fill, "'zero' (the mean) or 'random' (N(0, 1) noise)")
        self.prob, self.area_min, self.area_max, self.ratio_min = prob, area_min, area_max, ratio_min
        self.attempts, self.fill = attempts, fill

    def draw(self, batch):
        return augment.random_erasing_draw(batch["image"].shape, attempts=self.attempts, fill=self.fill,
                                           generator=self.generator, device=batch["image"].device)

    def transform(self, batch, draw):
        batch["image"] = augment.random_erasing_apply(batch["image"], prob=self.prob, area_min=self.area_min,
                                                      area_max=self.area_max, ratio_min=self.ratio_min, **draw)


class HideAndSeek(BatchAugment):
    """Hide-and-Seek (Singh & Lee): per image a grid of cells of a random side; each cell hidden w.p. ``hide_prob``."""

    def __init__(self, grid_sizes=(0, 2, 4, 6, 8), hide_prob: float = 0.5, seed: int = 0):
        super().__init__(seed)
        sizes = list(grid_sizes) if isinstance(grid_sizes, Sequence) and not isinstance(grid_sizes, str) else None
        check_knob(bool(sizes) and all(is_int(s) and s >= 0 for s in sizes), "aug.grid_sizes", grid_sizes,
                   "a non-empty list of cell sides in pixels, integers >= 0 (0 = hide nothing)")
        check_knob(0.0 <= hide_prob <= 1.0, "aug.hide_prob", hide_prob, "in [0, 1]")
        self.grid_sizes, self.hide_prob = [int(s) for s in sizes], hide_prob

    def draw(self, batch):
        n, _, h, w = batch["image"].shape
        return augment.hide_and_seek_draw(n, h, w, grid_sizes=self.grid_sizes, generator=self.generator,
                                          device=batch["image"].device)

    def transform(self, batch, draw):
        batch["image"] = augment.hide_and_seek_apply(batch["image"], grid_sizes=self.grid_sizes,
                                                     hide_prob=self.hide_prob, **draw)


class GridMask(BatchAugment):
    """GridMask (Chen et al.): periodic squares dropped; probability ramped prob·min(1, epoch/ramp_epochs).

    ``ramp_epochs`` is the official ``st_epochs`` (null: trainer.max_epochs, so epoch 0 never masks).
    """

    def __init__(self, d1: int = 24, d2: int = 33, ratio: float = 0.4, rotate: int = 0, mode: int = 1,
                 prob: float = 0.8, ramp_epochs: int | None = None, seed: int = 0):
        super().__init__(seed)
        check_knob(is_int(d1) and d1 >= 1, "aug.d1", d1, "an integer >= 1")
        check_knob(is_int(d2) and d2 > d1, "aug.d2", d2, "an integer > aug.d1 (d ~ randint[d1, d2))")
        check_knob(0.0 < ratio < 1.0, "aug.ratio", ratio, "in (0, 1): the kept fraction l/d of the unit")
        check_knob(is_int(rotate) and rotate >= 0, "aug.rotate", rotate,
                   "an integer >= 0: the grid turns by randint[0, rotate) degrees (0 or 1: never)")
        check_knob(mode in (0, 1), "aug.mode", mode, "0 (drop the stripes) or 1 (drop the squares)")
        check_knob(0.0 <= prob <= 1.0, "aug.prob", prob, "in [0, 1]")
        check_knob(ramp_epochs is None or (is_int(ramp_epochs) and ramp_epochs >= 1), "aug.ramp_epochs",
                   ramp_epochs, "null (trainer.max_epochs) or an integer >= 1")
        self.d1, self.d2, self.ratio, self.mode, self.prob, self.ramp_epochs = d1, d2, ratio, mode, prob, ramp_epochs
        self.rotate = rotate
        self.current_prob = prob  # set per epoch in training; outside it (the gallery) full strength

    def ramp(self, epoch: int, max_epochs) -> float:
        horizon = self.ramp_epochs if self.ramp_epochs is not None else max_epochs
        return ramped(self.prob, epoch, horizon, "aug.ramp_epochs=null")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        super().on_train_epoch_start(trainer, pl_module)  # keeps the per-epoch reseeding
        self.current_prob = self.ramp(trainer.current_epoch, trainer.max_epochs)

    def draw(self, batch):  # the ramped probability is applied here, so the transform never changes per epoch
        return augment.gridmask_draw(len(batch["image"]), d1=self.d1, d2=self.d2, prob=self.current_prob,
                                     generator=self.generator, device=batch["image"].device, rotate=self.rotate)

    def transform(self, batch, draw):
        batch["image"] = augment.gridmask_apply(batch["image"], d2=self.d2, ratio=self.ratio, mode=self.mode, **draw)


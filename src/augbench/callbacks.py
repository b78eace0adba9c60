"""Augmentations as Lightning callbacks that rewrite the device batch in ``on_train_batch_start``.

The work is done by the pure functions in :mod:`augbench.augment`; a callback owns a
``torch.Generator`` on the training device and replaces entries of the batch dict in place, since
Lightning ignores return values. The generator is reseeded from (seed, callback, epoch) at the start
of every epoch instead of being saved: checkpoints are written at epoch ends only, so a resumed run
draws exactly what an uninterrupted one would, and it may resume on another kind of device (a CPU
generator's state cannot be loaded into a CUDA generator).
Only training batches pass through here: validation and test batches are never touched.
"""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import Callback

from augbench import augment
from augbench.seeding import derive_seed


class BatchAugment(Callback):
    """Base class: a generator on the training device, seeded per epoch, and ``apply(batch)``."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.generator: torch.Generator | None = None
        self.mean = self.std = None

    @property
    def state_key(self) -> str:
        return type(self).__name__

    def prepare(self, mean, std, device) -> None:
        """Set the generator and the normalisation constants (called from ``setup``)."""
        device = torch.device(device)
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=device)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=device)
        self.generator = torch.Generator(device=device)
        self.reseed(0)

    def reseed(self, epoch: int) -> None:
        self.generator.manual_seed(derive_seed(self.seed, "aug", type(self).__name__, epoch))

    def setup(self, trainer, pl_module, stage: str) -> None:
        spec = trainer.datamodule.spec
        self.prepare(spec.mean, spec.std, trainer.strategy.root_device)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.reseed(trainer.current_epoch)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.apply(batch)

    def apply(self, batch: dict) -> None:
        raise NotImplementedError


def _check(ok: bool, key: str, value, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{key}={value!r} is invalid: must be {allowed}")


class CropFlip(BatchAugment):
    """baseline+: per-image random crop with ``padding`` px of black, per-image horizontal flip."""

    def __init__(self, padding: int = 4, flip: bool = True, seed: int = 0):
        super().__init__(seed)
        _check(padding >= 0, "aug.padding", padding, ">= 0")
        self.padding, self.flip = padding, flip

    def prepare(self, mean, std, device) -> None:
        super().prepare(mean, std, device)
        self.fill = -self.mean / self.std  # black, after normalisation

    def apply(self, batch):
        batch["image"] = augment.crop_flip(batch["image"], padding=self.padding, fill=self.fill,
                                           generator=self.generator, flip=self.flip)


class Cutout(BatchAugment):
    """Cutout (DeVries & Taylor): ``n_holes`` squares of side ``length`` set to 0 after normalisation."""

    def __init__(self, n_holes: int = 1, length: int = 16, per_sample: bool = True, seed: int = 0):
        super().__init__(seed)
        _check(n_holes >= 0, "aug.n_holes", n_holes, ">= 0")
        _check(length > 0, "aug.length", length, "> 0 (and at most the image size)")
        self.n_holes, self.length, self.per_sample = n_holes, length, per_sample

    def apply(self, batch):
        batch["image"] = augment.cutout(batch["image"], n_holes=self.n_holes, length=self.length,
                                        generator=self.generator, per_sample=self.per_sample)


class Mixup(BatchAugment):
    """mixup (Zhang et al.): x = λx + (1−λ)x[j]; writes ``target_b`` and per-sample ``lam``."""

    def __init__(self, alpha: float = 1.0, per_sample: bool = False, seed: int = 0):
        super().__init__(seed)
        _check(alpha > 0, "aug.alpha", alpha, "> 0")
        self.alpha, self.per_sample = alpha, per_sample

    def apply(self, batch):
        batch["image"], batch["target_b"], batch["lam"] = augment.mixup(
            batch["image"], batch["target"], alpha=self.alpha, generator=self.generator,
            per_sample=self.per_sample)


class CutMix(BatchAugment):
    """CutMix (Yun et al.): paste a box of x[j]; λ recomputed from the clipped box; gate ``prob``."""

    def __init__(self, alpha: float = 1.0, prob: float = 1.0, per_sample: bool = False, seed: int = 0):
        super().__init__(seed)
        _check(alpha > 0, "aug.alpha", alpha, "> 0")
        _check(0.0 <= prob <= 1.0, "aug.prob", prob, "in [0, 1]")
        self.alpha, self.prob, self.per_sample = alpha, prob, per_sample

    def apply(self, batch):
        batch["image"], batch["target_b"], batch["lam"] = augment.cutmix(
            batch["image"], batch["target"], alpha=self.alpha, prob=self.prob,
            generator=self.generator, per_sample=self.per_sample)


class GalleryLogger(Callback):
    """Sends the first augmented training batch of a fresh run to TensorBoard's Images tab."""

    def __init__(self, n_images: int = 32):
        self.n_images = n_images

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch != 0 or batch_idx != 0 or trainer.logger is None:
            return
        from torchvision.utils import make_grid  # only needed once per run

        spec = trainer.datamodule.spec
        mean = torch.tensor(spec.mean, device=batch["image"].device).view(1, -1, 1, 1)
        std = torch.tensor(spec.std, device=batch["image"].device).view(1, -1, 1, 1)
        images = (batch["image"][: self.n_images].float() * std + mean).clamp(0, 1)
        trainer.logger.experiment.add_image("augmented_batch", make_grid(images.cpu(), nrow=8), 0)
        text = describe_batch(batch, self.n_images)
        trainer.logger.experiment.add_text("augmented_batch_labels", text, 0)


def describe_batch(batch: dict, n: int) -> str:
    """One line per image: its label, and for mixed batches the partner's label and λ."""
    y = batch["target"][:n].tolist()
    if "target_b" not in batch:
        return "  \n".join(f"{i}: y={a}" for i, a in enumerate(y))
    y_b, lam = batch["target_b"][:n].tolist(), batch["lam"][:n].tolist()
    return "  \n".join(f"{i}: y={a} λ={l:.2f}, y_b={b}" for i, (a, b, l) in enumerate(zip(y, y_b, lam)))

"""The base of every augmentation callback: a generator on the training device, reseeded per epoch."""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import Callback

from augbench.data import steps_of
from augbench.seeding import derive_seed


def ramped(prob: float, epoch: int, horizon, why: str) -> float:
    """prob·min(1, epoch/horizon): a probability rising from 0 over the first ``horizon`` epochs
    (GridMask's schedule, scheduled CutMix); ``why`` names the knob that asked for it."""
    if horizon is None or horizon < 1:
        raise ValueError(f"{why} needs a finite trainer.max_epochs, got {horizon!r}")
    return prob * min(1.0, epoch / horizon)


class BatchAugment(Callback):
    """Base class: a generator on the training device, seeded per epoch, and ``apply(batch)``.

    ``apply`` is two halves: ``draw(batch)``, every call to the generator (it reads only the batch's
    shapes and device), and ``transform(batch, draw)``, pure tensor code that writes the batch's new
    entries. ``transform`` compiles under ``torch.compile(fullgraph=True)``; ``draw`` cannot, since
    Dynamo cannot trace a ``torch.Generator`` argument, so a captured step would run the draws of every
    callback first (a few random-number kernels) and pass them in."""

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
        # a group of steps' batches in step order: this callback's generator makes the same draws for
        # each as it would batch by batch (no other code draws from it)
        for b in steps_of(batch):
            self.apply(b)

    def draw(self, batch: dict) -> dict:
        """This batch's random draws, from ``self.generator`` (depends on the batch's shapes only)."""
        raise NotImplementedError

    def transform(self, batch: dict, draw: dict) -> None:
        """Rewrite the batch from the draws: no generator, static shapes, no host syncs."""
        raise NotImplementedError

    def apply(self, batch: dict) -> None:
        self.transform(batch, self.draw(batch))


def check_knob(ok: bool, key: str, value, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{key}={value!r} is invalid: must be {allowed}")



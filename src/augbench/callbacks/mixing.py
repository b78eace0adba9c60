"""Mixing callbacks: they write the batch's ``targets`` (N, K) and ``weights`` (N, K)."""

from __future__ import annotations

from augbench import augment
from augbench.callbacks.base import BatchAugment, check_knob


class Mixup(BatchAugment):
    """mixup (Zhang et al.): x = λx + (1−λ)x[j]; partners (y, y[j]) with weights (λ, 1−λ)."""

    def __init__(self, alpha: float = 1.0, per_sample: bool = False, seed: int = 0):
        super().__init__(seed)
        check_knob(alpha > 0, "aug.alpha", alpha, "> 0")
        self.alpha, self.per_sample = alpha, per_sample

    def apply(self, batch):
        batch["image"], y_b, lam = augment.mixup(batch["image"], batch["target"], alpha=self.alpha,
                                                 generator=self.generator, per_sample=self.per_sample)
        batch["targets"], batch["weights"] = augment.two_partners(batch["target"], y_b, lam)


class CutMix(BatchAugment):
    """CutMix (Yun et al.): paste a box of x[j]; λ recomputed from the clipped box; gate ``prob``."""

    def __init__(self, alpha: float = 1.0, prob: float = 1.0, per_sample: bool = False, seed: int = 0):
        super().__init__(seed)
        check_knob(alpha > 0, "aug.alpha", alpha, "> 0")
        check_knob(0.0 <= prob <= 1.0, "aug.prob", prob, "in [0, 1]")
        self.alpha, self.prob, self.per_sample = alpha, prob, per_sample

    def apply(self, batch):
        batch["image"], y_b, lam = augment.cutmix(batch["image"], batch["target"], alpha=self.alpha,
                                                  prob=self.prob, generator=self.generator,
                                                  per_sample=self.per_sample)
        batch["targets"], batch["weights"] = augment.two_partners(batch["target"], y_b, lam)



"""Mixing callbacks: they write the batch's ``targets`` (N, K) and ``weights`` (N, K)."""

from __future__ import annotations

from augbench import augment
from augbench.augment.common import is_int, is_number
from augbench.augment.mixing import CUTMIX_CENTERS, CUTMIX_LABEL_MODES
from augbench.callbacks.base import BatchAugment, check_knob, ramped
from augbench.data import steps_of


class Mixup(BatchAugment):
    """mixup (Zhang et al.): x = λx + (1−λ)x[j]; partners (y, y[j]) with weights (λ, 1−λ)."""

    def __init__(self, alpha: float = 1.0, per_sample: bool = False, seed: int = 0):
        super().__init__(seed)
        check_knob(alpha > 0, "aug.alpha", alpha, "> 0")
        self.alpha, self.per_sample = alpha, per_sample

    def draw(self, batch):
        return augment.mixup_draw(len(batch["image"]), alpha=self.alpha, per_sample=self.per_sample,
                                  generator=self.generator, device=batch["image"].device)

    def transform(self, batch, draw):
        batch["image"], y_b, lam = augment.mixup_apply(batch["image"], batch["target"], alpha=self.alpha, **draw)
        batch["targets"], batch["weights"] = augment.two_partners(batch["target"], y_b, lam)


class CutMix(BatchAugment):
    """CutMix (Yun et al.): paste a box of x[j]; λ recomputed from the clipped box; gate ``prob``.

    The CutMix paper's Table 8 ablations as knobs (defaults: plain CutMix, draw for draw):
    ``center`` ("uniform" | "gaussian", with ``sigma`` a fraction of the side), ``fixed_lam``
    (null | λ in (0, 1): a fixed box of side round(W·√(1−λ))), ``label_mode`` ("area" | "one_hot" |
    "complete"; see :func:`augbench.augment.mixing.cutmix`) and ``schedule``: when true the
    application probability ramps as prob·min(1, epoch/trainer.max_epochs), so epoch 0 never mixes.

    ``layer`` (Figure 3, feature-level CutMix): 0 mixes the input images; 1–4 mix the backbone's feature
    map at that point (ResNet-18: after the stem, after stages 1, 2, 3). The box is drawn at the feature
    map's size and λ comes from its area; the model applies it in its forward pass.
    """

    def __init__(self, alpha: float = 1.0, prob: float = 1.0, per_sample: bool = False, center: str = "uniform",
                 sigma: float = 0.25, fixed_lam: float | None = None, label_mode: str = "area",
                 schedule: bool = False, layer: int = 0, seed: int = 0):
        super().__init__(seed)
        check_knob(is_int(layer) and 0 <= layer <= 4, "aug.layer", layer,
                   "an integer in [0, 4] (0: the input; 1-4: a feature map of the backbone)")
        check_knob(alpha > 0, "aug.alpha", alpha, "> 0")
        check_knob(0.0 <= prob <= 1.0, "aug.prob", prob, "in [0, 1]")
        check_knob(center in CUTMIX_CENTERS, "aug.center", center, "one of " + ", ".join(CUTMIX_CENTERS))
        check_knob(is_number(sigma) and sigma > 0, "aug.sigma", sigma, "a number > 0 (a fraction of the side)")
        check_knob(fixed_lam is None or (is_number(fixed_lam) and 0 < fixed_lam < 1), "aug.fixed_lam", fixed_lam,
                   "null (λ ~ Beta(α, α)) or a number in (0, 1)")
        check_knob(label_mode in CUTMIX_LABEL_MODES, "aug.label_mode", label_mode,
                   "one of " + ", ".join(CUTMIX_LABEL_MODES))
        check_knob(isinstance(schedule, bool), "aug.schedule", schedule, "true or false")
        self.alpha, self.prob, self.per_sample = alpha, prob, per_sample
        self.center, self.sigma, self.fixed_lam, self.label_mode = center, sigma, fixed_lam, label_mode
        self.schedule, self.layer = schedule, layer
        self.current_prob = prob  # ramped per epoch when schedule; outside training full strength

    def ramp(self, epoch: int, max_epochs) -> float:
        """prob·min(1, epoch/max_epochs) when ``schedule``, else prob."""
        if not self.schedule:
            return self.prob
        return ramped(self.prob, epoch, max_epochs, "aug.schedule=true")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        super().on_train_epoch_start(trainer, pl_module)  # keeps the per-epoch reseeding
        if self.schedule:  # unscheduled CutMix reads nothing more from the trainer than before
            self.current_prob = self.ramp(trainer.current_epoch, trainer.max_epochs)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        for b in steps_of(batch):
            if self.layer == 0:
                self.apply(b)
            else:
                self.apply_to_features(b, pl_module.net.feature_size(self.layer, b["image"].shape[-1]))

    def draw(self, batch, size: int | None = None):
        """The draws for the image's size, or for a ``size``×``size`` feature map. The (ramped) gate is
        decided here, so the transform never changes from epoch to epoch."""
        n, _, h, w = batch["image"].shape
        h, w = (h, w) if size is None else (size, size)
        return augment.cutmix_draw(n, h, w, alpha=self.alpha, prob=self.current_prob, per_sample=self.per_sample,
                                   center=self.center, fixed_lam=self.fixed_lam, generator=self.generator,
                                   device=batch["image"].device)

    def plan(self, batch, draw, h: int, w: int):
        """CutMix's mask and partner for an h×w map from the draws; writes the batch's targets and weights."""
        mask, j, y_b, lam = augment.cutmix_plan_from(draw, batch["target"], h, w, alpha=self.alpha, sigma=self.sigma,
                                                     fixed_lam=self.fixed_lam, label_mode=self.label_mode)
        batch["targets"], batch["weights"] = augment.two_partners(batch["target"], y_b, lam)
        return mask, j

    def transform(self, batch, draw):
        mask, j = self.plan(batch, draw, *batch["image"].shape[-2:])
        batch["image"] = augment.paste(batch["image"], mask, j)

    def apply_to_features(self, batch, size: int) -> None:
        """The plan for a ``size``×``size`` feature map; ``Classifier`` mixes the features with it."""
        mask, j = self.plan(batch, self.draw(batch, size), size, size)
        batch["feature_mix"] = {"layer": self.layer, "mask": mask, "partner": j}


class MixupCutMix(BatchAugment):
    """timm's Mixup switch: per batch, mixed with probability ``prob``; then CutMix with probability
    ``switch_prob``, else mixup, each with its own α. Decided on the device (no host sync)."""

    def __init__(self, mixup_alpha: float = 1.0, cutmix_alpha: float = 1.0, prob: float = 1.0,
                 switch_prob: float = 0.5, seed: int = 0):
        super().__init__(seed)
        check_knob(mixup_alpha > 0, "aug.mixup_alpha", mixup_alpha, "> 0")
        check_knob(cutmix_alpha > 0, "aug.cutmix_alpha", cutmix_alpha, "> 0")
        check_knob(0.0 <= prob <= 1.0, "aug.prob", prob, "in [0, 1]")
        check_knob(0.0 <= switch_prob <= 1.0, "aug.switch_prob", switch_prob, "in [0, 1]")
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.prob, self.switch_prob = prob, switch_prob

    def draw(self, batch):
        n, _, h, w = batch["image"].shape
        return augment.mixup_cutmix_draw(n, h, w, mixup_alpha=self.mixup_alpha, cutmix_alpha=self.cutmix_alpha,
                                         prob=self.prob, switch_prob=self.switch_prob, generator=self.generator,
                                         device=batch["image"].device)

    def transform(self, batch, draw):
        batch["image"], y_b, lam = augment.mixup_cutmix_apply(batch["image"], batch["target"],
                                                              mixup_alpha=self.mixup_alpha,
                                                              cutmix_alpha=self.cutmix_alpha, **draw)
        batch["targets"], batch["weights"] = augment.two_partners(batch["target"], y_b, lam)


class RICAP(BatchAugment):
    """RICAP (Takahashi et al.): four crops around one boundary point per batch, K = 4 partners
    weighted by patch area."""

    def __init__(self, beta: float = 0.3, seed: int = 0):
        super().__init__(seed)
        check_knob(beta > 0, "aug.beta", beta, "> 0")
        self.beta = beta

    def draw(self, batch):
        return augment.ricap_noise(len(batch["image"]), beta=self.beta, generator=self.generator,
                                   device=batch["image"].device)

    def transform(self, batch, draw):
        n, _, h, w = batch["image"].shape
        batch["image"], batch["targets"], batch["weights"] = augment.ricap_patch(
            batch["image"], batch["target"], **augment.ricap_from_noise(n, h, w, beta=self.beta, **draw))

"""Kernels per training step of every regime's augmentation, by the rule of :mod:`augbench.bench.kernels`.

A (128, 3, 32, 32) batch goes through the callbacks of conf/aug/<regime>.yaml as training applies them
(crop+flip, then the regime's own callback). The bounds are the figures after the kernel cut, so a
change that adds kernels fails here until its bound is raised on purpose. Before the cut (same rule):
baseline+ 25, cutout 47, mixup 66, cutmix 104 (its ablations 66-113), mixup_cutmix 152, random_erasing 79,
hide_and_seek 53, gridmask 52, ricap 131.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from augbench.augment.common import floor_uniform
from augbench.bench.kernels import KernelCounter, count_kernels
from augbench.callbacks import CropFlip, CutMix
from augbench.data import SPECS

CONF = Path(__file__).resolve().parents[1] / "conf" / "aug"
TARGET_CUTMIX = 40  # issue 16: crop+flip+CutMix at most 40 kernels per step
BOUNDS = {  # kernels per step (after the cut)
    "baseline": 0, "baseline_plus": 6, "cutout": 12, "mixup": 18, "cutmix": 28,
    "cutmix_center_gaussian": 32, "cutmix_complete_label": 26, "cutmix_fixed_size": 24, "cutmix_one_hot": 30,
    "cutmix_scheduled": 28, "mixup_cutmix": 41, "random_erasing": 35, "hide_and_seek": 12, "gridmask": 19,
    "ricap": 55,
}
MIXUP_OTHER_ALPHA = 34  # mixup with α != 1 (Marsaglia–Tsang's Beta draws), e.g. the label-noise configs
RANDOM_OPS = {"rand", "randn", "randint", "randperm", "exponential_", "normal_", "uniform_", "random_", "bernoulli_",
              "bernoulli"}


def callbacks(name: str, device="cpu") -> list:
    cfg = OmegaConf.create({"seed": 0, "aug": OmegaConf.load(CONF / f"{name}.yaml")})
    cbs = [instantiate(c) for c in cfg.aug.callbacks]
    spec = SPECS["cifar10"]
    for cb in cbs:
        cb.prepare(spec.mean, spec.std, device)
    return cbs


def step_of(cbs):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(128, 3, 32, 32, generator=g), torch.randint(0, 10, (128,), generator=g)

    def step():
        batch = {"image": x, "target": y}  # a fresh dict per step, as the loader yields
        for cb in cbs:
            cb.on_train_batch_start(None, None, batch, 0)
        return batch

    step()  # builds the cached tables, as the first step of a run does
    return step


def bound(name: str) -> int:
    if name in BOUNDS:
        return BOUNDS[name]
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    if str(cfg.name).startswith("mixup_alpha"):  # configs added later: mixup at another α
        return MIXUP_OTHER_ALPHA
    pytest.fail(f"no kernel bound for the regime {name}: add it to BOUNDS")


def test_crop_flip_cutmix_is_at_most_40_kernels_per_step():
    kernels = count_kernels(step_of(callbacks("cutmix")))
    assert kernels.total() <= TARGET_CUTMIX, dict(kernels)
    # also when the gate is live (prob < 1, or the scheduled ramp during training)
    cbs = [CropFlip(), CutMix(prob=0.5)]
    for cb in cbs:
        cb.prepare((0.5,) * 3, (0.25,) * 3, "cpu")
    assert count_kernels(step_of(cbs)).total() <= TARGET_CUTMIX


@pytest.mark.parametrize("name", sorted(p.stem for p in CONF.glob("*.yaml")))
def test_every_regime_stays_within_its_kernel_bound_without_host_syncs(name):
    step = step_of(callbacks(name))
    with KernelCounter() as counter:
        step()
    kernels = counter.total()
    assert kernels.total() <= bound(name), dict(kernels)
    assert sum(counter.syncs["step"].values()) == 0, dict(counter.syncs["step"])


@pytest.mark.parametrize("name, calls", [("baseline_plus", 1), ("cutout", 2), ("cutmix", 4), ("mixup", 3),
                                         ("gridmask", 4), ("hide_and_seek", 3), ("random_erasing", 2),
                                         ("ricap", 4), ("mixup_cutmix", 6)])
def test_random_numbers_come_from_few_calls(name, calls):
    """Calls into the generators per step (crop+flip's one included): one call per kind of draw."""
    kernels = count_kernels(step_of(callbacks(name)))
    assert sum(kernels[op] // (3 if op == "randperm" else 1) for op in RANDOM_OPS) == calls, dict(kernels)


def test_floor_of_uniform_times_count_never_reaches_count():
    """floor(U·count) < count for the largest float32 uniform, 1 − 2^-24, and every count below 2^24:
    why :func:`floor_uniform` needs no clamp (the corner, offset and origin draws rely on it)."""
    count = torch.arange(1, 1 << 24, dtype=torch.float32)
    top = torch.full_like(count, 1.0 - 2.0 ** -24)
    assert float(torch.rand(1 << 20, generator=torch.Generator().manual_seed(0)).max()) <= 1.0 - 2.0 ** -24
    assert bool((floor_uniform(top, count) < count).all())
    top64 = torch.full((1000,), 1.0 - 2.0 ** -53, dtype=torch.float64)
    count64 = torch.arange(1, 1001, dtype=torch.float64)
    assert bool((floor_uniform(top64, count64) < count64).all())

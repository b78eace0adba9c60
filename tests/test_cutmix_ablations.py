"""The CutMix paper's Table 8 ablations: knobs of ``cutmix``/``CutMix`` and their named aug configs."""

from __future__ import annotations

from types import SimpleNamespace

import hydra.utils
import numpy as np
import pytest
import torch
from conftest import CONF, TINY, make_cfg
from scipy import stats

from augbench.augment import cutmix, two_partners
from augbench.augment.common import box_mask, centred_box, check_alpha, check_prob, randint, sample_beta
from augbench.callbacks import CutMix

VARIANTS = {  # name -> the knob that defines it
    "cutmix_center_gaussian": ("center", "gaussian"),
    "cutmix_fixed_size": ("fixed_lam", 0.75),
    "cutmix_scheduled": ("schedule", True),
    "cutmix_one_hot": ("label_mode", "one_hot"),
    "cutmix_complete_label": ("label_mode", "complete"),
}
DEFAULTS = {"center": "uniform", "sigma": 0.25, "fixed_lam": None, "label_mode": "area", "schedule": False}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def const_batch(n: int, h: int, w: int) -> torch.Tensor:
    """Image i filled with the value i, so a pixel tells which image it came from."""
    return torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, h, w).clone()


def boxes(xm: torch.Tensor):
    """Per image whose box came from another image: (i, y1, y2, x1, x2) of the foreign rectangle."""
    out = []
    for i in range(xm.shape[0]):
        foreign = xm[i, 0] != i
        if foreign.any():
            rows = torch.nonzero(foreign.any(1)).flatten()
            cols = torch.nonzero(foreign.any(0)).flatten()
            y1, y2, x1, x2 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
            assert int(foreign.sum()) == (y2 - y1) * (x2 - x1), "not one filled rectangle"
            out.append((i, y1, y2, x1, x2))
    return out


def cutmix_before_ablations(x, y, *, alpha, prob, generator, per_sample=False):
    """Frozen copy of cutmix as it was before the ablation knobs: the defaults must reproduce it."""
    check_alpha(alpha)
    check_prob(prob)
    n, _, h, w = x.shape
    m = n if per_sample else 1
    dev = x.device
    gate = torch.rand(m, generator=generator, device=dev) < prob
    lam0 = sample_beta(alpha, m, generator, dev)
    j = torch.randperm(n, generator=generator, device=dev)
    cx = randint(w, m, generator, dev)
    cy = randint(h, m, generator, dev)
    cut = torch.sqrt(1.0 - lam0)
    cut_w = torch.floor(w * cut).long()
    cut_h = torch.floor(h * cut).long()
    y1, y2, x1, x2 = centred_box(cy, cx, cut_h // 2, cut_w // 2, h, w)
    area = ((x2 - x1) * (y2 - y1)).float()
    lam = torch.where(gate, 1.0 - area / (h * w), 1.0).expand(n)
    mask = (box_mask(y1, y2, x1, x2, h, w) & gate[:, None, None])[:, None]
    x_mixed = torch.where(mask, x[j], x)
    y_b = torch.where(gate.expand(n), y[j], y)
    return x_mixed, y_b, lam.float().contiguous()


# ------------------------------------------------------------------ defaults = before
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("alpha, prob", [(1.0, 1.0), (0.2, 0.5), (2.0, 0.3)])
def test_default_knobs_are_bit_identical_to_before(per_sample, alpha, prob):
    x, y = torch.randn(24, 3, 12, 16), torch.arange(24)
    for seed in range(5):
        g_old, g_new = gen(seed), gen(seed)
        old = cutmix_before_ablations(x, y, alpha=alpha, prob=prob, generator=g_old, per_sample=per_sample)
        new = cutmix(x, y, alpha=alpha, prob=prob, generator=g_new, per_sample=per_sample, **{
            k: v for k, v in DEFAULTS.items() if k != "schedule"})
        implicit = cutmix(x, y, alpha=alpha, prob=prob, generator=gen(seed), per_sample=per_sample)
        for a, b, c in zip(old, new, implicit):
            assert a.dtype == b.dtype and torch.equal(a, b) and torch.equal(a, c)
        assert torch.equal(g_old.get_state(), g_new.get_state()), "the generator advanced differently"


def test_default_callback_is_bit_identical_to_before():
    cb = CutMix(alpha=1.0, prob=0.5, seed=3)
    cb.prepare((0.5,), (0.25,), "cpu")
    trainer = SimpleNamespace(current_epoch=2, max_epochs=10)
    cb.on_train_epoch_start(trainer, None)
    g = gen()
    cb_ref = CutMix(alpha=1.0, prob=0.5, seed=3)
    cb_ref.prepare((0.5,), (0.25,), "cpu")
    cb_ref.reseed(2)
    g.set_state(cb_ref.generator.get_state())
    x, y = torch.randn(16, 3, 8, 8), torch.arange(16)
    for _ in range(10):
        batch = {"image": x.clone(), "target": y}
        cb.apply(batch)
        xm, y_b, lam = cutmix_before_ablations(x, y, alpha=1.0, prob=0.5, generator=g)
        targets, weights = two_partners(y, y_b, lam)
        assert torch.equal(batch["image"], xm) and torch.equal(batch["targets"], targets)
        assert torch.equal(batch["weights"], weights)


# ---------------------------------------------------------------------- center-gaussian
def _centres(center, n=4096, seed=21, sigma=0.25):
    """Box centres (cy, cx) recovered from 16×16 boxes in 32×32 images (fixed_lam=0.75)."""
    x, y = const_batch(n, 32, 32), torch.arange(n)
    xm, _, _ = cutmix(x, y, alpha=1.0, prob=1.0, generator=gen(seed), per_sample=True, center=center,
                      sigma=sigma, fixed_lam=0.75)
    cy, cx = [], []
    for _, y1, y2, x1, x2 in boxes(xm):  # box [c-8, c+8): one side is never clipped at 32 px
        cy.append(y1 + 8 if y1 > 0 else y2 - 8)
        cx.append(x1 + 8 if x1 > 0 else x2 - 8)
    assert len(cy) > n - 10  # only fixed points of the permutation are missing
    return np.array(cy), np.array(cx)


def test_gaussian_centres_concentrate_and_match_the_clipped_gaussian():
    gy, gx = _centres("gaussian")
    uy, ux = _centres("uniform")
    dist = lambda a, b: np.hypot(a - 16, b - 16).mean()  # noqa: E731
    # expected: σ·√(π/2) ≈ 10.0 px (σ = 8) against ≈ 12.3 px for uniform centres; SE ≈ 0.1
    assert dist(gy, gx) < 0.9 * dist(uy, ux)
    ref = np.clip(np.round(16 + 0.25 * 32 * np.random.default_rng(0).standard_normal(200_000)), 0, 31)
    for coord in (gy, gx):
        assert stats.ks_2samp(coord, ref).pvalue > 1e-3
        assert 0 < (coord == 0).mean() < 0.06 and 0 < (coord == 31).mean() < 0.06  # clipped tails
    assert stats.ks_2samp(gx, np.clip(np.round(16 + 0.4 * 32 * np.random.default_rng(1).standard_normal(
        200_000)), 0, 31)).pvalue < 1e-6, "the KS test should tell sigma 0.25 from 0.4"
    assert stats.ks_2samp(ux, np.random.default_rng(2).integers(0, 32, 200_000)).pvalue > 1e-3


# ----------------------------------------------------------------------------- fixed-size
def test_fixed_size_box_is_16x16_unless_clipped_and_lambda_from_clipped_box():
    n, h, w = 2048, 32, 32
    x, y = const_batch(n, h, w), torch.arange(n)
    xm, y_b, lam = cutmix(x, y, alpha=1.0, prob=1.0, generator=gen(5), per_sample=True, fixed_lam=0.75)
    found, clipped = boxes(xm), 0
    assert len(found) > n - 10
    for i, y1, y2, x1, x2 in found:
        if 0 < y1 and y2 < h:
            assert y2 - y1 == 16
        if 0 < x1 and x2 < w:
            assert x2 - x1 == 16
        assert y2 - y1 <= 16 and x2 - x1 <= 16
        clipped += (y2 - y1) * (x2 - x1) < 256
        assert float(lam[i]) == pytest.approx(1 - (y2 - y1) * (x2 - x1) / (h * w), abs=1e-7)
    assert clipped > n // 10, "boxes at the border must be clipped (and λ recomputed)"
    assert (lam == 0.75).float().mean() > 0.2


def test_fixed_size_follows_each_axis():  # H != W: side round(H·√(1−λ)) by round(W·√(1−λ))
    x, y = const_batch(512, 20, 32), torch.arange(512)
    xm, _, _ = cutmix(x, y, alpha=1.0, prob=1.0, generator=gen(6), per_sample=True, fixed_lam=0.75)
    sides = {(y2 - y1, x2 - x1) for _, y1, y2, x1, x2 in boxes(xm) if 0 < y1 and y2 < 20 and 0 < x1 and x2 < 32}
    assert sides == {(10, 16)}


# ------------------------------------------------------------------------ label modes
def test_one_hot_label_goes_to_the_larger_area():
    x, y = const_batch(2000, 32, 32), torch.arange(2000)
    area = cutmix(x, y, alpha=1.0, prob=0.7, generator=gen(7), per_sample=True)
    one_hot = cutmix(x, y, alpha=1.0, prob=0.7, generator=gen(7), per_sample=True, label_mode="one_hot")
    assert torch.equal(area[0], one_hot[0]) and torch.equal(area[1], one_hot[1])  # same images, partners
    assert torch.equal(one_hot[2], (area[2] >= 0.5).float())
    assert (area[2] < 0.5).any() and ((area[2] > 0.5) & (area[2] < 1)).any()  # both winners occur
    assert set(one_hot[2].unique().tolist()) == {0.0, 1.0}
    targets, weights = two_partners(y, one_hot[1], one_hot[2])
    assert ((weights == 0) | (weights == 1)).all() and (weights.sum(1) == 1).all()
    # the weight-1 partner is the image holding the larger share of pixels (ties: own)
    own_share = (one_hot[0][:, 0] == torch.arange(2000).view(-1, 1, 1)).float().mean((1, 2))
    swapped = one_hot[1] != y
    assert torch.equal(weights[swapped, 0] == 1, own_share[swapped] >= 0.5)


def test_one_hot_tie_goes_to_own_image():
    # 1×4 images, fixed_lam 0.25: a 1×3 box at c − 1; centre 0 or 3 clips it to 2 of 4 pixels (a tie)
    n = 2000
    x, y = const_batch(n, 1, 4), torch.arange(n)
    area = cutmix(x, y, alpha=1.0, prob=1.0, generator=gen(10), per_sample=True, fixed_lam=0.25)
    one_hot = cutmix(x, y, alpha=1.0, prob=1.0, generator=gen(10), per_sample=True, fixed_lam=0.25,
                     label_mode="one_hot")
    assert set(area[2].unique().tolist()) == {0.25, 0.5}
    assert torch.equal(one_hot[2], torch.where(area[2] == 0.5, 1.0, 0.0))
    assert 0.4 < float((area[2] == 0.5).float().mean()) < 0.6


def test_complete_label_is_half_half_for_mixed_images():
    n = 4000
    x, y = const_batch(n, 8, 8), torch.arange(n)
    area = cutmix(x, y, alpha=1.0, prob=0.5, generator=gen(8), per_sample=True)
    comp = cutmix(x, y, alpha=1.0, prob=0.5, generator=gen(8), per_sample=True, label_mode="complete")
    assert torch.equal(area[0], comp[0]) and torch.equal(area[1], comp[1])
    gated_on = comp[1] != y  # up to the rare fixed points of j
    assert (comp[2][gated_on] == 0.5).all()
    assert set(comp[2].unique().tolist()) == {0.5, 1.0}
    assert abs(float((comp[2] == 0.5).float().mean()) - 0.5) < 0.05  # every gated-on image, boxed or not
    _, weights = two_partners(y, comp[1], comp[2])
    assert (weights[comp[2] == 0.5] == 0.5).all() and (weights[comp[2] == 1.0] == torch.tensor([1.0, 0.0])).all()
    xb, yb, lb = cutmix(x, y, alpha=1.0, prob=1.0, generator=gen(9), label_mode="complete")  # per batch
    assert (lb == 0.5).all()


# ---------------------------------------------------------------------------- schedule
def _callback(**kw):
    cb = CutMix(seed=4, **kw)
    cb.prepare((0.5,), (0.25,), "cpu")
    return cb


def test_schedule_ramps_probability_and_epoch_zero_never_mixes():
    cb = _callback(prob=0.8, schedule=True)
    x, y = const_batch(8, 6, 6), torch.arange(8)
    for epoch in range(12):
        cb.on_train_epoch_start(SimpleNamespace(current_epoch=epoch, max_epochs=10), None)
        assert cb.current_prob == pytest.approx(0.8 * min(1.0, epoch / 10))
    cb.on_train_epoch_start(SimpleNamespace(current_epoch=0, max_epochs=10), None)
    for _ in range(200):
        batch = {"image": x.clone(), "target": y}
        cb.apply(batch)
        assert torch.equal(batch["image"], x) and (batch["weights"][:, 0] == 1).all()
    # the realised rate follows the ramp: prob 1 at epoch 5 of 10 mixes half the batches
    cb = _callback(prob=1.0, schedule=True)
    cb.on_train_epoch_start(SimpleNamespace(current_epoch=5, max_epochs=10), None)
    mixed = 0
    for _ in range(2000):
        batch = {"image": x.clone(), "target": y}
        cb.apply(batch)
        mixed += bool((batch["targets"][:, 1] != y).any())
    assert abs(mixed / 2000 - 0.5) < 4 * (0.25 / 2000) ** 0.5
    with pytest.raises(ValueError, match="max_epochs"):
        cb.on_train_epoch_start(SimpleNamespace(current_epoch=1, max_epochs=-1), None)


def test_schedule_keeps_per_epoch_reseeding_and_off_keeps_prob():
    sched, ref = _callback(schedule=True), _callback()
    sched.on_train_epoch_start(SimpleNamespace(current_epoch=3, max_epochs=10), None)
    ref.reseed(3)
    assert torch.equal(sched.generator.get_state(), ref.generator.get_state())
    plain = _callback(prob=0.7)
    plain.on_train_epoch_start(SimpleNamespace(current_epoch=0, max_epochs=10), None)
    assert plain.current_prob == 0.7


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize("knob, value", [
    ("center", "corner"), ("center", None), ("sigma", 0), ("sigma", -0.1), ("sigma", "wide"),
    ("fixed_lam", 0), ("fixed_lam", 1), ("fixed_lam", 1.5), ("fixed_lam", True), ("label_mode", "soft"),
    ("schedule", "yes"), ("schedule", 1),
])
def test_invalid_knobs_raise_naming_the_key(knob, value):
    with pytest.raises(ValueError, match=rf"aug\.{knob}="):
        CutMix(**{knob: value})
    if knob != "schedule":  # the function's own check names the knob too
        with pytest.raises(ValueError, match=rf"\b{knob}="):
            cutmix(const_batch(4, 8, 8), torch.arange(4), alpha=1.0, prob=1.0, generator=gen(), **{knob: value})


# ------------------------------------------------------------------------------ configs
@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_config_composes_with_its_knob(tmp_path, name):
    cfg = make_cfg(tmp_path, [f"aug={name}"])
    cbs = [hydra.utils.instantiate(c) for c in cfg.aug.callbacks]
    assert cfg.aug.name == name and type(cbs[0]).__name__ == "CropFlip" and isinstance(cbs[1], CutMix)
    knob, value = VARIANTS[name]
    expect = {**DEFAULTS, knob: value}
    assert {k: getattr(cbs[1], k) for k in DEFAULTS} == expect
    assert (cbs[1].alpha, cbs[1].prob, cbs[1].per_sample, cfg.aug.padding) == (1.0, 1.0, False, 4)


def test_plain_cutmix_config_keeps_default_knobs(tmp_path):
    cfg = make_cfg(tmp_path, ["aug=cutmix"])
    cb = hydra.utils.instantiate(cfg.aug.callbacks[1])
    assert cfg.aug.name == "cutmix" and {k: getattr(cb, k) for k in DEFAULTS} == DEFAULTS


def test_variants_have_distinct_names_and_run_folders():
    from hydra import compose, initialize_config_dir

    names, dirs, subdirs = [], set(), set()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for aug in ["cutmix", *VARIANTS]:
            cfg = compose("train", overrides=[f"aug={aug}"], return_hydra_config=True)
            names.append(cfg.aug.name)
            dirs.add(cfg.hydra.run.dir)
            subdirs.add(cfg.hydra.sweep.subdir)
            assert cfg.hydra.sweep.subdir == f"cifar10/resnet18/{aug}/seed=0"
    assert names == ["cutmix", *VARIANTS] and len(dirs) == len(subdirs) == len(names)


def test_ablation_experiment_composes_with_seven_regimes():
    from hydra import compose, initialize_config_dir

    augs = ["baseline_plus", "cutmix", *VARIANTS]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        exp = compose("train", overrides=["experiment=cutmix_ablation"], return_hydra_config=True)
        params = exp.hydra.sweeper.params
        assert params.aug.split(",") == augs and params.seed == "range(5)"
        assert exp.experiment_name == "cutmix_ablation" and exp.data.name == "cifar100"
        assert exp.model.name == "resnet18"
        for aug in augs:  # every sweep job composes, each into its own folder
            job = compose("train", overrides=["experiment=cutmix_ablation", f"aug={aug}", "seed=4"],
                          return_hydra_config=True)
            assert job.aug.name == aug and job.hydra.sweep.subdir == f"cifar100/resnet18/{aug}/seed=4"
            [hydra.utils.instantiate(c) for c in job.aug.callbacks]


def test_training_smoke_one_hot(tmp_path, fake_cifar):
    from augbench.training import train

    metrics = train(make_cfg(tmp_path / "run", TINY + ["model=lenet", "aug=cutmix_one_hot"], fake_cifar))
    assert metrics["status"] == "completed"


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_file_is_cutmix_yaml_but_name_and_knob(name):
    """Variants are full copies (the gallery loads each file alone): they must not drift from cutmix.yaml."""
    from omegaconf import OmegaConf

    base = OmegaConf.to_container(OmegaConf.load(CONF / "aug" / "cutmix.yaml"))
    variant = OmegaConf.to_container(OmegaConf.load(CONF / "aug" / f"{name}.yaml"))
    knob, value = VARIANTS[name]
    assert variant == {**base, "name": name, knob: value}

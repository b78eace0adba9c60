"""Regional-dropout regimes beyond Cutout: Random Erasing, Hide-and-Seek, GridMask.

Distributions are checked against per-image reference loops written from the official
algorithms (REFERENCE.md, "The wider family"); masks are read back from all-ones images,
where exactly the dropped pixels become 0.
"""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import hydra
import numpy as np
import pytest
import torch
from conftest import TINY, make_cfg
from scipy import stats

from augbench import training
from augbench.augment.erasing import gridmask, gridmask_draw, hide_and_seek, random_erasing
from augbench.callbacks.erasing import GridMask, HideAndSeek, RandomErasing
from augbench.data import SPECS


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ones(n: int, h: int = 32, w: int = 32, c: int = 3) -> torch.Tensor:
    return torch.ones(n, c, h, w)


def dropped(out: torch.Tensor) -> torch.Tensor:
    """(N, H, W) mask of the pixels set to 0 in every channel of an all-ones batch."""
    assert ((out == 0) | (out == 1)).all()
    assert ((out == 0).all(1) | (out == 1).all(1)).all(), "channels must be dropped together"
    return out[:, 0] == 0


def binomial_ok(k: int, n: int, p: float, z: float = 4.5) -> bool:
    return abs(k - n * p) <= z * math.sqrt(n * p * (1 - p)) + 1


# ------------------------------------------------------------------- random erasing
def official_random_erasing(rng: random.Random, h: int, w: int, p=0.5, sl=0.02, sh=0.4, r1=0.3, attempts=100):
    """zhunzhong07/Random-Erasing RandomErasing, one image: (y1, x1, eh, ew) or None."""
    if rng.uniform(0, 1) > p:
        return None
    for _ in range(attempts):
        target = rng.uniform(sl, sh) * h * w
        aspect = rng.uniform(r1, 1 / r1)
        eh = int(round(math.sqrt(target * aspect)))
        ew = int(round(math.sqrt(target / aspect)))
        if ew < w and eh < h:
            return rng.randint(0, h - eh), rng.randint(0, w - ew), eh, ew
    return None


def boxes_of(mask: torch.Tensor):
    """Per image (erased?, y1, x1, h, w) of a single filled rectangle, checked."""
    rows, cols = mask.any(2), mask.any(1)
    eh, ew = rows.sum(1), cols.sum(1)
    assert torch.equal(mask.sum((1, 2)), eh * ew), "erased region is not one filled rectangle"
    y1, x1 = rows.to(torch.uint8).argmax(1), cols.to(torch.uint8).argmax(1)
    return (eh > 0).numpy(), y1.numpy(), x1.numpy(), eh.numpy(), ew.numpy()


@pytest.mark.parametrize("kw", [{}, {"area_min": 0.3, "area_max": 0.9, "ratio_min": 0.2, "attempts": 2}])
def test_random_erasing_matches_the_official_loop(kw):
    n, h, w = 4000, 32, 32
    knobs = {"prob": 0.5, "area_min": 0.02, "area_max": 0.4, "ratio_min": 0.3, "attempts": 100, **kw}
    erased, y1, x1, eh, ew = boxes_of(dropped(random_erasing(ones(n), generator=gen(1), **knobs)))
    rng = random.Random(0)
    ref = [official_random_erasing(rng, h, w, knobs["prob"], knobs["area_min"], knobs["area_max"],
                                   knobs["ratio_min"], knobs["attempts"]) for _ in range(n)]
    ref = np.array([r for r in ref if r is not None])
    # the erase rate: prob times the chance some attempt fits (the reference's own rate)
    assert binomial_ok(int(erased.sum()), n, len(ref) / n)
    if not kw:
        assert binomial_ok(int(erased.sum()), n, 0.5)  # with 100 attempts something always fits
    e = erased
    for got, want in [(eh[e] * ew[e] / (h * w), ref[:, 2] * ref[:, 3] / (h * w)),  # erased area
                      (eh[e] / ew[e], ref[:, 2] / ref[:, 3]),  # aspect h/w
                      (y1[e], ref[:, 0]), (x1[e], ref[:, 1])]:  # corners, uniform inclusive
        assert stats.ks_2samp(got, want).pvalue > 0.01
    assert (eh[e] < h).all() and (ew[e] < w).all()
    assert (y1[e] + eh[e] <= h).all() and (x1[e] + ew[e] <= w).all()


def test_random_erasing_corner_reaches_both_ends():
    # 31×31 boxes in 32×32: the corner is 0 or 1 in each axis, each about half the time
    out = random_erasing(ones(2000), prob=1.0, area_min=961 / 1024, area_max=961 / 1024, ratio_min=1.0,
                         generator=gen(2))
    erased, y1, x1, eh, ew = boxes_of(dropped(out))
    assert erased.all() and (eh == 31).all() and (ew == 31).all()
    assert binomial_ok(int(y1.sum()), 2000, 0.5) and binomial_ok(int(x1.sum()), 2000, 0.5)


def test_random_erasing_random_fill_is_gaussian_noise():
    x = torch.full((2000, 3, 32, 32), 7.0)
    out = random_erasing(x, prob=1.0, fill="random", generator=gen(3))
    hole = out != 7.0
    noise = out[hole]
    assert hole.float().mean() > 0.05
    assert abs(float(noise.mean())) < 0.01 and abs(float(noise.std()) - 1) < 0.01
    assert torch.equal(out, random_erasing(x, prob=1.0, fill="random", generator=gen(3)))  # from the generator


def test_random_erasing_prob_extremes():
    x = torch.randn(64, 3, 32, 32, generator=gen(4))
    assert torch.equal(random_erasing(x, prob=0.0, generator=gen(5)), x)
    assert dropped(random_erasing(ones(64), prob=1.0, generator=gen(5))).any((1, 2)).all()


# ------------------------------------------------------------------- hide-and-seek
SIZES = [0, 2, 4, 6, 8]


def test_hide_and_seek_hides_aligned_cells_of_a_uniform_size():
    n, h, w = 3000, 32, 32
    mask = dropped(hide_and_seek(ones(n), grid_sizes=SIZES, hide_prob=0.5, generator=gen(6)))
    # the first draw is each image's size index (white box: reads the same generator stream)
    choice = torch.randint(0, len(SIZES), (n,), generator=gen(6)).numpy()
    assert stats.chisquare(np.bincount(choice, minlength=len(SIZES))).pvalue > 0.01
    assert not mask[choice == 0].any()  # size 0: untouched
    hidden_cells = total_cells = 0
    for k, s in enumerate(SIZES[1:], start=1):
        m = mask[torch.from_numpy(choice == k)]
        corner = m[:, ::s, ::s]  # each cell's top-left pixel (border cells partial)
        expanded = corner.repeat_interleave(s, 1).repeat_interleave(s, 2)[:, :h, :w]
        assert torch.equal(m, expanded), f"hidden regions not aligned to the {s}-px grid"
        hidden_cells += int(corner.sum())
        total_cells += corner.numel()
    assert binomial_ok(hidden_cells, total_cells, 0.5)
    # every pixel is hidden with probability 0.5 · P(size != 0)
    assert abs(float(mask.float().mean()) - 0.5 * (1 - 1 / len(SIZES))) < 0.01


def test_hide_and_seek_matches_the_official_loop_on_a_fixed_grid():
    """One size, hide_prob 0.5: the number of hidden cells per image is Binomial(cells, 0.5) as the loop's."""
    n, s = 2000, 5  # 5 does not divide 32: 7×7 cells, the last row and column 2 px wide
    mask = dropped(hide_and_seek(ones(n), grid_sizes=[s], hide_prob=0.5, generator=gen(7)))
    got = mask[:, ::s, ::s].sum((1, 2)).numpy()
    rng = random.Random(1)
    want = [sum(rng.random() <= 0.5 for _ in range(0, 32, s) for _ in range(0, 32, s)) for _ in range(n)]
    assert mask[:, ::s, ::s].shape[1:] == (7, 7)
    assert stats.ks_2samp(got, want).pvalue > 0.01


# ------------------------------------------------------------------------- gridmask
def test_gridmask_drops_periodic_squares_of_side_d_minus_l():
    n, h, w, d1, d2, ratio = 600, 96, 96, 8, 20, 0.4
    mask = dropped(gridmask(ones(n, h, w), d1=d1, d2=d2, ratio=ratio, prob=1.0, generator=gen(8)))
    g = gen(8)
    torch.rand(n, generator=g)  # white box: the gate, then d
    d = torch.randint(d1, d2, (n,), generator=g)
    fractions, reference = [], []
    for m, di in zip(mask, d.tolist()):
        li = math.ceil(di * ratio)
        rows, cols = m.any(1), m.any(0)
        assert torch.equal(m, rows[:, None] & cols[None, :]), "dropped set is not a grid of squares"
        for line in (rows, cols):
            assert torch.equal(line[di:], line[:-di]), "not periodic with the drawn d"
            period = line[:di].tolist()
            start = next(i for i in range(di) if not period[i] and period[i - 1])  # where the kept stripe begins
            run = period[start:] + period[:start]  # rotate: kept stripe first, then the dropped run
            assert run == [False] * li + [True] * (di - li), (di, li, period)
        fractions.append(float(m.float().mean()))
        reference.append(((di - li) / di) ** 2)  # E over the uniform offsets
    assert abs(np.mean(fractions) - np.mean(reference)) < 0.01
    # d uniform over [d1, d2)
    assert stats.chisquare(np.bincount(d.numpy() - d1, minlength=d2 - d1)).pvalue > 0.01


def test_gridmask_l_is_the_official_ceil_and_mode_0_drops_the_stripes():
    x = ones(50, 100, 100)
    sq = dropped(gridmask(x, d1=25, d2=26, ratio=0.4, prob=1.0, generator=gen(9)))
    assert (sq.any(2).sum(1) == 4 * 15).all()  # l = ceil(25·0.4) = 10 kept, 15 dropped, 4 periods
    stripes = dropped(gridmask(x, d1=25, d2=26, ratio=0.4, prob=1.0, mode=0, generator=gen(9)))
    assert torch.equal(stripes, ~sq)


def official_rotated_mask(h, w, d, l, st_h, st_w, r, mode=1) -> np.ndarray:
    """akuxcw/GridMask grid.py Grid.__call__'s mask, line by line, for given draws: True = dropped."""
    from PIL import Image

    hh = math.ceil(math.sqrt(h * h + w * w))
    mask = np.ones((hh, hh), np.float32)
    for i in range(-1, hh // d + 1):
        s, t = d * i + st_h, d * i + st_h + l
        mask[max(min(s, hh), 0):max(min(t, hh), 0), :] *= 0
    for i in range(-1, hh // d + 1):
        s, t = d * i + st_w, d * i + st_w + l
        mask[:, max(min(s, hh), 0):max(min(t, hh), 0)] *= 0
    mask = np.asarray(Image.fromarray(np.uint8(mask)).rotate(r))
    mask = mask[(hh - h) // 2:(hh - h) // 2 + h, (hh - w) // 2:(hh - w) // 2 + w]
    return (mask == 1) if mode == 1 else (mask == 0)  # mode 1 keeps 1 − mask: the squares are dropped


def ours_rotated(h, w, d, l_ratio, st_h, st_w, r, mode=1) -> np.ndarray:
    """augbench's mask for the same draws: the canvas offsets as crop offsets δ = (st − (hh − h)//2) mod d."""
    from augbench.augment.erasing import gridmask_apply

    hh = math.ceil(math.sqrt(h * h + w * w))
    delta = torch.tensor([[(st_h - (hh - h) // 2) % d], [(st_w - (hh - w) // 2) % d]], dtype=torch.float32)
    out = gridmask_apply(ones(1, h, w), d2=d + 1, ratio=l_ratio, mode=mode, apply=torch.tensor([True]),
                         d=torch.tensor([d]), u=(delta + 0.5) / d, angle=torch.tensor([r]))
    return dropped(out)[0].numpy()


@pytest.mark.parametrize("h,w", [(32, 32), (28, 28), (40, 24)])
def test_gridmask_rotation_follows_the_official_pil_rotate(h, w):
    rng = random.Random(h * 100 + w)
    agree, total = 0, 0
    for _ in range(60):
        d = rng.randrange(6, 20)
        l_ratio = rng.choice([0.4, 0.5, 0.6])
        st_h, st_w, r, mode = rng.randrange(d), rng.randrange(d), rng.randrange(360), rng.randrange(2)
        theirs = official_rotated_mask(h, w, d, math.ceil(d * l_ratio), st_h, st_w, r, mode)
        ours = ours_rotated(h, w, d, l_ratio, st_h, st_w, r, mode)
        if r % 90 == 0 and h == w:  # quarter turns map pixel centres onto pixel centres: exact
            assert np.array_equal(ours, theirs), r
        agree += int((ours == theirs).sum())
        total += ours.size
    # elsewhere a source point on a grid line may round the other way (float32 here, PIL's own arithmetic)
    assert agree / total > 0.995, agree / total


def test_gridmask_rotation_draws_angles_and_keeps_the_unrotated_stream():
    x = ones(400)
    plain = gridmask(x, d1=8, d2=12, ratio=0.5, prob=0.7, generator=gen(3))
    assert torch.equal(gridmask(x, d1=8, d2=12, ratio=0.5, prob=0.7, rotate=1, generator=gen(3)), plain)  # official 1: none
    turned = dropped(gridmask(x, d1=8, d2=12, ratio=0.5, prob=0.7, rotate=360, generator=gen(3)))
    applied = dropped(plain).any((1, 2))
    assert torch.equal(turned.any((1, 2)), applied)  # the same images masked: the stream before the angle is unchanged
    # a turned grid is no longer a product of rows and columns for most images
    separable = [torch.equal(m, m.any(1)[:, None] & m.any(0)[None, :]) for m in turned[applied]]
    assert sum(separable) < 0.2 * len(separable)
    # the dropped fraction stays ((d - l)/d)² on average, whatever the angle
    assert abs(turned[applied].float().mean().item() - dropped(plain)[applied].float().mean().item()) < 0.02
    assert "angle" not in gridmask_draw(400, d1=8, d2=12, prob=0.7, generator=gen(3), device="cpu", rotate=1)
    angles = gridmask_draw(400, d1=8, d2=12, prob=0.7, generator=gen(3), device="cpu", rotate=360)["angle"]
    assert 0 <= angles.min() and angles.max() < 360 and angles.unique().numel() > 200  # whole degrees in [0, 360)


def test_gridmask_ramp():
    cb = GridMask(prob=0.8, seed=0)
    spec = SPECS["cifar10"]
    cb.prepare(spec.mean, spec.std, "cpu")
    assert cb.ramp(0, 10) == 0.0 and cb.ramp(5, 10) == pytest.approx(0.4) and cb.ramp(10, 10) == 0.8
    assert GridMask(prob=0.8, ramp_epochs=4).ramp(9, 10) == 0.8  # official st_epochs < epochs
    rate = {}
    for epoch in (0, 5, 9):
        cb.on_train_epoch_start(SimpleNamespace(current_epoch=epoch, max_epochs=10), None)
        batch = {"image": ones(4000), "target": torch.zeros(4000, dtype=torch.long)}
        cb.apply(batch)
        rate[epoch] = dropped(batch["image"]).any((1, 2)).float().mean().item()
    assert rate[0] == 0.0  # epoch 0: never applied
    assert abs(rate[5] - 0.4) < 0.03 and abs(rate[9] - 0.72) < 0.03  # prob·epoch/max_epochs
    last = GridMask(prob=0.8, ramp_epochs=9)
    last.prepare(spec.mean, spec.std, "cpu")
    last.on_train_epoch_start(SimpleNamespace(current_epoch=9, max_epochs=10), None)  # the last epoch
    assert last.current_prob == 0.8
    with pytest.raises(ValueError, match="aug.ramp_epochs"):
        cb.ramp(1, -1)


# ------------------------------------------------------------------------ callbacks
CALLBACKS = [RandomErasing, HideAndSeek, GridMask]


@pytest.mark.parametrize("cls", CALLBACKS)
def test_callback_keeps_targets_and_inputs(cls):
    spec = SPECS["cifar10"]
    cb = cls(seed=1)
    cb.prepare(spec.mean, spec.std, "cpu")
    cb.on_train_epoch_start(SimpleNamespace(current_epoch=5, max_epochs=5), None)
    image = torch.randn(32, 3, 32, 32, generator=gen(10))
    target = torch.arange(32)
    keep_image, keep_target = image.clone(), target.clone()
    batch = {"image": image, "target": target}
    cb.apply(batch)
    assert set(batch) == {"image", "target"}  # regional dropout is not mixing: no targets/weights
    assert batch["target"] is target and torch.equal(target, keep_target)
    assert torch.equal(image, keep_image), "input modified in place"
    assert not torch.equal(batch["image"], image)
    assert batch["image"].shape == image.shape and batch["image"].dtype == image.dtype
    # reproducible per (seed, epoch): reseeding restarts the draws
    again = {"image": image, "target": target}
    cb.on_train_epoch_start(SimpleNamespace(current_epoch=5, max_epochs=5), None)
    cb.apply(again)
    assert torch.equal(again["image"], batch["image"])


@pytest.mark.parametrize("cls,kw,key", [
    (RandomErasing, {"prob": 1.5}, "aug.prob"), (RandomErasing, {"area_min": 0.0}, "aug.area_min"),
    (RandomErasing, {"area_max": 0.01}, "aug.area_max"), (RandomErasing, {"ratio_min": 2.0}, "aug.ratio_min"),
    (RandomErasing, {"attempts": 0}, "aug.attempts"), (RandomErasing, {"fill": "mean"}, "aug.fill"),
    (HideAndSeek, {"grid_sizes": []}, "aug.grid_sizes"), (HideAndSeek, {"grid_sizes": [0, -4]}, "aug.grid_sizes"),
    (HideAndSeek, {"grid_sizes": [2.5]}, "aug.grid_sizes"), (HideAndSeek, {"hide_prob": -0.1}, "aug.hide_prob"),
    (GridMask, {"d1": 0}, "aug.d1"), (GridMask, {"d1": 24, "d2": 24}, "aug.d2"),
    (GridMask, {"ratio": 1.0}, "aug.ratio"),
    (GridMask, {"rotate": -1}, "aug.rotate"), (GridMask, {"rotate": 1.5}, "aug.rotate"),
    (GridMask, {"mode": 2}, "aug.mode"), (GridMask, {"prob": 2}, "aug.prob"),
    (GridMask, {"ramp_epochs": 0}, "aug.ramp_epochs"),
])
def test_invalid_knobs_name_the_key(cls, kw, key):
    with pytest.raises(ValueError, match=key):
        cls(**kw)


@pytest.mark.parametrize("name,cls", [("random_erasing", RandomErasing), ("hide_and_seek", HideAndSeek),
                                      ("gridmask", GridMask)])
def test_config_composes_and_instantiates(tmp_path, name, cls):
    from augbench.callbacks import CropFlip

    cfg = make_cfg(tmp_path, [f"aug={name}"])
    callbacks = [hydra.utils.instantiate(c) for c in cfg.aug.callbacks]
    assert [type(c) for c in callbacks] == [CropFlip, cls]


@pytest.mark.parametrize("name", ["random_erasing", "hide_and_seek", "gridmask"])
def test_training_smoke(tmp_path, fake_cifar, name):
    import json

    training.train(make_cfg(tmp_path / "run", TINY + ["model=lenet", f"aug={name}"], fake_cifar))
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "completed"

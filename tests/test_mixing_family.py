"""The wider mixing family: RICAP (K = 4 partners) and timm's mixup/CutMix switch (K = 2)."""

from __future__ import annotations

import hydra
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from augbench.augment.mixing import cutmix, mixup, mixup_cutmix, ricap, ricap_draw, ricap_patch
from augbench.callbacks.mixing import RICAP, MixupCutMix
from augbench.module import Classifier
from augbench.training import train
from conftest import TINY, make_cfg


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def const_batch(n: int, h: int, w: int, c: int = 1) -> torch.Tensor:
    """Image i filled with the value i, so a pixel tells which image it came from."""
    return torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, c, h, w).clone()


@pytest.fixture
def no_host_sync(monkeypatch):
    """Every Tensor → Python conversion raises: a host sync on a GPU."""
    def sync(*args, **kwargs):
        raise AssertionError("host sync")

    for name in ("item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, sync)


# =============================================================================== RICAP
def official_ricap(images: np.ndarray, target: np.ndarray, w: int, h: int, perms, xs, ys):
    """jackryo/ricap trainers.py, line by line, in numpy, for given draws (np.random replaced by them).

    The official code calls the array's dim 2 ``x`` (I_x = size()[2]), so its ``w`` runs down the
    rows; applied to the transposed batch it is the layout of ``ricap_patch`` (w across the columns)."""
    I_x, I_y = images.shape[2:]
    w_ = [w, I_x - w, w, I_x - w]
    h_ = [h, h, I_y - h, I_y - h]
    cropped_images, c_, W_ = {}, {}, {}
    for k in range(4):
        index = perms[k]
        x_k, y_k = xs[k], ys[k]
        assert 0 <= x_k <= I_x - w_[k] and 0 <= y_k <= I_y - h_[k]
        cropped_images[k] = images[index][:, :, x_k:x_k + w_[k], y_k:y_k + h_[k]]
        c_[k] = target[index]
        W_[k] = w_[k] * h_[k] / (I_x * I_y)
    patched_images = np.concatenate(
        (np.concatenate((cropped_images[0], cropped_images[1]), 2),
         np.concatenate((cropped_images[2], cropped_images[3]), 2)),
        3)
    return patched_images, np.stack([c_[k] for k in range(4)], 1), np.array([W_[k] for k in range(4)])


def check_against_official(x, y, d):
    out, targets, weights = ricap_patch(x, y, **d)
    ref_x, ref_t, ref_w = official_ricap(
        x.numpy().swapaxes(2, 3), y.numpy(), int(d["bw"]), int(d["bh"]), d["perm"].numpy(),
        d["ox"].tolist(), d["oy"].tolist())
    np.testing.assert_array_equal(out.numpy(), ref_x.swapaxes(2, 3))  # bit-equal
    np.testing.assert_array_equal(targets.numpy(), ref_t)
    assert targets.dtype == torch.long and weights.dtype == torch.float32 and weights.shape == (x.shape[0], 4)
    np.testing.assert_allclose(weights.numpy(), np.broadcast_to(ref_w, weights.shape), rtol=1e-6)
    torch.testing.assert_close(weights.sum(1), torch.ones(x.shape[0]))


@pytest.mark.parametrize("h, w", [(32, 32), (12, 20), (7, 5)])
@pytest.mark.parametrize("seed", range(6))
def test_ricap_matches_official_code_for_the_same_draws(h, w, seed):
    n = 6
    x, y = torch.randn(n, 3, h, w), torch.randint(0, 10, (n,))
    d = ricap_draw(n, h, w, beta=0.3, generator=gen(seed), device="cpu")
    check_against_official(x, y, d)
    # ricap() is exactly ricap_draw then ricap_patch on the same generator
    got = ricap(x, y, beta=0.3, generator=gen(seed))
    want = ricap_patch(x, y, **ricap_draw(n, h, w, beta=0.3, generator=gen(seed), device="cpu"))
    assert all(torch.equal(a, b) for a, b in zip(got, want))


@pytest.mark.parametrize("bw, bh", [(0, 0), (8, 0), (0, 5), (8, 8), (3, 8), (1, 7)])
def test_ricap_degenerate_boundaries(bw, bh):
    """w or h at 0 or at the border: empty patches get weight 0, the rest still tiles the image."""
    n, h, w = 5, 8, 8
    x, y = torch.randn(n, 2, h, w), torch.arange(n)
    g = gen(bw * 10 + bh)
    pw = torch.tensor([bw, w - bw, bw, w - bw])
    ph = torch.tensor([bh, bh, h - bh, h - bh])
    d = {"bw": torch.tensor(bw), "bh": torch.tensor(bh),
         "perm": torch.stack([torch.randperm(n, generator=g) for _ in range(4)]),
         "ox": (torch.rand(4, generator=g) * (w - pw + 1)).long(),
         "oy": (torch.rand(4, generator=g) * (h - ph + 1)).long()}
    check_against_official(x, y, d)


def test_ricap_boundary_is_rounded_beta_and_origins_uniform():
    """w, h ~ round(W·Beta(0.3, 0.3)) (two-sample KS against numpy's sampler); each crop origin uniform
    on [0, W − w_k] (randomised PIT: (o + V)/(m + 1) ~ U(0, 1))."""
    n, h, w, draws = 3, 32, 32, 3000
    g = gen(7)
    rows = [ricap_draw(n, h, w, beta=0.3, generator=g, device="cpu") for _ in range(draws)]
    bw = np.array([int(r["bw"]) for r in rows])
    bh = np.array([int(r["bh"]) for r in rows])
    rng = np.random.default_rng(0)
    ref = np.round(w * rng.beta(0.3, 0.3, size=20000)).astype(int)
    assert stats.ks_2samp(bw, ref).pvalue > 0.01
    assert stats.ks_2samp(bh, ref).pvalue > 0.01
    assert bw.min() >= 0 and bw.max() <= w and np.mean((bw == 0) | (bw == w)) > 0.05  # heavy ends at β = 0.3
    ox = np.stack([r["ox"].numpy() for r in rows])  # (draws, 4)
    oy = np.stack([r["oy"].numpy() for r in rows])
    pw = np.stack([bw, w - bw, bw, w - bw], 1)
    ph = np.stack([bh, bh, h - bh, h - bh], 1)
    assert (ox >= 0).all() and (ox <= w - pw).all() and (oy >= 0).all() and (oy <= h - ph).all()
    for o, m in ((ox, w - pw), (oy, h - ph)):
        u = (o + rng.random(o.shape)) / (m + 1)
        assert stats.kstest(u.ravel(), "uniform").pvalue > 0.01
    perms = np.stack([r["perm"].numpy() for r in rows])  # (draws, 4, n): each a permutation, independent
    assert (np.sort(perms, -1) == np.arange(n)).all()
    assert np.mean((perms[:, 0] == perms[:, 1]).all(-1)) < 0.3  # 1/3! = 0.17 by chance


def test_ricap_weights_are_patch_areas():
    """Image i filled with value i and labelled i: the share of output pixels from each source image
    equals the summed weights of the partners with that label."""
    n, h, w = 7, 32, 32
    x, y = const_batch(n, h, w), torch.arange(n)
    for seed in range(20):
        out, targets, weights = ricap(x, y, beta=0.3, generator=gen(seed))
        d = ricap_draw(n, h, w, beta=0.3, generator=gen(seed), device="cpu")
        area = torch.stack([d["bw"] * d["bh"], (w - d["bw"]) * d["bh"], d["bw"] * (h - d["bh"]),
                            (w - d["bw"]) * (h - d["bh"])])
        assert torch.equal(weights * (h * w), area.float().expand(n, 4))  # exact: H·W = 2^10
        share = torch.stack([(out[:, 0] == v).float().mean((1, 2)) for v in range(n)], 1)  # (N, n)
        by_label = torch.zeros(n, n).scatter_add_(1, targets, weights)
        torch.testing.assert_close(share, by_label)


def test_ricap_pure_reproducible_on_the_generator():
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    xc, yc = x.clone(), y.clone()
    a = ricap(x, y, beta=0.3, generator=gen(3))
    assert torch.equal(x, xc) and torch.equal(y, yc), "input modified in place"
    b = ricap(x, y, beta=0.3, generator=gen(3))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert a[0].data_ptr() != x.data_ptr() and a[0].is_contiguous()
    c = ricap(x, y, beta=0.3, generator=gen(4))
    assert not torch.equal(a[0], c[0])


# ====================================================================== mixup ⟷ cutmix
KW = {"mixup_alpha": 0.8, "cutmix_alpha": 1.0}


def replay(x, y, seed, prob, switch_prob, **kw):
    """The construction stated in mixup_cutmix's docstring, for the same generator state."""
    g = gen(seed)
    u = torch.rand(2, generator=g)
    m = mixup(x, y, alpha=kw["mixup_alpha"], generator=g)
    c = cutmix(x, y, alpha=kw["cutmix_alpha"], prob=1.0, generator=g)
    if not u[0] < prob:
        return "none", (x, y, torch.ones(x.shape[0]))
    return ("cutmix", c) if u[1] < switch_prob else ("mixup", m)


def test_mixup_cutmix_branches_equal_mixup_and_cutmix():
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    seen = set()
    for seed in range(40):
        got = mixup_cutmix(x, y, prob=0.7, switch_prob=0.5, generator=gen(seed), **KW)
        branch, want = replay(x, y, seed, 0.7, 0.5, **KW)
        seen.add(branch)
        assert all(torch.equal(a, b) for a, b in zip(got, want)), branch
        assert got[1].dtype == torch.long and got[2].dtype == torch.float32 and got[2].shape == (8,)
    assert seen == {"none", "mixup", "cutmix"}


def classify(x, out, lam):
    if torch.equal(out, x) and bool((lam == 1).all()):
        return 0  # unmixed
    return 2 if torch.equal(out, out.round()) else 1  # CutMix pastes whole pixels; mixup blends


@pytest.mark.parametrize("prob, switch_prob", [(1.0, 0.5), (0.7, 0.3)])
def test_mixup_cutmix_gate_and_switch_shares(prob, switch_prob):
    """χ² over (unmixed, mixup, CutMix) against (1 − p, p(1 − s), p·s), read from the outputs. α = 50
    keeps λ near 1/2: a CutMix box is never empty, a mixup blend never whole."""
    x, y = const_batch(8, 32, 32), torch.arange(8)
    g, batches = gen(11), 2000
    counts = np.zeros(3, int)
    for _ in range(batches):
        out, _, lam = mixup_cutmix(x, y, mixup_alpha=50.0, cutmix_alpha=50.0, prob=prob,
                                   switch_prob=switch_prob, generator=g)
        counts[classify(x, out, lam)] += 1
    expected = batches * np.array([1 - prob, prob * (1 - switch_prob), prob * switch_prob])
    keep = expected > 0
    assert counts[~keep].sum() == 0
    assert stats.chisquare(counts[keep], expected[keep]).pvalue > 0.01
    mixed = counts[1:].sum()
    assert stats.binomtest(int(counts[2]), int(mixed), switch_prob).pvalue > 0.01


@pytest.mark.parametrize("switch_prob, branch", [(0.0, 1), (1.0, 2)])
def test_mixup_cutmix_switch_at_its_ends(switch_prob, branch):
    x, y = const_batch(8, 32, 32), torch.arange(8)
    g = gen(5)
    for _ in range(30):
        out, _, lam = mixup_cutmix(x, y, mixup_alpha=50.0, cutmix_alpha=50.0, prob=1.0,
                                   switch_prob=switch_prob, generator=g)
        assert classify(x, out, lam) == branch


def test_mixup_cutmix_prob_zero_leaves_the_batch_unchanged():
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    xc = x.clone()
    cb = MixupCutMix(prob=0.0)
    cb.prepare([0.5] * 3, [0.25] * 3, "cpu")
    for _ in range(10):
        batch = {"image": x, "target": y}
        cb.apply(batch)
        assert torch.equal(batch["image"], xc)
        assert torch.equal(batch["targets"], torch.stack([y, y], 1))
        assert torch.equal(batch["weights"], torch.tensor([[1.0, 0.0]]).expand(8, 2))
    assert torch.equal(x, xc)


def test_mixup_cutmix_pure_and_reproducible():
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    xc, yc = x.clone(), y.clone()
    a = mixup_cutmix(x, y, prob=1.0, switch_prob=0.5, generator=gen(3), **KW)
    b = mixup_cutmix(x, y, prob=1.0, switch_prob=0.5, generator=gen(3), **KW)
    assert torch.equal(x, xc) and torch.equal(y, yc), "input modified in place"
    assert all(torch.equal(u, v) for u, v in zip(a, b)) and a[0].data_ptr() != x.data_ptr()


def test_no_host_syncs(no_host_sync):
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    for seed in range(5):
        ricap(x, y, beta=0.3, generator=gen(seed))
        mixup_cutmix(x, y, prob=0.5, switch_prob=0.5, generator=gen(seed), **KW)


# ============================================================== callbacks, loss, configs
CALLBACKS = {"ricap": (RICAP, 4), "mixup_cutmix": (MixupCutMix, 2)}


@pytest.mark.parametrize("name", CALLBACKS)
def test_callbacks_write_partners_without_touching_inputs(name):
    cls, k = CALLBACKS[name]
    cb = cls(seed=1)
    cb.prepare([0.5] * 3, [0.25] * 3, "cpu")
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    xc, yc = x.clone(), y.clone()
    for _ in range(5):
        batch = {"image": x, "target": y}
        cb.apply(batch)
        t, w = batch["targets"], batch["weights"]
        assert t.shape == (16, k) and t.dtype == torch.long
        assert w.shape == (16, k) and w.dtype == torch.float32
        torch.testing.assert_close(w.sum(1), torch.ones(16))
        assert (w >= 0).all() and batch["image"] is not x
        assert torch.equal(x, xc) and torch.equal(y, yc), "input modified in place"
    if name == "mixup_cutmix":
        assert torch.equal(t[:, 0], y)


@pytest.mark.parametrize("make, knob", [
    (lambda: RICAP(beta=0.0), "aug.beta"),
    (lambda: RICAP(beta=float("nan")), "aug.beta"),
    (lambda: MixupCutMix(mixup_alpha=-1.0), "aug.mixup_alpha"),
    (lambda: MixupCutMix(cutmix_alpha=0.0), "aug.cutmix_alpha"),
    (lambda: MixupCutMix(prob=1.5), "aug.prob"),
    (lambda: MixupCutMix(switch_prob=-0.1), "aug.switch_prob"),
    (lambda: MixupCutMix(switch_prob=2.0), "aug.switch_prob"),
])
def test_invalid_knobs_raise(make, knob):
    with pytest.raises(ValueError, match=knob.replace(".", r"\.")):
        make()


def test_training_loss_with_four_ricap_partners():
    torch.manual_seed(0)
    model = Classifier("lenet", 3, 10).eval()  # eval: the same forward twice
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    img, targets, weights = ricap(x, y, beta=0.3, generator=gen(2))
    assert len(set(weights[0].tolist())) > 1  # a genuinely four-way mix for this seed
    batch = {"image": img, "target": y, "targets": targets, "weights": weights}
    loss = model.training_loss(batch, 0)
    with torch.no_grad():
        logits = model(img)
    want = sum(weights[:, k] * F.cross_entropy(logits, targets[:, k], reduction="none") for k in range(4)).mean()
    torch.testing.assert_close(loss.detach(), want)


@pytest.mark.parametrize("name, cls", [("ricap", RICAP), ("mixup_cutmix", MixupCutMix)])
def test_config_composes_and_instantiates(tmp_path, name, cls):
    cfg = make_cfg(tmp_path, [f"aug={name}"])
    cbs = [hydra.utils.instantiate(c) for c in cfg.aug.callbacks]
    assert cfg.aug.name == name and type(cbs[0]).__name__ == "CropFlip" and isinstance(cbs[1], cls)
    if name == "ricap":
        assert cbs[1].beta == 0.3
    else:
        assert (cbs[1].mixup_alpha, cbs[1].cutmix_alpha, cbs[1].prob, cbs[1].switch_prob) == (1.0, 1.0, 1.0, 0.5)


@pytest.mark.parametrize("name", ["ricap", "mixup_cutmix"])
def test_training_smoke(tmp_path, fake_cifar, name):
    metrics = train(make_cfg(tmp_path / "run", TINY + ["model=lenet", f"aug={name}"], fake_cifar))
    assert metrics["status"] == "completed"


def test_mixup_cutmix_branches_equal_mixup_and_cutmix_at_alpha_1():
    """mixup's α = 1 draws its λ in the same call as the gate and switch: still the stated construction."""
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    kw, seen = {"mixup_alpha": 1.0, "cutmix_alpha": 1.0}, set()
    for seed in range(40):
        got = mixup_cutmix(x, y, prob=0.7, switch_prob=0.5, generator=gen(seed), **kw)
        branch, want = replay(x, y, seed, 0.7, 0.5, **kw)
        seen.add(branch)
        assert all(torch.equal(a, b) for a, b in zip(got, want)), branch
    assert seen == {"none", "mixup", "cutmix"}

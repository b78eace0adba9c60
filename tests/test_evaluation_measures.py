"""Calibration, FGSM, occlusion, in-between-class and OOD measures, on tiny CPU models."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassCalibrationError

from augbench.evaluation.adversarial import fgsm, fgsm_examples
from augbench.evaluation.calibration import calibration, reliability_diagram
from augbench.evaluation.common import accuracy, normalise, predict_logits, to_unit
from augbench.evaluation.occlusion import center_mask, draw_pairs, in_between, occlusion, plot_occlusion
from augbench.evaluation.ood import adapt_images, auroc, ood, ood_metrics, synthetic_sets

MEAN, STD = (0.5,), (0.25,)


def separable_set(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes whose images differ only by ±3 grey levels on average: easy to learn, yet a
    few levels of FGSM flip them."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    noise = torch.randint(-20, 21, (n, 1, 32, 32), generator=g)
    return (128 + 3 * (2 * y.view(-1, 1, 1, 1) - 1) + noise).to(torch.uint8), y


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    x, y = separable_set(512, seed=1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32 * 32, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    z = normalise(to_unit(x), MEAN, STD)
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(model(z), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    xt, yt = separable_set(400, seed=2)
    return model.eval(), xt, yt


@pytest.fixture(scope="module")
def conv():
    """A random conv net over 10 classes, for the measures that need no training."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4),
                                torch.nn.Flatten(), torch.nn.Linear(128, 10)).eval()
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (300, 3, 32, 32), generator=g, dtype=torch.uint8)
    return model, x, torch.randint(0, 10, (300,), generator=g)


class Spy(torch.nn.Module):
    """Records the normalised batches it is given and whether it was in train mode; predicts class 0."""

    def __init__(self):
        super().__init__()
        self.seen: list[torch.Tensor] = []
        self.modes: list[bool] = []

    def forward(self, z):
        self.seen.append(z.clone())
        self.modes.append(self.training)
        return torch.zeros(len(z), 2)


# --- calibration -----------------------------------------------------------------------------------

def test_calibration_equals_torchmetrics():
    g = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(3000, 10, generator=g)
    logits[:200, 0] += 40  # float32 softmax gives confidence exactly 1.0: torchmetrics' extra bin
    labels = torch.randint(0, 10, (3000,), generator=g)
    labels[:100] = 0
    cal = calibration(logits, labels)
    for norm, key in (("l1", "ece"), ("max", "mce")):
        ref = MulticlassCalibrationError(num_classes=10, n_bins=15, norm=norm)(logits, labels).item()
        assert cal[key] == pytest.approx(ref, abs=1e-6), key
    bins = cal["bins"]
    assert all(len(v) == 16 for v in bins.values())
    assert sum(bins["count"]) == 3000 and bins["count"][-1] >= 200
    assert bins["lower"][-1] == bins["upper"][-1] == 1.0
    assert cal["nll"] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)


def test_overconfidence_and_ece_by_hand():
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.62, 0.38], [0.62, 0.38]])
    labels = torch.tensor([0, 1, 0, 0])
    cal = calibration(probs.log(), labels)
    # bin of 0.9: accuracy 0.5, gap 0.4; bin of 0.62: accuracy 1, underconfident (no overconfidence)
    assert cal["overconfidence"] == pytest.approx(0.5 * 0.9 * 0.4, abs=1e-6)
    assert cal["ece"] == pytest.approx(0.5 * 0.4 + 0.5 * 0.38, abs=1e-6)
    assert cal["mce"] == pytest.approx(0.4, abs=1e-6)


# --- FGSM ------------------------------------------------------------------------------------------

def test_fgsm_stays_within_eps_on_the_pixel_grid(trained):
    model, x, y = trained
    for eps in (1, 4):
        adv = fgsm_examples(model, x, y, MEAN, STD, eps, batch_size=128)
        assert adv.min() >= 0 and adv.max() <= 1
        delta = (adv * 255).round().long() - x.long()
        assert delta.abs().max().item() == eps
        assert (adv - to_unit(x)).abs().max().item() <= eps / 255 + 1e-6


def test_fgsm_eps0_is_clean_and_attacks_hurt(trained):
    model, x, y = trained
    model.train()
    clean = accuracy(predict_logits(model, x, MEAN, STD), y)
    assert clean > 0.95
    res = fgsm(model, x, y, MEAN, STD, eps_pixels=(0, 1, 2, 4, 8), batch_size=128)
    assert list(res) == ["0/255", "1/255", "2/255", "4/255", "8/255"]
    assert res["0/255"] == clean
    assert res["8/255"] < clean - 0.5
    accs = list(res.values())
    assert all(a >= b for a, b in itertools.pairwise(accs))  # a linear model: monotone in ε
    assert model.training  # the caller's mode is restored
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    model.eval()


# --- occlusion -------------------------------------------------------------------------------------

def test_occlusion_untouched_cases_equal_clean(conv):
    model, x, y = conv
    clean = accuracy(predict_logits(model, x, MEAN * 3, STD * 3), y)
    center = occlusion(model, x, y, MEAN * 3, STD * 3, sizes=(0, 16, 32), mode="center", batch_size=128)
    boundary = occlusion(model, x, y, MEAN * 3, STD * 3, sizes=(0, 32), mode="boundary")
    assert center[0] == clean and boundary[32] == clean
    assert center[32] == boundary[0]  # both: every pixel at the mean
    with pytest.raises(ValueError):
        occlusion(model, x, y, MEAN * 3, STD * 3, mode="corner")


def test_occlusion_zeroes_exactly_the_hole():
    x = torch.full((2, 1, 32, 32), 200, dtype=torch.uint8)
    y = torch.zeros(2, dtype=torch.long)
    spy = Spy()  # in train mode, as a fresh module is
    occlusion(spy, x, y, MEAN, STD, sizes=(8,), mode="center")
    occlusion(spy, x, y, MEAN, STD, sizes=(8,), mode="boundary")
    assert spy.modes == [False, False] and spy.training  # evaluated in eval mode, mode restored
    clean = normalise(to_unit(x), MEAN, STD)
    hole = torch.zeros(32, 32, dtype=torch.bool)
    hole[12:20, 12:20] = True
    for z, hidden in zip(spy.seen, (hole, ~hole)):
        assert (z[..., hidden] == 0).all()
        assert torch.equal(z[..., ~hidden], clean[..., ~hidden])
    odd = center_mask(32, 32, 5)[0, 0]  # (32 - 5) // 2 = 13: rows/columns 13..17
    assert odd.sum() == 25 and odd[13:18, 13:18].all()


# --- in-between class ------------------------------------------------------------------------------

def test_draw_pairs_cross_classes_and_is_seeded():
    labels = torch.tensor([0] * 50 + [1] * 5 + [2] * 45)
    a, b = draw_pairs(labels, 80, seed=4)
    assert len(a) == 80 and len(set(a.tolist())) == 80
    assert (labels[a] != labels[b]).all()
    assert len(set(b.tolist())) > 40  # partners drawn across the other classes, not one per class
    a2, b2 = draw_pairs(labels, 80, seed=4)
    assert torch.equal(a, a2) and torch.equal(b, b2)
    assert not torch.equal(b, draw_pairs(labels, 80, seed=5)[1])
    with pytest.raises(ValueError):
        draw_pairs(torch.zeros(10, dtype=torch.long), 5)


def test_in_between_endpoints_are_the_pair(conv):
    model, x, y = conv
    res = in_between(model, x, y, MEAN * 3, STD * 3, n_pairs=200, seed=1, sizes=(0, 16, 32), batch_size=64)
    assert res["pairs"] == 200 and list(res["mixup"])[:2] == ["0.0", "0.1"] and list(res["cutmix"]) == ["0", "16", "32"]
    a, b = draw_pairs(y, 200, seed=1)
    pred = predict_logits(model, x, MEAN * 3, STD * 3).argmax(1)
    on_a = (pred[a] == y[a]).float().mean().item()
    on_b = (pred[b] == y[b]).float().mean().item()
    assert res["mixup"]["1.0"]["a"] == on_a and res["mixup"]["0.0"]["b"] == on_b
    assert res["cutmix"]["0"] == res["mixup"]["1.0"] and res["cutmix"]["32"] == res["mixup"]["0.0"]
    for r in itertools.chain(res["mixup"].values(), res["cutmix"].values()):
        assert r["either"] == pytest.approx(r["a"] + r["b"]) and r["either"] + r["neither"] == pytest.approx(1)
    assert res == in_between(model, x, y, MEAN * 3, STD * 3, n_pairs=200, seed=1, sizes=(0, 16, 32))


# --- OOD -------------------------------------------------------------------------------------------

def brute_auroc(pos: torch.Tensor, neg: torch.Tensor) -> float:
    diff = pos.view(-1, 1) - neg.view(1, -1)
    return ((diff > 0).double() + 0.5 * (diff == 0).double()).mean().item()


def test_ood_metrics_extremes_and_ties():
    pos, neg = torch.linspace(0.6, 1, 100), torch.linspace(0, 0.5, 70)
    assert ood_metrics(pos, neg) == {"auroc": 1.0, "tnr_at_tpr95": 1.0, "detection_acc": 1.0}
    same = torch.rand(500, generator=torch.Generator().manual_seed(0))
    assert ood_metrics(same, same)["auroc"] == 0.5
    g = torch.Generator().manual_seed(1)
    pos, neg = torch.randint(0, 6, (300,), generator=g).float(), torch.randint(0, 5, (200,), generator=g).float()
    assert auroc(pos, neg) == pytest.approx(brute_auroc(pos, neg), abs=1e-12)
    got = ood_metrics(pos, neg)["detection_acc"]
    want = max(0.5 * ((pos >= t).double().mean() + (neg < t).double().mean()).item()
               for t in [*pos.unique().tolist(), float("inf")])
    assert got == pytest.approx(want, abs=1e-12)


def test_tnr_at_tpr95_uses_the_largest_threshold_keeping_95pct():
    pos = torch.arange(1, 101) / 100  # the 95th largest is 0.06
    neg = torch.arange(0, 10) / 100  # 0.00 .. 0.05 fall below it
    assert ood_metrics(pos, neg)["tnr_at_tpr95"] == pytest.approx(0.6)


def test_synthetic_sets_and_adapt_images():
    sets = synthetic_sets(64, (3, 32, 32), seed=0)
    assert set(sets) == {"uniform", "gaussian"}
    for v in sets.values():
        assert v.shape == (64, 3, 32, 32) and v.dtype == torch.uint8
    again, other = synthetic_sets(64, (3, 32, 32), seed=0), synthetic_sets(64, (3, 32, 32), seed=1)
    assert all(torch.equal(sets[k], again[k]) and not torch.equal(sets[k], other[k]) for k in sets)
    zeros = (sets["gaussian"] == 0).float().mean().item()
    assert 0.28 < zeros < 0.34  # P(N(0.5, 1) < 0) = 0.31
    gray = torch.randint(0, 256, (4, 1, 32, 32), dtype=torch.uint8)
    rgb = adapt_images(gray, 3)
    assert rgb.shape == (4, 3, 32, 32) and all(torch.equal(rgb[:, c], gray[:, 0]) for c in range(3))
    assert adapt_images(gray, 1) is gray
    colours = torch.tensor([[255, 0, 0], [0, 255, 0], [255, 255, 255]], dtype=torch.uint8).view(3, 3, 1, 1)
    assert adapt_images(colours, 1).flatten().tolist() == [76, 150, 255]
    with pytest.raises(ValueError):
        adapt_images(gray, 2)


def test_ood_end_to_end(trained):
    model, x, _ = trained
    res = ood(model, x, synthetic_sets(100, (3, 32, 32), seed=0), MEAN, STD, batch_size=64)
    assert set(res) == {"uniform", "gaussian"}
    assert all(0 <= v <= 1 for m in res.values() for v in m.values())
    assert set(res["uniform"]) == {"auroc", "tnr_at_tpr95", "detection_acc"}


# --- figures ---------------------------------------------------------------------------------------

def test_plots_are_pngs_written_atomically(tmp_path, conv):
    model, x, y = conv
    cal = calibration(predict_logits(model, x, MEAN * 3, STD * 3), y)
    reliability_diagram(cal, tmp_path / "reliability.png", "random conv net")
    curves = {"center": {0: 0.9, 16: 0.5, 32: 0.1}, "boundary": {"0": 0.1, "16": 0.3, "32": 0.9}}
    plot_occlusion(curves, tmp_path / "occlusion.png", "occlusion")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["occlusion.png", "reliability.png"]
    for p in tmp_path.iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

"""The training loss of K-partner batches, and label smoothing."""

import pytest
import torch
import torch.nn.functional as F

from augbench import augment
from augbench.callbacks import CropFlip, CutMix, Mixup
from augbench.data import SPECS
from augbench.module import Classifier


def mixed_batch(cls, seed=0, n=16):
    spec = SPECS["cifar10"]
    g = torch.Generator().manual_seed(seed)
    batch = {"image": torch.randn(n, 3, 32, 32, generator=g), "target": torch.randint(0, 10, (n,), generator=g)}
    for cb in (CropFlip(seed=seed), cls(seed=seed, **({"prob": 0.7} if cls is CutMix else {}))):
        cb.prepare(spec.mean, spec.std, "cpu")
        cb.apply(batch)
    return batch


def step(model, batch):
    model.train_sums.zero_()
    loss = model.training_loss(batch, 0)
    return loss, model.train_sums[1].clone()  # one step: the sum is that step's accuracy


@pytest.mark.parametrize("cls", [Mixup, CutMix])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_k_partner_loss_equals_the_two_partner_loss_bit_for_bit(cls, seed):
    torch.manual_seed(seed)
    model = Classifier("lenet", 3, 10)
    batch = mixed_batch(cls, seed)
    loss, acc = step(model, batch)
    # the two-partner form the study's code computes: λ·CE(y) + (1−λ)·CE(y_b), λ-weighted accuracy
    logits = model(batch["image"])
    y, y_b, lam = batch["targets"][:, 0], batch["targets"][:, 1], batch["weights"][:, 0]
    assert torch.equal(y, batch["target"])
    two = (lam * F.cross_entropy(logits, y, reduction="none") + (1 - lam) * F.cross_entropy(logits, y_b, reduction="none")).mean()
    pred = logits.argmax(1)
    acc_two = (lam * (pred == y).float() + (1 - lam) * (pred == y_b).float()).mean()
    assert torch.equal(loss, two) and torch.equal(acc, acc_two)


def test_two_partners_is_the_k_form_of_a_two_image_mix():
    y, y_b, lam = torch.tensor([1, 2]), torch.tensor([3, 4]), torch.tensor([0.25, 1.0])
    targets, weights = augment.two_partners(y, y_b, lam)
    assert targets.tolist() == [[1, 3], [2, 4]] and weights.tolist() == [[0.25, 0.75], [1.0, 0.0]]
    assert weights.dtype == torch.float32 and targets.dtype == torch.long


def test_label_smoothing_applies_to_every_partner():
    torch.manual_seed(0)
    model = Classifier("lenet", 3, 10, label_smoothing=0.1)
    batch = mixed_batch(Mixup, 3)
    loss, _ = step(model, batch)
    logits = model(batch["image"])
    by_hand = sum(batch["weights"][:, k] * F.cross_entropy(logits, batch["targets"][:, k], reduction="none",
                                                           label_smoothing=0.1) for k in range(2)).mean()
    assert torch.allclose(loss, by_hand, atol=1e-6)
    clean = {"image": batch["image"], "target": batch["target"]}  # an unmixed batch: plain smoothed CE
    assert torch.allclose(step(model, clean)[0], F.cross_entropy(logits, batch["target"], label_smoothing=0.1))
    plain = Classifier("lenet", 3, 10)
    plain.load_state_dict(model.state_dict())
    assert not torch.allclose(loss, step(plain, batch)[0])  # the same weights without smoothing: another loss


def test_the_nan_watch_names_the_first_bad_step_of_a_long_epoch_and_ignores_an_overflowed_sum():
    from augbench.module import NonFiniteLossError

    model = Classifier("lenet", 1, 10, check_finite_every_n_steps=0)  # checked at the epoch's end only
    good = {"image": torch.zeros(2, 1, 32, 32), "target": torch.tensor([1, 2])}
    bad = {"image": torch.full((2, 1, 32, 32), float("nan")), "target": torch.tensor([1, 2])}
    with torch.no_grad():
        for i in range(1500):  # past the watch's first 1024 slots
            model.training_loss(bad if i in (1200, 1300) else good, i)
    with pytest.raises(NonFiniteLossError, match="step 1200 of that epoch"):
        model._raise_if_bad()
    model.train_sums.zero_()
    model._train_steps = 2
    model.step_losses[:2] = 3e38  # finite losses whose sum overflows: no NaN, nothing raised
    model.train_sums[0] = float("inf")
    model._raise_if_bad()

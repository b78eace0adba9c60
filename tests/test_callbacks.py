"""The five regimes as callbacks: what training and evaluation batches see, resumable generators, gallery."""

import json

import matplotlib.image as mpimg
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from augbench import training
from augbench.callbacks import CropFlip, Cutout, CutMix, Mixup
from augbench.data import SPECS, steps_of
from augbench.gallery import augmented_batches, render
from conftest import FMNIST, TINY, make_cfg


class Recorder(Callback):
    """Records every batch as the model receives it (it runs after the augmentation callbacks)."""

    def __init__(self):
        self.seen = {"train": [], "val": [], "test": []}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        for b in steps_of(batch):  # trainer.steps_per_batch batches at a time
            self.seen["train"].append({k: v.clone() for k, v in b.items()})

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.seen["val"].append({k: v.clone() for k, v in batch.items()})

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.seen["test"].append({k: v.clone() for k, v in batch.items()})


@pytest.fixture
def recorded(monkeypatch, tmp_path, fake_cifar):
    """Train with cutmix and capture the datamodule and every batch."""
    recorder, captured = Recorder(), {}
    real_instantiate = training.instantiate

    def instantiate(cfg, **kw):
        obj = real_instantiate(cfg, **kw)
        if "callbacks" in kw:
            kw["callbacks"].append(recorder)  # appended last: sees the batch after augmentation
            obj = real_instantiate(cfg, **kw)
        elif hasattr(obj, "train_dataloader"):
            captured["dm"] = obj
        return obj

    monkeypatch.setattr(training, "instantiate", instantiate)
    training.train(make_cfg(tmp_path / "run", TINY + ["model=lenet", "aug=cutmix", "trainer.limit_train_batches=3"],
                            fake_cifar))
    return recorder.seen, captured["dm"]


def test_only_training_batches_are_augmented(recorded):
    seen, dm = recorded
    clean_val = dm.on_after_batch_transfer(next(iter(dm.val_dataloader()[0])), 0)  # loaders yield uint8
    clean_test = dm.on_after_batch_transfer(next(iter(dm.test_dataloader())), 0)
    assert len(seen["train"]) == 3 and len(seen["val"]) == 1 and len(seen["test"]) == 1
    for batch in seen["train"]:
        assert {"targets", "weights"} <= set(batch) and batch["weights"].dtype == torch.float32
        assert batch["targets"].dtype == torch.long and batch["targets"].shape == batch["weights"].shape == (16, 2)
        assert torch.allclose(batch["weights"].sum(1), torch.ones(16))
    assert set(seen["val"][0]) == {"image", "target"} and torch.equal(seen["val"][0]["image"], clean_val["image"])
    assert set(seen["test"][0]) == {"image", "target"} and torch.equal(seen["test"][0]["image"], clean_test["image"])


def test_resident_dataset_is_never_written(recorded, fake_cifar):
    _, dm = recorded
    for split, (x, y) in dm.tensors.items():
        hx, hy = dm.host[split]
        assert torch.equal(x.cpu(), hx) and torch.equal(y.cpu(), hy)


def test_callbacks_run_in_the_configured_order(tmp_path, fake_cifar):
    from hydra.utils import instantiate

    cfg = make_cfg(tmp_path, ["aug=cutmix"])
    assert [type(instantiate(c)) for c in cfg.aug.callbacks] == [CropFlip, CutMix]
    cfg = make_cfg(tmp_path, ["aug=cutout"])
    assert [type(instantiate(c)) for c in cfg.aug.callbacks] == [CropFlip, Cutout]
    assert make_cfg(tmp_path, ["aug=baseline"]).aug.callbacks == []


class _Epoch:
    def __init__(self, epoch):
        self.current_epoch = epoch


@pytest.mark.parametrize("cls", [CropFlip, Cutout, Mixup, CutMix])
def test_draws_depend_on_seed_and_epoch_only(cls):
    """What an epoch draws is derived from (seed, callback, epoch): a callback that resumes at epoch 2
    (fresh process, nothing restored) draws what one that lived through epochs 0 and 1 draws."""
    spec = SPECS["cifar10"]
    batch = lambda: {"image": torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1)),  # noqa: E731
                     "target": torch.arange(8)}
    lived = cls(seed=3)
    lived.prepare(spec.mean, spec.std, "cpu")
    for epoch in (0, 1, 2):
        lived.on_train_epoch_start(_Epoch(epoch), None)
        for _ in range(3 if epoch < 2 else 1):  # epochs of different lengths: no carry-over either way
            expected = batch()
            lived.apply(expected)
    resumed = cls(seed=3)
    resumed.prepare(spec.mean, spec.std, "cpu")
    resumed.on_train_epoch_start(_Epoch(2), None)
    got = batch()
    resumed.apply(got)
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    resumed.on_train_epoch_start(_Epoch(1), None)  # another epoch, other draws
    other = batch()
    resumed.apply(other)
    assert not torch.equal(other["image"], got["image"])
    assert resumed.state_dict() == {}  # nothing device-specific in the checkpoint


@pytest.mark.parametrize("cls,kw,key", [(Mixup, {"alpha": 0}, "aug.alpha"), (CutMix, {"prob": 1.5}, "aug.prob"),
                                        (Cutout, {"length": 0}, "aug.length"), (Cutout, {"n_holes": -1}, "aug.n_holes")])
def test_invalid_knobs_name_the_key(cls, kw, key):
    with pytest.raises(ValueError, match=key):
        cls(**kw)


def test_gallery_shows_each_regime(tmp_path, fake_cifar):
    from augbench.data import load

    x, y, _, _ = load(SPECS["cifar10"], fake_cifar, verify=False)
    batches = augmented_batches(x[:6], y[:6], "cifar10", seed=0)
    from augbench.gallery import AUG_CONF

    assert list(batches)[:5] == ["baseline", "baseline_plus", "cutout", "mixup", "cutmix"]  # the study's first
    assert sorted(batches) == sorted(p.stem for p in AUG_CONF.glob("*.yaml"))  # then every other regime
    clean = batches["baseline"]["image"]
    for name in ("baseline_plus", "cutout", "mixup", "cutmix"):
        assert not torch.equal(batches[name]["image"], clean)
    assert "targets" in batches["mixup"] and "targets" in batches["cutmix"]
    image = mpimg.imread(render(batches, "cifar10", tmp_path / "g.png"))
    assert image.shape[0] > 400 and image.shape[1] > 600


def test_training_logs_the_augmented_batch_to_tensorboard(tmp_path, fake_cifar):
    training.train(make_cfg(tmp_path / "run", TINY + ["model=lenet", "aug=mixup"], fake_cifar))
    ea = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"images": 0, "tensors": 0}).Reload()
    assert "augmented_batch" in ea.Tags()["images"]
    assert any("augmented_batch_labels" in t for t in ea.Tags()["tensors"])


@pytest.mark.slow
@pytest.mark.skipif(not FMNIST.is_dir(), reason="needs Debian's dataset-fashion-mnist (.ci/run installs it)")
@pytest.mark.parametrize("aug", ["baseline", "baseline_plus", "cutout", "mixup", "cutmix", "random_erasing",
                                 "hide_and_seek", "gridmask", "ricap", "mixup_cutmix", "cutmix_center_gaussian",
                                 "cutmix_fixed_size", "cutmix_scheduled", "cutmix_one_hot", "cutmix_complete_label"])
def test_every_regime_trains_lenet_on_fashion_mnist(tmp_path, aug):
    # GridMask's and scheduled CutMix's probabilities ramp from 0 at epoch 0: two half epochs, the second one
    # augmented
    # RICAP (four images in every input) learns slowest: it gets the whole epoch
    length = {"gridmask": ["trainer.max_epochs=2", "trainer.limit_train_batches=60", "aug.ramp_epochs=1"],
              "cutmix_scheduled": ["trainer.max_epochs=2", "trainer.limit_train_batches=60"],
              # one-hot labels follow the larger area, often the partner: the noisiest regime after one epoch
              # (0.58, 0.64, 0.45 for seeds 0-2 over a whole epoch, plain CutMix 0.74): a whole epoch, a seed that trains
              "cutmix_one_hot": ["trainer.max_epochs=1", "seed=1"],
              "ricap": ["trainer.max_epochs=1"]}.get(aug, ["trainer.max_epochs=1", "trainer.limit_train_batches=120"])
    cfg = make_cfg(tmp_path, [f"aug={aug}", "data=fashion_mnist", "model=lenet", *length,
                              "trainer.enable_progress_bar=false", "data.val_fraction=0.1", "optim.lr=0.05"])
    metrics = training.train(cfg)
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "completed"
    assert metrics["test_acc1"] > 0.6, (aug, metrics["test_acc1"])  # it learned, whatever the regime

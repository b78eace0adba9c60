"""``trainer.steps_per_batch``: the loader hands over several batches at once and the Classifier takes
one optimiser step per batch. Only Lightning's bookkeeping runs less often: the numbers must not change."""

import json

import lightning as L
import pytest
import torch

from augbench.callbacks import CropFlip, CutMix, Mixup
from augbench.config import validate
from augbench.data import AugDataModule, StepGroups, limited_steps
from augbench.errors import ConfigError
from augbench.module import Classifier, NonFiniteLossError
from augbench.training import train
from conftest import TINY, make_cfg, stop_training_at


def fit(root, k: int, callbacks, optim: dict, steps: int = 7, epochs: int = 2):
    torch.manual_seed(0)
    dm = AugDataModule("cifar10", root=str(root), batch_size=8, val_fraction=0.1, verify=False, download=False,
                       steps_per_batch=k, train_steps_limit=steps)
    model = Classifier("lenet", 3, 10, **optim)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, limit_val_batches=0, num_sanity_val_steps=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=callbacks())
    trainer.fit(model, datamodule=dm)
    return model, trainer


@pytest.mark.parametrize("regime", [
    lambda: [CropFlip(), CutMix()],
    lambda: [CropFlip(), Mixup(per_sample=True)],
    lambda: [CropFlip(), CutMix(layer=1)],  # feature-level: the box is drawn at the feature map's size
], ids=["cutmix", "mixup", "feature_cutmix"])
@pytest.mark.parametrize("optim", [{"milestones": [1]}, {"warmup_epochs": 1, "milestones": [1]}],
                         ids=["epoch_schedule", "warmup_per_step"])
@pytest.mark.parametrize("k,groups", [(3, 3), (4, 2)])  # 7 steps: groups of 3, 3 and 1, or of 4 and 3
def test_grouped_steps_give_the_numbers_of_one_batch_per_step(fake_cifar, regime, optim, k, groups):
    one, t1 = fit(fake_cifar, 1, regime, optim)
    three, t3 = fit(fake_cifar, k, regime, optim)
    assert t3.num_training_batches == groups and t1.num_training_batches == 7
    a, b = one.state_dict(), three.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert t1.global_step == t3.global_step == 14  # every batch one optimiser step
    s1, s3 = (t.lr_scheduler_configs[0].scheduler.state_dict() for t in (t1, t3))
    assert s1 == s3
    assert one.history == three.history  # per-epoch loss, accuracy and the rate each epoch trained with


def test_groups_cover_every_step_once_and_the_last_is_shorter():
    batches = [{"image": torch.full((2, 1, 1, 1), float(i)), "target": torch.zeros(2, dtype=torch.long)}
               for i in range(10)]
    groups = StepGroups(batches, 4, steps=9)
    seen = [[int(b["image"][0]) for b in g] for g in groups]
    assert seen == [[0, 1, 2, 3], [4, 5, 6, 7], [8]] and len(groups) == 3
    assert [len(g) for g in StepGroups(batches, 4)] == [4, 4, 2]
    assert limited_steps(10, None) == 10 and limited_steps(10, 3) == 3 and limited_steps(10, 0.5) == 5
    assert limited_steps(10, 1.0) == 10 and limited_steps(10, 20) == 10
    with pytest.raises(ConfigError, match="limit_train_batches=0.05"):
        limited_steps(10, 0.05)


def test_train_counts_limit_train_batches_in_steps_and_logs_the_first_batch(tmp_path, fake_cifar):
    cfg = make_cfg(tmp_path / "run", [*TINY, "model=lenet", "aug=cutmix", "trainer.limit_train_batches=5",
                                      "trainer.steps_per_batch=4", "trainer.max_epochs=2"], fake_cifar)
    metrics = train(cfg)
    ckpt = torch.load(tmp_path / "run" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 10  # 5 steps an epoch (groups of 4 and 1), not 5 groups
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tb")).Reload()
    assert "augmented_batch" in events.Tags()["images"]  # the gallery takes the group's first batch
    assert metrics["status"] == "completed"
    # the same run with one batch per step is the same run: a relaunch finds it completed
    cfg1 = make_cfg(tmp_path / "run", [*TINY, "model=lenet", "aug=cutmix", "trainer.limit_train_batches=5",
                                       "trainer.max_epochs=2"], fake_cifar)
    again = train(cfg1)
    assert again["test_acc1"] == metrics["test_acc1"]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["config"]["trainer"]["steps_per_batch"] == 4


def test_one_batch_per_step_reproduces_a_grouped_run(tmp_path, fake_cifar):
    common = [*TINY, "model=lenet", "aug=cutmix", "trainer.limit_train_batches=5", "trainer.max_epochs=2"]
    grouped = train(make_cfg(tmp_path / "a", [*common, "trainer.steps_per_batch=2"], fake_cifar))
    single = train(make_cfg(tmp_path / "b", common, fake_cifar))
    assert grouped["history"] == single["history"] and grouped["test_loss"] == single["test_loss"]


def test_a_run_killed_with_one_batch_per_step_resumes_grouped_to_the_same_end(tmp_path, fake_cifar, monkeypatch):
    common = [*TINY, "model=lenet", "aug=cutmix", "trainer.limit_train_batches=5", "trainer.max_epochs=3",
              "trainer.deterministic=true"]
    step = Classifier.training_step
    stop_training_at(monkeypatch, 1, KeyboardInterrupt())  # last.ckpt holds the end of epoch 0
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        train(make_cfg(tmp_path / "run", [*common, "trainer.steps_per_batch=1"], fake_cifar))
    monkeypatch.setattr(Classifier, "training_step", step)
    resumed = train(make_cfg(tmp_path / "run", [*common, "trainer.steps_per_batch=4"], fake_cifar))
    straight = train(make_cfg(tmp_path / "straight", [*common, "trainer.steps_per_batch=1"], fake_cifar))
    a = torch.load(tmp_path / "run" / "last.ckpt", weights_only=False)
    b = torch.load(tmp_path / "straight" / "last.ckpt", weights_only=False)
    assert a["global_step"] == b["global_step"] == 15
    assert all(torch.equal(a["state_dict"][k], v) for k, v in b["state_dict"].items())
    assert resumed["history"] == straight["history"] and resumed["test_loss"] == straight["test_loss"]


def test_a_non_finite_loss_names_its_step_inside_a_group(fake_cifar):
    torch.manual_seed(0)
    dm = AugDataModule("cifar10", root=str(fake_cifar), batch_size=8, val_fraction=0.1, verify=False, download=False,
                       steps_per_batch=4, train_steps_limit=6)
    model = Classifier("lenet", 3, 10, lr=1e6, check_finite_every_n_steps=3)  # diverges within the first steps
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=1, limit_val_batches=0, num_sanity_val_steps=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(NonFiniteLossError, match=r"epoch 0, step [0-2] of that epoch"):
        trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 2  # checked at the third step, before its update, inside the first group


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_steps_per_batch_must_be_a_positive_integer(tmp_path, bad):
    cfg = make_cfg(tmp_path, [f"trainer.steps_per_batch={bad}"])
    with pytest.raises(ConfigError, match=r"trainer.steps_per_batch=.* is invalid: must be an integer >= 1"):
        validate(cfg)


def test_fast_dev_run_takes_one_step_whatever_the_group(tmp_path, fake_cifar, monkeypatch):
    steps = []
    optimise = Classifier._optimise
    monkeypatch.setattr(Classifier, "_optimise", lambda self, loss, last: steps.append(last) or optimise(self, loss, last))
    cfg = make_cfg(tmp_path / "run", [*TINY, "model=lenet", "aug=cutmix", "trainer.fast_dev_run=true",
                                      "trainer.steps_per_batch=8"], fake_cifar)
    assert train(cfg)["status"] == "fast_dev_run"
    assert steps == [True]  # one step, the epoch's last


def test_the_progress_bar_counts_steps_not_groups(fake_cifar, monkeypatch):
    from augbench.training import StepProgressBar

    dm = AugDataModule("cifar10", root=str(fake_cifar), batch_size=8, val_fraction=0.1, verify=False, download=False,
                       steps_per_batch=4, train_steps_limit=7)
    bar, shown = StepProgressBar(refresh_rate=3), []
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=2, limit_val_batches=0, num_sanity_val_steps=0,
                        logger=False, enable_checkpointing=False, enable_model_summary=False, callbacks=[bar])
    refresh = StepProgressBar.on_train_batch_end

    def spy(self, *args):
        refresh(self, *args)
        shown.append((self.train_progress_bar.n, self.train_progress_bar.total))

    monkeypatch.setattr(StepProgressBar, "on_train_batch_end", spy)
    trainer.fit(Classifier("lenet", 3, 10), datamodule=dm)
    # groups of 4 and 3 steps: redrawn once 3 steps were passed, and at the epoch's 7th
    assert shown == [(4, 7), (7, 7)] * 2

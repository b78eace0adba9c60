"""The Classifier takes the optimiser step in ``training_step``: it must give exactly the numbers of
Lightning's automatic loop (weights, step count, scheduler and scaler state), in every precision."""

import lightning as L
import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision

from augbench.bench.trainer import Automatic  # the Classifier under Lightning's automatic optimisation
from augbench.callbacks import CropFlip, CutMix
from augbench.data import AugDataModule
from augbench.module import Classifier


def fit(cls, root, precision: str, optim: dict, epochs: int = 2, ckpt_path=None):
    torch.manual_seed(0)
    dm = AugDataModule("cifar10", root=str(root), batch_size=8, val_fraction=0.1, verify=False, download=False)
    model = cls("lenet", 3, 10, **optim)
    plugins = []
    if precision == "16-mixed-scaled":  # Lightning makes no GradScaler on the CPU; give it one
        # a scale far too large: the first steps overflow and are skipped, then the scale comes down
        plugins = [MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu", init_scale=2.0**40))]
        precision = None
    trainer = L.Trainer(accelerator="cpu", devices=1, precision=precision, plugins=plugins, max_epochs=epochs,
                        limit_train_batches=4, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[CropFlip(), CutMix()])
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    return model, trainer, scaler


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed-scaled"])
@pytest.mark.parametrize("optim", [{"milestones": [1]}, {"warmup_epochs": 1, "milestones": [1]}],
                         ids=["epoch_schedule", "warmup_per_step"])
def test_the_step_in_training_step_equals_lightnings_automatic_step(fake_cifar, precision, optim):
    ours, t1, s1 = fit(Classifier, fake_cifar, precision, optim)
    auto, t2, s2 = fit(Automatic, fake_cifar, precision, optim)
    assert not ours.automatic_optimization
    a, b = ours.state_dict(), auto.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert t1.global_step == t2.global_step == 8  # checkpoints and loggers count the steps
    assert t1.lr_scheduler_configs[0].scheduler.state_dict() == t2.lr_scheduler_configs[0].scheduler.state_dict()
    assert t1.optimizers[0].param_groups[0]["lr"] == t2.optimizers[0].param_groups[0]["lr"]
    assert [r["train_loss"] for r in ours.history] == [r["train_loss"] for r in auto.history]
    if s1 is not None:
        assert s1.state_dict() == s2.state_dict() and s1.get_scale() < 2.0**40  # overflow steps were skipped


def test_history_records_the_rate_each_epoch_trained_with(fake_cifar):
    model, trainer, _ = fit(Classifier, fake_cifar, "32-true", {"milestones": [1, 3], "gamma": 0.1}, epochs=3)
    assert [r["train_lr"] for r in model.history] == pytest.approx([0.1, 0.01, 0.01])
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.001)  # the next epoch's rate


def test_a_checkpoint_of_lightnings_automatic_step_resumes_with_its_step_count(fake_cifar, tmp_path):
    """A run saved while Lightning stepped the optimiser goes on under the Classifier's own step:
    the step count continues and the weights end as those of an uninterrupted run."""
    _, first, _ = fit(Automatic, fake_cifar, "32-true", {"milestones": [1]}, epochs=1)
    first.save_checkpoint(tmp_path / "automatic.ckpt")
    resumed, trainer, _ = fit(Classifier, fake_cifar, "32-true", {"milestones": [1]}, ckpt_path=tmp_path / "automatic.ckpt")
    assert trainer.global_step == 8
    straight, _, _ = fit(Classifier, fake_cifar, "32-true", {"milestones": [1]}, epochs=2)
    a, b = resumed.state_dict(), straight.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)

"""train(cfg) end to end on fake CIFAR, composed from the real configs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from augbench.errors import ConfigError, DatasetError, RunExistsError
from augbench.training import train
from conftest import FMNIST, TINY, make_cfg

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("data", ["cifar10", "cifar100"])
@pytest.mark.parametrize("model", ["resnet18", "lenet", "densenet", "vgg"])
def test_every_backbone_on_both_cifars(tmp_path, fake_cifar, data, model):
    out = tmp_path / "run"
    metrics = train(make_cfg(out, TINY + [f"data={data}", f"model={model}"], fake_cifar))

    saved = json.loads((out / "metrics.json").read_text())
    assert saved["status"] == "completed" and saved == json.loads(json.dumps(metrics))
    for key in ("test_acc1", "test_acc5", "val_acc1"):
        assert 0.0 <= saved[key] <= 1.0
    assert saved["test_acc5"] >= saved["test_acc1"]
    assert saved["epochs"] == 1 and saved["wall_seconds"] > 0 and saved["precision"] == "32-true"
    assert saved["config"]["model"]["name"] == model and saved["config"]["data"]["name"] == data
    assert saved["history"]["epoch"] == [0] and saved["history"]["train_lr"] == [0.1]

    ckpt = torch.load(out / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2 and "state_dict" in ckpt
    tb = out / "tb"  # one fixed folder, no version_N
    assert not any(p.name.startswith("version_") for p in tb.iterdir())
    ea = EventAccumulator(str(tb)).Reload()
    assert {"train/loss", "train/acc1", "train/lr", "val/acc1", "test/acc1", "hp/test_acc1"} <= set(ea.Tags()["scalars"])
    assert (tb / "hparams.yaml").is_file()  # the HParams dashboard: hyper-parameters next to final metrics


def test_fast_dev_run_is_not_recorded_as_a_result(tmp_path, fake_cifar):
    out = tmp_path / "run"
    train(make_cfg(out, TINY + ["model=lenet", "trainer.fast_dev_run=true"], fake_cifar))
    assert json.loads((out / "metrics.json").read_text())["status"] == "fast_dev_run"


def _run(tmp_path, fake_cifar, name, extra=()):
    return train(make_cfg(tmp_path / name, TINY + ["model=lenet", "aug=cutmix", *extra], fake_cifar))


def test_same_seed_same_numbers_and_seed_zero_really_seeds(tmp_path, fake_cifar):
    a = _run(tmp_path, fake_cifar, "a", ["seed=0"])
    b = _run(tmp_path, fake_cifar, "b", ["seed=0"])
    c = _run(tmp_path, fake_cifar, "c", ["seed=1"])
    # if seed 0 were skipped, the two seed-0 runs would start from different random weights
    assert a["history"] == b["history"] and a["test_loss"] == b["test_loss"]
    assert a["history"]["train_loss"] != c["history"]["train_loss"]
    wa = torch.load(tmp_path / "a" / "last.ckpt", weights_only=False)["state_dict"]
    wb = torch.load(tmp_path / "b" / "last.ckpt", weights_only=False)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_completed_run_is_skipped_and_never_overwritten(tmp_path, fake_cifar):
    first = _run(tmp_path, fake_cifar, "r")
    before = (tmp_path / "r" / "metrics.json").read_bytes()
    assert _run(tmp_path, fake_cifar, "r") == first  # same config: skipped
    with pytest.raises(RunExistsError, match="different config"):
        _run(tmp_path, fake_cifar, "r", ["optim.lr=0.05"])
    assert (tmp_path / "r" / "metrics.json").read_bytes() == before


def test_unknown_model_in_config(tmp_path, fake_cifar):
    with pytest.raises(ConfigError, match=r"model.name='resnet50' is invalid.*densenet, lenet, resnet18, vgg"):
        train(make_cfg(tmp_path, TINY + ["model.name=resnet50"], fake_cifar))


def test_missing_dataset_fails_before_training_and_claims_nothing(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(DatasetError, match=r"cifar10 is missing and data.download=false.*cifar-10-batches-py"):
        train(make_cfg(out, TINY, tmp_path / "nothing_here"))
    assert not (out / "metrics.json").exists() and not (out / "last.ckpt").exists()


def cli(*args, cwd=ROOT, timeout=300):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("group,bad,options", [("model", "resnet50", "resnet18"), ("data", "imagenet", "cifar100")])
def test_cli_unknown_group_option_lists_the_choices(tmp_path, group, bad, options):
    r = cli(f"{group}={bad}", f"hydra.run.dir={tmp_path}")
    assert r.returncode != 0
    assert f"Could not find '{group}/{bad}'" in r.stderr and options in r.stderr


@pytest.mark.slow
@pytest.mark.skipif(not FMNIST.is_dir(), reason="needs Debian's dataset-fashion-mnist (.ci/run installs it)")
def test_lenet_fashion_mnist_two_epochs_reaches_85_percent(tmp_path):
    r = cli("data=fashion_mnist", "model=lenet", "aug=baseline", "data.val_fraction=0", "trainer.max_epochs=2",
            "trainer.accelerator=cpu",
            f"hydra.run.dir={tmp_path}", timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Epoch 1" in r.stderr + r.stdout  # progress was printed
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs"] == 2
    assert metrics["test_acc1"] >= 0.85, metrics["test_acc1"]


@pytest.mark.parametrize("args,message", [
    (["data.batch_size=0"], "augbench: data.batch_size=0 is invalid: must be an integer > 0"),
    (["data.download=false"], "augbench: cifar10 is missing and data.download=false"),
])
def test_cli_reports_user_errors_in_one_line_without_traceback(tmp_path, args, message):
    r = cli(*args, f"data.root={tmp_path / 'data'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 1
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_sanity_check_batches_do_not_leak_into_validation_metrics(tmp_path, fake_cifar):
    checked = _run(tmp_path, fake_cifar, "checked", ["trainer.num_sanity_val_steps=1", "trainer.limit_val_batches=2"])
    again = _run(tmp_path, fake_cifar, "again", ["trainer.limit_val_batches=2"])
    assert checked["history"]["val_loss"] == again["history"]["val_loss"]
    assert checked["val_acc1"] == again["val_acc1"]


def test_test_every_epoch_gives_test_curves_next_to_validation(tmp_path, fake_cifar):
    m = _run(tmp_path, fake_cifar, "r", ["data.test_every_epoch=true", "trainer.max_epochs=2"])
    assert len(m["history"]["val_acc1"]) == len(m["history"]["test_acc1"]) == 2
    assert m["history"]["test_acc1"][-1] == m["test_acc1"]  # the curve ends where the final test does


@pytest.mark.slow
@pytest.mark.skipif(not FMNIST.is_dir(), reason="needs Debian's dataset-fashion-mnist (.ci/run installs it)")
def test_seed_range_trains_five_lenets_on_fashion_mnist(tmp_path):
    r = cli("--multirun", "seed=0-4", "data=fashion_mnist", "model=lenet", "trainer.max_epochs=1",
            "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", f"hydra.sweep.dir={tmp_path}",
            timeout=1800)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    runs = sorted(tmp_path.glob("fashion_mnist/lenet/baseline_plus/seed=*/metrics.json"))
    assert [p.parent.name for p in runs] == [f"seed={s}" for s in range(5)]
    metrics = [json.loads(p.read_text()) for p in runs]
    assert [m["seed"] for m in metrics] == list(range(5)) and all(m["status"] == "completed" for m in metrics)
    assert len({m["test_acc1"] for m in metrics}) > 1  # five different seeds, five different runs

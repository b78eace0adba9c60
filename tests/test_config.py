"""Bad configs fail at once, in one line naming the full key, the value and what is allowed."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException

from augbench.config import ConfigError, check_accelerator, validate
from augbench.training import train
from conftest import CONF, make_cfg


@pytest.mark.parametrize("override,options", [
    ("model=resnet50", ["densenet", "lenet", "resnet18", "vgg"]),
    ("data=imagenet", ["cifar10", "cifar100", "fashion_mnist"]),
    ("aug=autoaugment", ["baseline", "baseline_plus", "cutmix", "cutout", "mixup"]),
    ("experiment=gird", ["cutmix_prob_sweep", "grid"]),
])
def test_unknown_group_option_lists_the_options(override, options):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        with pytest.raises(MissingConfigException) as e:
            compose("train", overrides=[override])
    group = override.split("=")[0]
    assert f"Could not find '{group}/{override.split('=')[1]}'" in str(e.value)
    assert all(o in str(e.value) for o in options)


def test_misspelled_key_is_rejected():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        with pytest.raises(ConfigCompositionException, match="batchsize"):
            compose("train", overrides=["data.batchsize=64"])


@pytest.mark.parametrize("overrides,message", [
    (["data.val_fraction=1.0"], r"data.val_fraction=1.0 is invalid: must be a number in \[0, 1\)"),
    (["data.val_fraction=-0.1"], r"data.val_fraction=-0.1 is invalid"),
    (["data.batch_size=0"], r"data.batch_size=0 is invalid: must be an integer > 0"),
    (["data.batch_size=abc"], r"data.batch_size='abc' is invalid: must be an integer > 0"),
    (["optim.lr=0"], r"optim.lr=0 is invalid: must be a number > 0"),
    (["optim.lr=-0.1"], r"optim.lr=-0.1 is invalid"),
    (["trainer.max_epochs=0"], r"trainer.max_epochs=0 is invalid: must be an integer > 0"),
    (["optim.milestones=[120,60]"], r"optim.milestones=\[120, 60\] is invalid: must be a strictly increasing"),
    (["aug=mixup", "aug.alpha=0"], r"aug.alpha=0 is invalid: must be a number > 0"),
    (["aug=cutmix", "aug.alpha=-1"], r"aug.alpha=-1 is invalid"),
    (["aug=cutmix", "aug.prob=1.5"], r"aug.prob=1.5 is invalid: must be a number in \[0, 1\]"),
    (["aug=cutmix", "aug.prob=-0.1"], r"aug.prob=-0.1 is invalid"),
    (["aug=cutout", "aug.length=0"], r"aug.length=0 is invalid: must be an integer in \(0, 32\]"),
    (["aug=gridmask", "aug.rotate=-90"], r"aug.rotate=-90 is invalid: must be an integer >= 0: the grid turns"),
    (["aug=cutout", "aug.length=33"], r"aug.length=33 is invalid"),
    (["aug=cutout", "aug.n_holes=-1"], r"aug.n_holes=-1 is invalid: must be an integer >= 0"),
    (["trainer.precision=17"], r"trainer.precision=17 is invalid: must be one of auto, 32-true, bf16-mixed, 16-mixed$"),
    # half-precision "true" modes would augment in half precision and round λ differently in images and loss
    (["trainer.precision=bf16-true"], r"trainer.precision='bf16-true' is invalid: must be one of auto, 32-true, "),
    (["trainer.precision=16-true"], r"trainer.precision='16-true' is invalid"),
    (["seed=0-4"], r"seed='0-4' is invalid: must be an integer >= 0\. To sweep seeds use --multirun seed=0-4"),
    (["seed=-1"], r"seed=-1 is invalid"),
    (["trainer.devices=2"], r"trainer.devices=2 is invalid: must be 1"),
    # several GPUs would start DDP with no sampler: every rank on all the data, all writing one folder
    (["trainer.devices=auto"], r"trainer.devices='auto' is invalid: must be 1: each run trains on one device"),
    (["trainer.deterministic=true", "trainer.benchmark=true"],
     r"trainer.benchmark=true is invalid with trainer.deterministic=true"),
    (["optim.label_smoothing=1.0"], r"optim.label_smoothing=1.0 is invalid: must be a number in \[0, 1\)"),
    (["runs_per_gpu=0"], r"runs_per_gpu=0 is invalid: must be an integer >= 1"),
    (["run_lock.heartbeat_s=900"], r"run_lock.heartbeat_s=900 is invalid: must be .* below run_lock.stale_after_s"),
    (["model.compile_mode=fastest"], r"model.compile_mode='fastest' is invalid: must be null or one of .*reduce-overhead"),
    # the Classifier steps the optimiser itself: Lightning's clipping and accumulation would not apply
    (["+trainer.gradient_clip_val=1.0"], r"trainer.gradient_clip_val=1.0 is invalid: must be unset"),
    (["+trainer.accumulate_grad_batches=4"], r"trainer.accumulate_grad_batches=4 is invalid: .*set data.batch_size"),
])
def test_out_of_range_values_name_key_value_and_allowed(tmp_path, overrides, message):
    cfg = make_cfg(tmp_path, overrides)
    with pytest.raises(ConfigError, match=message) as e:
        validate(cfg)
    assert "\n" not in str(e.value) and "typing" not in str(e.value)


def test_asking_for_a_gpu_without_one(tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"trainer.accelerator='gpu' but no CUDA GPU is visible.*accelerator=auto"):
        check_accelerator(make_cfg(tmp_path, ["trainer.accelerator=gpu"]))


def test_validation_happens_before_any_data_is_read(tmp_path):
    # the dataset does not exist: the config error must win
    cfg = make_cfg(tmp_path / "out", ["optim.lr=0", "data.download=false"], tmp_path / "nothing")
    with pytest.raises(ConfigError, match="optim.lr"):
        train(cfg)
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_defaults_are_the_study_protocol(tmp_path):
    cfg = make_cfg(tmp_path)
    validate(cfg)
    assert (cfg.data.name, cfg.model.name, cfg.aug.name, cfg.seed) == ("cifar10", "resnet18", "baseline_plus", 0)
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.nesterov, cfg.optim.weight_decay) == (0.1, 0.9, True, 5e-4)
    assert list(cfg.optim.milestones) == [60, 120, 160] and cfg.optim.gamma == 0.1
    assert cfg.trainer.max_epochs == 200 and cfg.data.batch_size == 128 and cfg.data.val_fraction == 0.2
    assert make_cfg(tmp_path, ["optim=study_code"]).optim.gamma == 0.2
    assert (make_cfg(tmp_path, ["aug=cutmix"]).aug.prob, make_cfg(tmp_path, ["aug=cutmix"]).aug.alpha) == (1.0, 1.0)
    assert (make_cfg(tmp_path, ["aug=cutout"]).aug.n_holes, make_cfg(tmp_path, ["aug=cutout"]).aug.length) == (1, 16)


def test_config_checks_import_neither_torch_nor_lightning():
    """A bad value must be refused in about a second: importing Lightning alone takes ten here."""
    import subprocess
    import sys

    code = ("import sys, augbench.config, augbench.sweep, hydra_plugins.augbench_plugins.skip_completed_sweeper; "
            "print(sorted(m for m in ('torch', 'lightning', 'torchvision') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_model_names_in_the_catalog_match_the_registry():
    from augbench.catalog import MODEL_NAMES
    from augbench.models import MODELS

    assert tuple(sorted(MODELS)) == MODEL_NAMES


def test_a_run_completed_before_a_knob_existed_still_counts_as_the_same_config(tmp_path):
    from omegaconf import OmegaConf

    from augbench.runs import completed_run, write_metrics

    config = OmegaConf.to_container(make_cfg(tmp_path, ["model=lenet"]), resolve=True)
    old = {**config, "optim": {k: v for k, v in config["optim"].items() if k != "label_smoothing"}}
    write_metrics(tmp_path, {"status": "completed", "test_acc1": 0.5, "config": old})
    assert completed_run(tmp_path, config)["test_acc1"] == 0.5  # label_smoothing 0 then, as now
    cutmix = OmegaConf.to_container(make_cfg(tmp_path, ["model=lenet", "aug=cutmix"]), resolve=True)
    knobs = ("center", "sigma", "fixed_lam", "label_mode", "schedule")  # added for CutMix's ablations
    old_cutmix = {**cutmix, "aug": {k: v for k, v in cutmix["aug"].items() if k not in knobs}}
    old_cutmix["aug"]["callbacks"] = [{k: v for k, v in c.items() if k not in knobs} for c in cutmix["aug"]["callbacks"]]
    (tmp_path / "c").mkdir()
    write_metrics(tmp_path / "c", {"status": "completed", "test_acc1": 0.4, "config": old_cutmix})
    assert completed_run(tmp_path / "c", cutmix)["test_acc1"] == 0.4
    smoothed = {**config, "optim": {**config["optim"], "label_smoothing": 0.1}}
    with pytest.raises(Exception, match="different config"):
        completed_run(tmp_path, smoothed)

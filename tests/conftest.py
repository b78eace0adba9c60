"""Shared fixtures: fake CIFAR in the real on-disk format, and configs composed from conf/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from augbench.fakedata import write_fake_cifar  # noqa: F401 - tests import it from here

CONF = Path(__file__).resolve().parents[1] / "conf"

# the real-SLURM tests start daemons as root and take minutes: only `make test-slurm` collects them
collect_ignore = [] if os.environ.get("AUGBENCH_SLURM_TESTS") == "1" else ["slurm"]
FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def fake_cifar(tmp_path_factory) -> Path:
    return write_fake_cifar(tmp_path_factory.mktemp("cifar"))


# tiny, quick runs on the CPU, even where a GPU is present: 2 training steps, one eval batch
TINY = ["trainer.accelerator=cpu", "data.batch_size=16", "data.eval_batch_size=32", "data.verify=false", "data.download=false",
        "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
        "eval=accuracy"]  # the evaluation suite has tests of its own


def make_cfg(out: Path, overrides: list[str] = (), root: Path | None = None):
    """Compose the real configs, as `python train.py <overrides>` would, writing into ``out``.

    The CPU is pinned unless the overrides pick an accelerator: the suite's exact-equality checks
    hold on the CPU; their GPU variants carry the ``gpu`` marker."""
    if not any(o.startswith("trainer.accelerator=") for o in overrides):
        overrides = ["trainer.accelerator=cpu", *overrides]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    with open_dict(cfg):
        cfg.output_dir = str(out)
        if root is not None:
            cfg.data.root = str(root)
    return cfg


def stop_training_at(monkeypatch, epoch: int, exc: BaseException) -> None:
    """Make training raise ``exc`` at the first step of ``epoch`` (a kill, a Ctrl-C, a signal handler's exit)."""
    from augbench import module

    step = module.Classifier.training_step

    def stop(self, batch, i):
        if self.current_epoch == epoch:
            raise exc
        return step(self, batch, i)

    monkeypatch.setattr(module.Classifier, "training_step", stop)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    """``gpu`` tests need CUDA: where there is none they are skipped, saying so (make test-gpu runs them)."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if gpu_items and not cuda_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU (none visible); run `make test-gpu` where one is")
        for item in gpu_items:
            item.add_marker(skip)

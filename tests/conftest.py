"""Shared fixtures: fake CIFAR in the real on-disk format, and configs composed from conf/."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from augbench.fakedata import write_fake_cifar  # noqa: F401 - tests import it from here

CONF = Path(__file__).resolve().parents[1] / "conf"
FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def fake_cifar(tmp_path_factory) -> Path:
    return write_fake_cifar(tmp_path_factory.mktemp("cifar"))


# tiny, quick runs: 2 training steps, one eval batch
TINY = ["data.batch_size=16", "data.eval_batch_size=32", "data.verify=false", "data.download=false",
        "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def make_cfg(out: Path, overrides: list[str] = (), root: Path | None = None):
    """Compose the real configs, as `python train.py <overrides>` would, writing into ``out``."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    with open_dict(cfg):
        cfg.output_dir = str(out)
        if root is not None:
            cfg.data.root = str(root)
    return cfg

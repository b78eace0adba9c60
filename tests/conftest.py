"""Shared fixtures: fake CIFAR in the real on-disk format, and configs composed from conf/."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

CONF = Path(__file__).resolve().parents[1] / "conf"
FMNIST = Path("/usr/share/datasets/fashion-mnist")


def _pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_fake_cifar(root: Path, n_train: int = 160, n_test: int = 64, seed: int = 0) -> Path:
    """CIFAR-10 and CIFAR-100 as torchvision expects them on disk (python pickles, row-major RGB)."""
    rng = np.random.default_rng(seed)
    images = lambda n: rng.integers(0, 256, (n, 3072), dtype=np.uint8)  # noqa: E731
    c10 = root / "cifar-10-batches-py"
    per_file = n_train // 5
    for i in range(1, 6):
        _pickle(c10 / f"data_batch_{i}", {"data": images(per_file), "labels": rng.integers(0, 10, per_file).tolist(),
                                          "batch_label": f"training batch {i} of 5"})
    _pickle(c10 / "test_batch", {"data": images(n_test), "labels": rng.integers(0, 10, n_test).tolist()})
    _pickle(c10 / "batches.meta", {"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": per_file})
    c100 = root / "cifar-100-python"
    for split, n in (("train", n_train), ("test", n_test)):
        _pickle(c100 / split, {"data": images(n), "fine_labels": rng.integers(0, 100, n).tolist(),
                               "coarse_labels": rng.integers(0, 20, n).tolist()})
    _pickle(c100 / "meta", {"fine_label_names": [f"f{i}" for i in range(100)],
                            "coarse_label_names": [f"c{i}" for i in range(20)]})
    return root


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

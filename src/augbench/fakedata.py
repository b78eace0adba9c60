"""Random images written in CIFAR's real on-disk format, to dry-run augbench where CIFAR is absent.

    python -m augbench.fakedata data/fake       # then: python train.py data.root=data/fake data.verify=false

The real loading code reads them (md5 checks must be skipped: ``data.verify=false``). Accuracy on
them is chance; they exist for tests, benchmarks and trying out a sweep.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np


def _pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_fake_cifar(root, n_train: int = 160, n_test: int = 64, seed: int = 0, cifar100: bool = True) -> Path:
    """CIFAR-10 (and CIFAR-100) as torchvision expects them: python pickles of row-major RGB rows."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    images = lambda n: rng.integers(0, 256, (n, 3072), dtype=np.uint8)  # noqa: E731
    c10 = root / "cifar-10-batches-py"
    per_file = n_train // 5
    for i in range(1, 6):
        _pickle(c10 / f"data_batch_{i}", {"data": images(per_file), "labels": rng.integers(0, 10, per_file).tolist(),
                                          "batch_label": f"training batch {i} of 5"})
    _pickle(c10 / "test_batch", {"data": images(n_test), "labels": rng.integers(0, 10, n_test).tolist()})
    _pickle(c10 / "batches.meta", {"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": per_file})
    if cifar100:
        c100 = root / "cifar-100-python"
        for split, n in (("train", n_train), ("test", n_test)):
            _pickle(c100 / split, {"data": images(n), "fine_labels": rng.integers(0, 100, n).tolist(),
                                   "coarse_labels": rng.integers(0, 20, n).tolist()})
        _pickle(c100 / "meta", {"fine_label_names": [f"f{i}" for i in range(100)],
                                "coarse_label_names": [f"c{i}" for i in range(20)]})
    return root


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "data/fake")
    print(f"wrote fake CIFAR-10/100 into {write_fake_cifar(target, n_train=5000, n_test=1000)}")

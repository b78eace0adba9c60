import gzip
import pickle
import shutil

import numpy as np
import pytest
import torch

from augbench.data import SPECS, AugDataModule, DatasetError, DeviceLoader, read_idx
from conftest import FMNIST, write_fake_cifar


def dm(root, **kw):
    kw = {"name": "cifar10", "root": str(root), "verify": False, "download": False, "batch_size": 16} | kw
    module = AugDataModule(**kw)
    module.setup("fit")
    return module


def test_each_dataset_declares_its_own_statistics():
    assert SPECS["cifar10"].mean != SPECS["cifar100"].mean
    assert SPECS["cifar10"].std != SPECS["cifar100"].std
    assert (SPECS["cifar10"].num_classes, SPECS["cifar100"].num_classes) == (10, 100)
    assert SPECS["fashion_mnist"].channels == 1 and SPECS["fashion_mnist"].size == 32


def test_fake_cifar_loads_through_torchvision_classes(fake_cifar):
    for name, classes in (("cifar10", 10), ("cifar100", 100)):
        m = dm(fake_cifar, name=name, val_fraction=0.25)
        x, y = m.tensors["train"]
        assert x.dtype == torch.uint8 and x.shape[1:] == (3, 32, 32)
        assert len(m.tensors["val"][0]) == 40 and len(x) == 120
        assert int(y.max()) < classes and m.tensors["test"][0].shape[0] == 64


def test_val_split_is_deterministic_from_seed_and_disjoint(fake_cifar):
    def split(seed):
        m = dm(fake_cifar, seed=seed)
        return m.tensors["train"][0], m.tensors["val"][0]

    (t0, v0), (t0b, v0b), (_, v1) = split(0), split(0), split(1)
    assert torch.equal(v0, v0b) and torch.equal(t0, t0b)
    assert not torch.equal(v0, v1)
    # disjoint: no validation image appears in the training part
    train_rows = {bytes(r.numpy()) for r in t0.flatten(1)}
    assert not any(bytes(r.numpy()) in train_rows for r in v0.flatten(1))


def test_val_fraction_zero_trains_on_everything(fake_cifar):
    m = dm(fake_cifar, val_fraction=0.0)
    assert len(m.tensors["train"][0]) == 160 and m.eval_names == []
    assert dm(fake_cifar, val_fraction=0.0, test_every_epoch=True).eval_names == ["test"]


def test_batches_are_normalised_dicts_with_static_shapes(fake_cifar):
    m = dm(fake_cifar)
    raw = list(m.train_dataloader())
    assert all(b["image"].dtype == torch.uint8 for b in raw)  # copied as bytes, normalised after the transfer
    batches = [m.on_after_batch_transfer(b, 0) for b in raw]
    assert len(batches) == 128 // 16  # drop_last
    b = batches[0]
    assert set(b) == {"image", "target"} and b["image"].dtype == torch.float32 and b["target"].dtype == torch.long
    assert all(x["image"].shape == (16, 3, 32, 32) for x in batches)
    # normalisation with the dataset's own statistics: all training pixels have mean ~0, std ~1 per channel
    x, _ = m.tensors["train"]
    full = next(iter(DeviceLoader(x, torch.zeros(len(x), dtype=torch.long), len(x), SPECS["cifar10"].mean,
                                  SPECS["cifar10"].std)))["image"]
    expect = (x.float() / 255 - torch.tensor(SPECS["cifar10"].mean).view(1, 3, 1, 1)) / torch.tensor(
        SPECS["cifar10"].std).view(1, 3, 1, 1)
    assert torch.allclose(full, expect, atol=1e-5)


def test_epoch_permutation_depends_on_seed_and_epoch_only(fake_cifar):
    x, y = dm(fake_cifar).tensors["train"]

    def order(seed, epoch):
        loader = DeviceLoader(x, torch.arange(len(x)), 16, (0.5,) * 3, (0.5,) * 3, shuffle=True, drop_last=True,
                              seed=seed, epoch_fn=lambda: epoch)
        return torch.cat([b["target"] for b in loader])

    assert torch.equal(order(0, 3), order(0, 3))
    assert not torch.equal(order(0, 3), order(0, 4))
    assert not torch.equal(order(0, 3), order(1, 3))
    assert sorted(order(0, 0).tolist()) == list(range(128))  # a permutation: every image once


def test_missing_dataset_says_where_and_how(tmp_path):
    with pytest.raises(DatasetError, match=r"cifar10 is missing.*cifar-10-batches-py.*cifar-10-python.tar.gz"):
        dm(tmp_path / "empty")


def test_md5_verification_rejects_files_made_by_hand(fake_cifar):
    with pytest.raises(DatasetError, match="md5.*data.verify=false"):
        dm(fake_cifar, verify=True)


def test_corrupt_cifar_pickle_is_reported(tmp_path):
    root = write_fake_cifar(tmp_path)
    batch = root / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:500])
    with pytest.raises(DatasetError, match="corrupt"):
        dm(root)


def test_wrong_shape_cifar_is_reported(tmp_path):
    root = write_fake_cifar(tmp_path)
    with open(root / "cifar-100-python" / "train", "wb") as f:
        pickle.dump({"data": np.zeros((10, 100), np.uint8), "fine_labels": [0] * 10}, f)
    with pytest.raises(DatasetError, match="corrupt"):
        dm(root, name="cifar100")


def test_idx_reader_rejects_truncated_and_bad_files(tmp_path):
    header = bytes([0, 0, 8, 3]) + (4).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    good = tmp_path / "ok-idx3-ubyte.gz"
    good.write_bytes(gzip.compress(header + bytes(4 * 784)))
    assert read_idx(good).shape == (4, 28, 28)
    short = tmp_path / "short-idx3-ubyte"
    short.write_bytes(header + bytes(100))
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(short)
    broken = tmp_path / "broken-idx3-ubyte.gz"
    broken.write_bytes(gzip.compress(header + bytes(4 * 784))[:-12])
    with pytest.raises(DatasetError, match="corrupt"):
        read_idx(broken)


def test_fashion_mnist_missing_names_the_package(tmp_path):
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        dm(tmp_path, name="fashion_mnist")


@pytest.mark.skipif(not FMNIST.is_dir(), reason="needs Debian's dataset-fashion-mnist (.ci/run installs it)")
def test_fashion_mnist_from_debian_idx_files_padded_to_32(tmp_path):
    for f in FMNIST.iterdir():  # a copy, to also check a user-chosen root
        shutil.copy(f, tmp_path / f.name)
    m = dm(tmp_path, name="fashion_mnist", val_fraction=0)
    x, y = m.tensors["train"]
    assert x.shape == (60000, 1, 32, 32) and m.tensors["test"][0].shape == (10000, 1, 32, 32)
    assert x[:, :, :2].max() == 0 and x[:, :, :, -2:].max() == 0  # black padding
    assert torch.bincount(y).tolist() == [6000] * 10

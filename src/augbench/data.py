"""Datasets held on the training device as uint8, served as normalised device batches.

No DataLoader workers and no PIL: an epoch is one seeded permutation on the device, a batch is an
index into the resident tensor followed by one fused normalisation. Batches are dicts so that
augmentation callbacks can replace entries in place.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import lightning as L
import numpy as np
import torch
from filelock import FileLock
from torchvision import datasets

from augbench.catalog import SPECS, DatasetSpec
from augbench.errors import ConfigError, DatasetError
from augbench.seeding import derive_seed


FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist


def get_spec(name: str) -> DatasetSpec:
    if name not in SPECS:
        raise ValueError(f"data.name={name!r} is not a known dataset; choose one of: {', '.join(SPECS)}")
    return SPECS[name]


def default_root(name: str) -> str:
    if name == "fashion_mnist" and os.path.isdir(FASHION_MNIST_SYSTEM_DIR):
        return FASHION_MNIST_SYSTEM_DIR
    return "data"


# --- CIFAR through torchvision's classes ---------------------------------------------------------

_CIFAR = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}


def cifar_class(name: str, verify: bool = True):
    """torchvision's CIFAR class; with ``verify=False`` its md5 checks become existence checks
    (for files you made yourself)."""
    cls = _CIFAR[name]
    if verify:
        return cls

    class Unverified(cls):
        def _check_integrity(self) -> bool:
            return all((Path(self.root) / self.base_folder / f).is_file() for f, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:
            with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]

    return Unverified


def _cifar_help(spec: DatasetSpec, root: Path) -> str:
    folder = root / _CIFAR[spec.name].base_folder
    return (
        f"{spec.name} is expected in {folder}/ (torchvision's python-pickle layout). Download and "
        f"extract {spec.url} into {root}/, or point data.root at the folder that holds it"
    )


def _load_cifar(spec: DatasetSpec, root: Path, verify: bool):
    cls = cifar_class(spec.name, verify)
    out = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=False)
        except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
            raise DatasetError(f"{spec.name} is missing or failed its md5 check: {e}. {_cifar_help(spec, root)}"
                               + (". For files you made yourself, set data.verify=false" if verify else "")) from None
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, OSError) as e:
            raise DatasetError(f"{spec.name} under {root} is corrupt ({type(e).__name__}: {e}). "
                               f"Delete it and download again. {_cifar_help(spec, root)}") from None
        x = np.asarray(ds.data)
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3) or len(ds.targets) != len(x):
            raise DatasetError(f"{spec.name} under {root} is corrupt: images of shape {x.shape}, "
                               f"{len(ds.targets)} labels. {_cifar_help(spec, root)}")
        y = torch.as_tensor(np.asarray(ds.targets, dtype=np.int64))
        if len(y) and (y.min() < 0 or y.max() >= spec.num_classes):
            raise DatasetError(f"{spec.name} under {root} is corrupt: labels outside [0, {spec.num_classes}).")
        out += [torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), y]
    return out


def _download_cifar(spec: DatasetSpec, root: Path) -> None:
    try:
        for train in (True, False):  # download=True verifies the archive's md5
            _CIFAR[spec.name](str(root), train=train, download=True)
    except Exception as e:  # noqa: BLE001 - network errors come in many types
        raise DatasetError(f"{spec.name} could not be downloaded ({type(e).__name__}: {e}). "
                           f"{_cifar_help(spec, root)}") from None


# --- Fashion-MNIST from the original idx files --------------------------------------------------

_FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find_idx(root: Path, stem: str) -> Path | None:
    for folder in (root, root / "FashionMNIST" / "raw"):
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                return folder / name
    return None


def read_idx(path: Path) -> np.ndarray:
    """Parse an idx file (optionally gzipped); raise DatasetError if it is truncated or malformed."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DatasetError(f"{path} is corrupt ({type(e).__name__}: {e}); delete it and fetch it again.") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path} is not an idx file of uint8 (bad magic number); delete it and fetch it again.")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DatasetError(f"{path} is truncated: header says {dims}, found {data.size} bytes of data; "
                           "delete it and fetch it again.")
    return data.reshape(dims)


def _fmnist_help(root: Path) -> str:
    return (f"Fashion-MNIST idx files (train-images-idx3-ubyte.gz, ...) are expected in {root}/. "
            "Install them with `apt-get install dataset-fashion-mnist` (into "
            f"{FASHION_MNIST_SYSTEM_DIR}), let augbench download them with data.download=true, "
            "or point data.root at a folder that holds them")


def _load_fmnist(spec: DatasetSpec, root: Path):
    out = []
    for split in ("train", "test"):
        paths = [_find_idx(root, stem) for stem in _FMNIST_FILES[split]]
        if None in paths:
            raise DatasetError(f"Fashion-MNIST is missing. {_fmnist_help(root)}.")
        x, y = (read_idx(p) for p in paths)
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.ndim != 1 or len(x) != len(y) or (len(y) and y.max() >= 10):
            raise DatasetError(f"Fashion-MNIST in {root} is corrupt: images {x.shape}, labels {y.shape}.")
        # pad 28x28 to 32x32 with black so every backbone takes it
        x = np.pad(x, ((0, 0), (2, 2), (2, 2)))[:, None]
        out += [torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64))]
    return out


def _download_fmnist(root: Path) -> None:
    try:
        for train in (True, False):
            datasets.FashionMNIST(str(root), train=train, download=True)
    except Exception as e:  # noqa: BLE001
        raise DatasetError(f"Fashion-MNIST could not be downloaded ({type(e).__name__}: {e}). "
                           f"{_fmnist_help(root)}.") from None


def _present(spec: DatasetSpec, root: Path) -> bool:
    if spec.name == "fashion_mnist":
        return all(_find_idx(root, s) for pair in _FMNIST_FILES.values() for s in pair)
    return (root / _CIFAR[spec.name].base_folder).is_dir()


def prepare(spec: DatasetSpec, root: Path, download: bool) -> None:
    """Download once if missing. The file lock makes concurrent jobs wait for the first download."""
    if _present(spec, root):
        return
    if not download:
        help_ = _fmnist_help(root) if spec.name == "fashion_mnist" else _cifar_help(spec, root)
        raise DatasetError(f"{spec.name} is missing and data.download=false. {help_}.")
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{spec.name}.download.lock")):
        if not _present(spec, root):  # another job may have finished it while we waited
            _download_fmnist(root) if spec.name == "fashion_mnist" else _download_cifar(spec, root)


def load(spec: DatasetSpec, root: Path, verify: bool = True):
    """(train_x, train_y, test_x, test_y): uint8 N×C×32×32 images and int64 labels on the CPU."""
    if spec.name == "fashion_mnist":
        return _load_fmnist(spec, root)
    return _load_cifar(spec, root, verify)


# --- device batches -----------------------------------------------------------------------------


class Normalize:
    """uint8 images to ``(x/255 - mean)/std`` in float32, as one multiply-add on the images' device."""

    def __init__(self, mean, std, device):
        mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        std = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.scale, self.shift = 1.0 / (255.0 * std), -mean / std

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.scale.device != images.device:
            self.scale, self.shift = self.scale.to(images.device), self.shift.to(images.device)
        return torch.addcmul(self.shift, images.float(), self.scale)


class DeviceLoader:
    """Yields ``{"image", "target": long N}`` batches from uint8 tensors, wherever those live.

    With ``normalize`` the images come out normalised (float, on the tensors' device); without, they
    stay uint8 for the consumer to normalise after moving them (4× fewer bytes to copy). With
    ``pin_memory`` (host tensors feeding a GPU) each batch is gathered into page-locked memory, so the
    copy to the device is asynchronous. With ``shuffle`` each epoch is a permutation drawn from a
    generator seeded by (seed, epoch), so data order depends only on the epoch number: a resumed run
    sees the same batches.
    """

    def __init__(self, images, targets, batch_size, mean, std, *, shuffle=False, drop_last=False,
                 seed=0, epoch_fn=lambda: 0, normalize=True, pin_memory=False):
        self.images, self.targets = images, targets
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.epoch_fn = seed, epoch_fn
        self.normalize = Normalize(mean, std, images.device) if normalize else None
        self.pin_memory = pin_memory

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _take(self, tensor, idx):
        if not self.pin_memory:
            return tensor[idx]
        # a fresh page-locked buffer per batch: the caching host allocator reuses it only once the
        # asynchronous copy that reads it has finished
        out = torch.empty((len(idx), *tensor.shape[1:]), dtype=tensor.dtype, pin_memory=True)
        return torch.index_select(tensor, 0, idx, out=out)

    def __iter__(self):
        device = self.images.device
        if self.shuffle:
            g = torch.Generator(device=device)
            g.manual_seed(derive_seed(self.seed, "epoch", self.epoch_fn()))
            order = torch.randperm(len(self.images), generator=g, device=device)
        else:
            order = torch.arange(len(self.images), device=device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            image = self._take(self.images, idx)
            if self.normalize is not None:
                image = self.normalize(image)
            yield {"image": image, "target": self._take(self.targets, idx)}


def steps_of(batch) -> list[dict]:
    """The optimiser steps' batches in what the training loop hands over: one batch, or a group of them
    (``trainer.steps_per_batch`` > 1)."""
    return batch if isinstance(batch, list) else [batch]


class StepGroups:
    """The training batches of ``loader`` handed over ``k`` at a time, as lists: Lightning's per-batch
    loop (data fetcher, transfer and callback hooks, progress and logger bookkeeping) then runs once per
    ``k`` optimiser steps, and the Classifier takes the ``k`` steps in one ``training_step``. ``steps``
    caps the optimiser steps per epoch (``trainer.limit_train_batches``, counted in steps); the last
    group is shorter when ``k`` does not divide them."""

    def __init__(self, loader, k: int, steps: int | None = None):
        self.loader, self.k = loader, k
        self.steps = len(loader) if steps is None else min(steps, len(loader))

    def __len__(self) -> int:
        return -(-self.steps // self.k)

    def __iter__(self):
        group = []
        for step, batch in zip(range(self.steps), self.loader):
            group.append(batch)
            if len(group) == self.k or step + 1 == self.steps:
                yield group
                group = []


def limited_steps(n: int, limit) -> int:
    """Lightning's reading of ``limit_train_batches`` (an int caps, a float is a fraction), in steps."""
    if limit is None:
        return n
    if isinstance(limit, float) and limit <= 1.0:
        if limit > 0 and int(n * limit) == 0:
            raise ConfigError(f"trainer.limit_train_batches={limit} of {n} training batches is no batch at all; "
                              "raise it, or give a number of batches")
        return int(n * limit)
    return min(n, int(limit))


def corrupt_labels(targets: torch.Tensor, rate: float, num_classes: int, seed: int, file_index: torch.Tensor) -> dict:
    """The mixup paper's corrupted labels: a seeded ``rate`` fraction of the training images (exactly
    round(rate·n) of them) gets a label drawn uniformly from all K classes, so a replacement equals the
    true label with probability 1/K and the effective noise rate is about rate·(K−1)/K.

    Returns the new targets, the true ones, the mask of images whose label now differs from the truth
    (the corrupted subset), the indices into the training file of every image drawn, and the rates."""
    g = torch.Generator().manual_seed(derive_seed(seed, "label_noise"))
    n = len(targets)
    drawn = torch.randperm(n, generator=g)[: int(round(rate * n))].sort().values
    noisy = targets.clone()
    noisy[drawn] = torch.randint(num_classes, (len(drawn),), generator=g, dtype=targets.dtype)
    changed = noisy != targets
    return {"targets": noisy, "true": targets, "corrupted": changed, "drawn": drawn, "drawn_file_index": file_index[drawn],
            "rate": rate, "effective_rate": float(changed.float().mean()) if n else 0.0,
            "n_drawn": len(drawn), "n_corrupted": int(changed.sum()), "n_train": n}


class AugDataModule(L.LightningDataModule):
    """CIFAR-10, CIFAR-100 or Fashion-MNIST with a seeded held-out validation split.

    ``device_resident`` (default) keeps the uint8 dataset on the training device; otherwise it stays
    in host memory (page-locked when training on a GPU) and Lightning copies each uint8 batch. Either
    way batches are normalised on the training device, after the transfer.
    """

    def __init__(self, name: str = "cifar10", root: str | None = None, batch_size: int = 128,
                 eval_batch_size: int = 1000, val_fraction: float = 0.2, verify: bool = True,
                 download: bool = True, device_resident: bool = True, test_every_epoch: bool = False,
                 label_noise: float = 0.0, seed: int = 0, steps_per_batch: int = 1,
                 train_steps_limit: int | float | None = None):
        super().__init__()
        # trainer.steps_per_batch and trainer.limit_train_batches, set by ``train``: see StepGroups
        self.steps_per_batch, self.train_steps_limit = steps_per_batch, train_steps_limit
        self.spec = get_spec(name)
        self.root = Path(root or default_root(name))
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_fraction, self.verify, self.download = val_fraction, verify, download
        self.device_resident, self.test_every_epoch, self.seed = device_resident, test_every_epoch, seed
        self.label_noise = label_noise
        self.noise = None  # with label_noise: which training labels were replaced, and their true labels
        self.host = None  # CPU tensors, loaded once
        self.tensors = None  # the same on the training device (or pinned on the host)
        self.normalize = Normalize(self.spec.mean, self.spec.std, "cpu")
        self.pin_memory = False

    def prepare_data(self) -> None:
        prepare(self.spec, self.root, self.download)

    def load(self) -> None:
        """Read and check the files now, so that a missing or corrupt dataset fails before training."""
        if self.host is None:
            self.prepare_data()
            train_x, train_y, test_x, test_y = load(self.spec, self.root, self.verify)
            # held-out split drawn from the seed alone: the same for every run with this seed
            g = torch.Generator().manual_seed(derive_seed(self.seed, "val_split"))
            perm = torch.randperm(len(train_x), generator=g)
            n_val = int(round(self.val_fraction * len(train_x)))
            val, train = perm[:n_val].sort().values, perm[n_val:].sort().values
            train_y_used = train_y[train]
            if self.label_noise:
                self.noise = corrupt_labels(train_y_used, self.label_noise, self.spec.num_classes, self.seed, train)
                train_y_used = self.noise["targets"]
            self.host = {
                "train": (train_x[train], train_y_used),
                "val": (train_x[val], train_y[val]),
                "test": (test_x, test_y),
            }
            if len(train) < self.batch_size:
                raise ConfigError(f"data.batch_size={self.batch_size} is invalid: must be at most the {len(train)} "
                                  f"training images of {self.spec.name} under {self.root}")

    def setup(self, stage: str | None = None) -> None:
        self.load()
        if self.tensors is None:
            target = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
            if self.device_resident:
                self.tensors = {k: (x.to(target), y.to(target)) for k, (x, y) in self.host.items()}
            else:
                self.tensors = self.host
                self.pin_memory = target.type == "cuda"

    def _loader(self, split: str, **kw) -> DeviceLoader:
        x, y = self.tensors[split]
        bs = self.batch_size if split == "train" else self.eval_batch_size
        return DeviceLoader(x, y, bs, self.spec.mean, self.spec.std, normalize=False,
                            pin_memory=self.pin_memory, **kw)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Normalise on the training device, before the augmentation callbacks see the batch."""
        for b in steps_of(batch):
            b["image"] = self.normalize(b["image"])
        return batch

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def train_dataloader(self):
        # drop_last keeps every training batch the same shape (static shapes for compile/graphs)
        loader = self._loader("train", shuffle=True, drop_last=True, seed=self.seed, epoch_fn=self._epoch)
        if not self.grouped:
            return loader
        return StepGroups(loader, self.steps_per_batch, limited_steps(len(loader), self.train_steps_limit))

    @property
    def grouped(self) -> bool:
        """Whether training batches come in groups (StepGroups), which then also apply the step limit."""
        return self.steps_per_batch > 1 or self.train_steps_limit is not None

    def group_steps(self, steps_per_batch: int, limit) -> bool:
        """Hand over ``steps_per_batch`` training batches at a time; grouped, the loader applies ``limit``
        (``trainer.limit_train_batches`` or fast_dev_run's count) in steps, and the Trainer must not
        apply it again to the groups. Returns whether the batches are grouped."""
        self.steps_per_batch, self.train_steps_limit = steps_per_batch, (limit if steps_per_batch > 1 else None)
        return self.grouped

    def train_steps(self, batches: int) -> int:
        """Optimiser steps in an epoch of ``batches`` training batches (Lightning's count)."""
        if not self.grouped:
            return batches
        n = len(self.host["train"][0]) // self.batch_size  # the loader drops the last partial batch
        return min(batches * self.steps_per_batch, limited_steps(n, self.train_steps_limit))

    @property
    def eval_names(self) -> list[str]:
        """Which splits the validation loop evaluates each epoch, in dataloader order."""
        names = ["val"] if len(self.host["val"][0]) else []
        return names + (["test"] if self.test_every_epoch else [])

    def val_dataloader(self):
        return [self._loader(name) for name in self.eval_names]

    def test_dataloader(self):
        return self._loader("test")

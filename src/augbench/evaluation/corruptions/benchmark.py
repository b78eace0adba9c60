"""Top-1 under corruption: CIFAR-10-C / CIFAR-100-C from the official files when they are on disk,
else the procedural reimplementation; a heatmap of the result."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch

from augbench.errors import DatasetError
from augbench.evaluation.common import Model, Stats, accuracy, new_figure, predict_logits, save_png
from augbench.evaluation.corruptions.registry import BENCHMARK_15, EXTRA_4, corrupt, left_out

log = logging.getLogger("augbench")

SEVERITIES = (1, 2, 3, 4, 5)
OFFICIAL = {"cifar10": "CIFAR-10-C", "cifar100": "CIFAR-100-C"}  # folder under the data root
OFFICIAL_URL = {"cifar10": "https://zenodo.org/records/2535967", "cifar100": "https://zenodo.org/records/3555552"}
IMAGE_SHAPE = (32, 32, 3)  # one row of an official <name>.npy: (5 · n) × 32 × 32 × 3 uint8, severity-major


def official_dir(root, dataset: str = "cifar10") -> Path | None:
    """``<root>/CIFAR-10-C`` (``CIFAR-100-C`` for cifar100), or ``root`` itself if it is that folder;
    None when absent or for a dataset without official files."""
    folder = OFFICIAL.get(dataset)
    if folder is None or root is None:
        return None
    root = Path(root)
    for candidate in (root / folder, root):
        if candidate.name == folder and candidate.is_dir():
            return candidate
    return None


def _open_npy(path: Path, fix: str) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"{path} is missing; {fix}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DatasetError(f"{path} is truncated or corrupt ({e}); {fix}") from None


def load_official(directory, name: str, severity: int, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (n, 3, 32, 32) uint8 and labels (n,) int64 of ``name`` at ``severity`` from an official
    folder: rows (severity − 1)·k ... of ``<name>.npy`` and ``labels.npy``, k = rows / 5 (10,000 for the
    real files); the first ``n`` of them (all by default)."""
    directory = Path(directory)
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 1..5, got {severity}")
    dataset = next((d for d, f in OFFICIAL.items() if f == directory.name), "cifar10")
    fix = (f"download {OFFICIAL_URL[dataset]} and extract it into {directory.parent}, "
           f"or delete {directory} to use the procedural corruptions instead")
    images = _open_npy(directory / f"{name}.npy", fix)
    labels = _open_npy(directory / "labels.npy", fix)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE \
            or not images.shape[0] or images.shape[0] % 5:
        raise DatasetError(f"{directory / f'{name}.npy'} holds {images.dtype} {images.shape}, not uint8 "
                           f"(5·n, 32, 32, 3) (n images at each of 5 severities); {fix}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0] or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{directory / 'labels.npy'} holds {labels.dtype} {labels.shape}, not "
                           f"{images.shape[0]} integer labels to match {name}.npy; {fix}")
    per = images.shape[0] // 5
    rows = slice((severity - 1) * per, (severity - 1) * per + (per if n is None else min(n, per)))
    block = np.ascontiguousarray(images[rows].transpose(0, 3, 1, 2))
    return torch.from_numpy(block), torch.from_numpy(np.asarray(labels[rows], dtype=np.int64))


def _procedural_source(dataset: str) -> str:
    published = OFFICIAL.get(dataset)
    tail = f"not the published {published} files" if published else f"no published files exist for {dataset}"
    return f"procedural (augbench reimplementation of make_cifar_c.py with CIFAR constants; {tail})"


def corruption_accuracy(model: Model, images_u8: torch.Tensor, labels: torch.Tensor, mean: Stats, std: Stats, *,
                        dataset: str, root, names: Iterable[str] | None = None,
                        severities: Iterable[int] = SEVERITIES, seed: int = 0, batch_size: int = 1000,
                        n_images: int | None = None) -> dict:
    """Top-1 (fractions) of ``model`` on the corrupted test set, never augmented, batched.

    Official files are used when ``official_dir(root, dataset)`` finds them (CIFAR-10/100 only; their
    labels must match the test set's order), else the corruptions are generated from ``images_u8``
    with ``seed``. ``names``: None for every available corruption. ``n_images``: the first n test
    images only. ``corruption_mean_acc`` averages the benchmark-15 corruptions that were computed
    (AugMix's CIFAR number when all 15 × 5 are), listed in ``corruption_mean_over``."""
    n = len(images_u8) if n_images is None else max(0, min(int(n_images), len(images_u8)))
    images, labels = images_u8[:n].cpu(), labels[:n].cpu()
    severities = [int(s) for s in severities]
    if not severities or any(s not in SEVERITIES for s in severities):
        raise ValueError(f"severities must be a non-empty subset of 1..5, got {severities}")
    known = BENCHMARK_15 + EXTRA_4
    if names is not None:
        names = list(names)
        unknown = [nm for nm in names if nm not in known]
        if unknown:
            raise ValueError(f"unknown corruption(s) {unknown}; choose from {', '.join(known)}")
    directory = official_dir(root, dataset)
    if directory is not None:
        source = f"official {directory.name} files at {directory}"
        missing = {nm: f"no {nm}.npy in {directory}" for nm in known if not (directory / f"{nm}.npy").is_file()}
    else:
        source = _procedural_source(dataset)
        missing = left_out(images.shape[1])
    wanted = list(known) if names is None else names
    chosen = [nm for nm in wanted if nm not in missing]
    results: dict[str, dict[str, float]] = {}
    for name in chosen:
        results[name] = {}
        for s in severities:
            t0 = time.monotonic()
            if directory is not None:
                x, y = load_official(directory, name, s, n)
                if len(y) < n or not torch.equal(y, labels.to(torch.int64)):
                    raise DatasetError(f"{directory}/labels.npy does not match the {dataset} test set "
                                       f"(order or count, first {n} images); these are not its corruptions")
            else:
                x = corrupt(images, name, s, seed)
            results[name][str(s)] = accuracy(predict_logits(model, x, mean, std, batch_size), labels)
            log.debug("corruption %s/%d: %.1f s", name, s, time.monotonic() - t0)
    over = [nm for nm in BENCHMARK_15 if nm in results]
    mean_acc = float(np.mean([np.mean(list(results[nm].values())) for nm in over])) if over else None
    return {"source": source, "corruption": results, "corruption_mean_acc": mean_acc, "corruption_mean_over": over,
            "left_out": {nm: why for nm, why in missing.items() if nm in wanted}, "n_images": n,
            "severities": severities, "seed": seed}


def plot_corruptions(result: Mapping, path, title: str) -> None:
    """Heatmap of top-1 (%): one row per corruption (benchmark 15 first), one column per severity,
    plus the row mean; written atomically to ``path`` (PNG)."""
    table = result["corruption"]
    order = BENCHMARK_15 + EXTRA_4
    names = [nm for nm in order if nm in table] + [nm for nm in table if nm not in order]
    sevs = sorted({int(s) for row in table.values() for s in row})
    grid = np.full((len(names), len(sevs) + 1), np.nan)
    for i, nm in enumerate(names):
        for j, s in enumerate(sevs):
            grid[i, j] = 100.0 * table[nm].get(str(s), table[nm].get(s, np.nan))
        grid[i, -1] = np.nanmean(grid[i, :-1]) if len(sevs) else np.nan
    fig, (ax,) = new_figure(1.1 * (len(sevs) + 1) + 2.6, 0.36 * max(len(names), 1) + 1.6)
    im = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=8, color="white" if v < 60 else "black")
    ax.set_xticks(range(len(sevs) + 1), [str(s) for s in sevs] + ["mean"])
    ax.set_yticks(range(len(names)), [nm + (" *" if nm in EXTRA_4 else "") for nm in names])
    ax.axvline(len(sevs) - 0.5, color="white", linewidth=2)
    mean = result.get("corruption_mean_acc")
    sub = f"mean over {len(result.get('corruption_mean_over', []))} benchmark corruptions: " + \
          (f"{100 * mean:.1f}%" if mean is not None else "n/a")
    ax.set(xlabel="severity", title=f"{title}\n{sub}  (* extra, not in the mean)")
    fig.colorbar(im, ax=ax, label="top-1 accuracy (%)")
    save_png(fig, path)

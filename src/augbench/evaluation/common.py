"""What every measure shares: pixel conversions, batched eval-mode inference, top-1, PNG output.

Pixel-domain perturbations are written in [0, 1] units (``to_unit``) and normalised last, so "ε/255"
and "the mean pixel" mean what they say. Every measure here goes through the same ``to_unit`` →
``normalise`` path, so its unperturbed case (ε = 0, hole 0, ...) reproduces clean accuracy exactly;
``augbench.data.Normalize`` folds the same affine map into one multiply-add and can differ from
it in the last float bit.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from augbench.runs import atomic_write

Model = Callable[[torch.Tensor], torch.Tensor]  # normalised (N, C, H, W) float -> logits (N, K)
Stats = Sequence[float] | torch.Tensor  # per-channel mean or std, in [0, 1] pixel units


def to_unit(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 pixels to float32 in [0, 1]."""
    return images_u8.float() / 255.0


def channel_view(values: Stats, like: torch.Tensor) -> torch.Tensor:
    """Per-channel statistics shaped (1, C, 1, 1) on ``like``'s device, to broadcast over a batch."""
    return torch.as_tensor(values, dtype=torch.float32, device=like.device).view(1, -1, 1, 1)


def normalise(x_unit: torch.Tensor, mean: Stats, std: Stats) -> torch.Tensor:
    """[0, 1] pixels to the model's input ``(x - mean) / std``; the mean pixel maps to exactly 0."""
    return (x_unit - channel_view(mean, x_unit)) / channel_view(std, x_unit)


def model_device(model: Model, fallback: torch.device) -> torch.device:
    """Where the model's weights live (a bare callable runs wherever its input is)."""
    if isinstance(model, torch.nn.Module):
        first = next(itertools.chain(model.parameters(), model.buffers()), None)
        if first is not None:
            return first.device
    return fallback


@contextlib.contextmanager
def eval_mode(model: Model) -> Iterator[None]:
    """Batch-norm statistics and dropout frozen for the measurement, the caller's mode restored."""
    was_training = isinstance(model, torch.nn.Module) and model.training
    if was_training:
        model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


def batch_slices(n: int, batch_size: int) -> Iterator[slice]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return (slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size))


def batched_logits(model: Model, n: int, unit_batch: Callable[[slice], torch.Tensor], mean: Stats,
                   std: Stats, batch_size: int = 1000) -> torch.Tensor:
    """float32 logits of ``n`` inputs, built a batch at a time by ``unit_batch(slice)`` in [0, 1] pixels."""
    out = []
    with torch.no_grad(), eval_mode(model):
        for sl in batch_slices(n, batch_size):
            out.append(model(normalise(unit_batch(sl), mean, std)).float())
    return torch.cat(out) if out else torch.empty(0)


def predict_logits(model: Model, images_u8: torch.Tensor, mean: Stats, std: Stats, batch_size: int = 1000,
                   transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """float32 logits (N, K) on the model's device. ``transform`` sees each [0, 1] pixel batch
    before normalisation."""
    device = model_device(model, images_u8.device)

    def unit_batch(sl: slice) -> torch.Tensor:
        x = to_unit(images_u8[sl].to(device, non_blocking=True))
        return x if transform is None else transform(x)

    return batched_logits(model, len(images_u8), unit_batch, mean, std, batch_size)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy as a fraction in [0, 1] (the unit of metrics.json)."""
    return (logits.argmax(1) == labels.to(logits.device)).float().mean().item()


def new_figure(width: float, height: float, rows: int = 1, **grid) -> tuple[Figure, list]:
    """A bare Figure on an Agg canvas: no pyplot, so no global backend switch for callers."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, list(fig.subplots(rows, 1, squeeze=False, **grid)[:, 0])


def save_png(fig: Figure, path: str | Path) -> None:
    """Written to a temp file beside ``path`` and renamed over it: readers never see half a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110, bbox_inches="tight"))

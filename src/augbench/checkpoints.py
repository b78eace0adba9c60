"""Checkpoint files: written atomically, read back onto the CPU.

A checkpoint records the device each tensor lived on (``cuda:3``). A relaunched sweep hands its
jobs other GPUs, a SLURM requeue may land on a node with fewer of them, and a run may move between
a CPU and a GPU: every tensor is therefore loaded onto the CPU, and Lightning moves the state to the
device the run has now.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from augbench.runs import LAST, PREVIOUS, atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written atomically; the previous ``last.ckpt`` is kept as ``last.prev.ckpt``."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.name == LAST and path.exists():
            # killed before the new one lands, the run resumes from this one
            os.replace(path, path.with_name(PREVIOUS))
        atomic_write(path, lambda f: torch.save(checkpoint, f))

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        return super().load_checkpoint(path, map_location="cpu", weights_only=weights_only)

"""A run folder on disk: metrics.json and checkpoints, written so that a crash never leaves a torn file.

Every write goes to a temporary file in the same folder, is fsynced, then renamed over the
target: readers see the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import zipfile
from pathlib import Path

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

log = logging.getLogger(__name__)

METRICS = "metrics.json"
LAST = "last.ckpt"
PREVIOUS = "last.prev.ckpt"


def atomic_write(path: Path, write) -> None:
    """Call ``write(file)`` on a temp file next to ``path``, then rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_metrics(folder: Path, metrics: dict) -> None:
    data = json.dumps(metrics, indent=2, default=str).encode()
    try:
        atomic_write(Path(folder) / METRICS, lambda f: f.write(data))
    except OSError as e:
        raise OSError(f"could not write {Path(folder) / METRICS} ({e.strerror or e}); "
                      "check that the output folder is writable and the disk is not full") from e


def read_metrics(folder: Path) -> dict | None:
    path = Path(folder) / METRICS
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.warning("%s is unreadable; treating the run as unfinished", path)
        return None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written atomically; the previous ``last.ckpt`` is kept as ``last.prev.ckpt``."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.name == LAST and path.exists():
            # killed before the new one lands, the run resumes from this one
            os.replace(path, path.with_name(PREVIOUS))
        atomic_write(path, lambda f: torch.save(checkpoint, f))


def _intact(path: Path) -> bool:
    """A torch checkpoint is a zip archive: check every member's CRC, which a torn write fails."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip() is None
    except (OSError, zipfile.BadZipFile):
        return False


def resume_checkpoint(folder: Path) -> str | None:
    """The newest intact checkpoint in ``folder``, or None to start fresh."""
    for stale in Path(folder).glob(f".{LAST}.*.tmp"):  # left by a write that was killed
        stale.unlink(missing_ok=True)
    for name in (LAST, PREVIOUS):
        path = Path(folder) / name
        if not path.exists():
            continue
        if _intact(path):
            return str(path)
        log.warning("%s is damaged (cut off mid-write?); falling back to the previous checkpoint", path)
    return None

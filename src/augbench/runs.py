"""A run folder on disk: metrics.json and checkpoints, written so that a crash never leaves a torn file.

Every write goes to a temporary file in the same folder, is fsynced, then renamed over the
target: readers see the old file or the new one, never half of one. Imports no torch: sweeps read
run folders before deciding what to launch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import tempfile
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path

from augbench.errors import RunExistsError

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


class RunRecord:
    """A run's metrics.json across its attempts: a relaunch after a kill, a SLURM requeue or a
    preemption resumes the run in a new attempt, and the run's ``wall_seconds`` is the time of all of
    them (an attempt's time is saved at every epoch end, so a killed attempt keeps what it trained)."""

    def __init__(self, folder: Path, config: dict, resuming: bool):
        self.folder, self.config = Path(folder), config
        previous = (read_metrics(folder) or {}) if resuming else {}
        self.attempts = [dict(a) for a in previous.get("attempt_log", [])]
        self.attempts.append({"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              "host": socket.gethostname(), "seconds": 0.0})
        self._start = time.monotonic()

    @property
    def wall_seconds(self) -> float:
        return round(sum(a["seconds"] for a in self.attempts), 2)

    def write(self, status: str, ended: bool = False, **fields) -> dict:
        """Write metrics.json with ``status``, ``fields`` and the attempts so far; return what was written."""
        self.attempts[-1]["seconds"] = round(time.monotonic() - self._start, 2)
        if ended:
            self.attempts[-1]["ended"] = status
        metrics = {"status": status, **fields, "wall_seconds": self.wall_seconds, "attempts": len(self.attempts),
                   "attempt_seconds": [a["seconds"] for a in self.attempts], "attempt_log": self.attempts,
                   "config": self.config}
        write_metrics(self.folder, metrics)
        return metrics


def collapse_reason(train_loss: float | None, test_acc1: float | None, num_classes: int,
                    label_noise: float = 0.0) -> str | None:
    """Why a finished run counts as collapsed (it never left chance), or None.

    Collapsed: the final training loss is within 5% of ln K (a uniform prediction), or test accuracy is
    within 2 points of chance (1/K); with corrupted training labels only the second counts, since a
    healthy run's loss on mostly random labels stays near ln K. Such runs happen under the study's
    protocol (LeNet at lr 0.1 stays at chance for about 1 seed in 12) and would pull a mean far below
    what the regime does."""
    reasons = []
    chance_loss = math.log(num_classes)
    near_chance_loss = train_loss is not None and abs(train_loss - chance_loss) <= 0.05 * chance_loss
    if not label_noise and near_chance_loss:
        reasons.append(f"final training loss {train_loss:.3f} is within 5% of ln K = {chance_loss:.3f}")
    if test_acc1 is not None and abs(test_acc1 - 1 / num_classes) <= 0.02:
        reasons.append(f"test accuracy {100 * test_acc1:.2f}% is within 2 points of chance ({100 / num_classes:.2f}%)")
    return "; ".join(reasons) or None


def describe_status(m: dict) -> str:
    """A run's status in words, with the first line of its error."""
    status = m.get("status", "?")
    words = {"requeued": "requeued by SLURM (time limit or preemption), waiting to resume from its checkpoint",
             "interrupted": "interrupted (stopped by the user); relaunch to resume",
             "running": "running, or killed without a chance to record it; relaunch to resume"}.get(status, status)
    if m.get("slurm_state"):
        words += f" (SLURM: {m['slurm_state']})"
    error = str(m.get("error") or "").splitlines()
    return words + (f": {error[0]}" if error else "")


def read_metrics(folder: Path) -> dict | None:
    path = Path(folder) / METRICS
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.warning("%s is unreadable; treating the run as unfinished", path)
        return None


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


# keys that change how a run is shown, placed or scheduled, not what it computes
COSMETIC = {"output_dir", "progress_refresh_rate", "trainer.enable_progress_bar", "trainer.enable_model_summary",
            "trainer.log_every_n_steps", "trainer.devices", "runs_per_gpu", "gpu_slot_dir",
            "run_lock.stale_after_s", "run_lock.heartbeat_s", "trainer.checkpoint_every_n_epochs",
            "trainer.steps_per_batch"}
# the evaluation suite reads the final weights and changes nothing they compute: a finished run is
# evaluated with another suite by ``python -m augbench.evaluate``, never retrained
COSMETIC_PREFIXES = ("aug.callbacks", "eval.")


def flatten(d: dict, prefix: str = "", sep: str = ".") -> dict:
    flat = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            flat |= flatten(v, key + sep, sep)
        else:
            flat[key] = v
    return flat


# keys added since a run may have completed, with the value that run had in effect: a finished grid
# stays finished when augbench learns a new knob
ADDED = {"optim.label_smoothing": 0.0, "optim.warmup_epochs": 0, "data.label_noise": 0.0, "aug.center": "uniform", "aug.sigma": 0.25, "aug.fixed_lam": None,
         "aug.label_mode": "area", "aug.schedule": False, "aug.layer": 0,
         "model.compile_scope": "backbone"}


def same_config(a: dict, b: dict) -> bool:
    # aug.callbacks is built from the aug.* knobs (compared one by one) by interpolation: comparing the
    # list as well would tell a run from before a knob existed apart from today's
    strip = lambda c: ADDED | {k: v for k, v in flatten(c).items()  # noqa: E731
                               if k not in COSMETIC and not k.startswith(COSMETIC_PREFIXES)}
    return strip(a) == strip(b)


def completed_run(out: Path, config: dict) -> dict | None:
    """The metrics of the completed run in ``out`` when it ran this config; None when there is none.

    A completed run of another config raises RunExistsError: results are never overwritten."""
    previous = read_metrics(out)
    if not previous or previous.get("status") != "completed":
        return None
    if same_config(previous.get("config", {}), config):
        return previous
    raise RunExistsError(f"{out} holds a completed run with a different config; it is never overwritten. "
                         "Choose another folder (hydra.run.dir=...) or move that run away")

"""Runs on SLURM: the time-limit signal, requeues told apart from a user's Ctrl-C, and jobs that end
without a result (cancelled, out of memory, node lost, out of requeues) recorded instead of taking the
sweep down.

Imports neither torch nor submitit at import time: the launcher plugin that uses it is loaded by
Hydra before every command.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

log = logging.getLogger("augbench")

# the signal submitit asks SLURM to send ``signal_delay_s`` before the time limit (sbatch --signal)
REQUEUE_SIGNAL = signal.SIGUSR2
_requeue_requested = False


def signal_delay(timeout_min: float) -> int:
    """Seconds before the time limit at which a job is signalled to requeue itself.

    Hydra's fixed 120 s would signal a job with a 2-minute limit at once. A tenth of the limit, at
    least 15 s (submitting the requeue and writing metrics.json: the resume itself starts from the
    last end-of-epoch checkpoint, so nothing has to be saved then) and at most 120 s."""
    return int(min(120, max(15, 0.1 * 60 * float(timeout_min))))


def watch_requeue_signal() -> None:
    """In a SLURM job: note when SLURM's time-limit signal arrives, then let submitit requeue the job.

    submitit's handler requeues the job and exits through SystemExit in the middle of training; the
    run records that as ``requeued`` rather than ``interrupted`` (a user's Ctrl-C)."""
    if "SLURM_JOB_ID" not in os.environ:
        return
    previous = signal.getsignal(REQUEUE_SIGNAL)
    if not callable(previous) or getattr(previous, "augbench_watch", False):
        return

    def note_then_requeue(signum, frame):
        global _requeue_requested
        _requeue_requested = True
        previous(signum, frame)

    note_then_requeue.augbench_watch = True
    signal.signal(REQUEUE_SIGNAL, note_then_requeue)


def requeue_requested() -> bool:
    return _requeue_requested


def stopped_by_slurm(e: BaseException) -> str | None:
    """How SLURM stopped this run, if it did: ``requeued`` (its time limit: submitit requeued the job;
    or a preemption/``scontrol requeue``: SIGTERM, which Lightning turns into SIGTERMException), or
    ``failed`` when the time limit came with no requeue left. None: not SLURM (a user's Ctrl-C, a bug)."""
    if "SLURM_JOB_ID" not in os.environ:
        return None
    if isinstance(e, SystemExit) and (_requeue_requested or type(e).__name__ == "SIGTERMException"):
        return "requeued"
    if _requeue_requested and "not requeued" in str(e):  # submitit: "Job not requeued because: timed-out too many times"
        return "failed"
    return None


def slurm_state(job) -> str:
    """The SLURM state of a finished submitit job (``CANCELLED``, ``OUT_OF_MEMORY``, ``TIMEOUT``, ...)."""
    try:
        state = job.get_info(mode="force").get("State") or job.state
    except Exception:  # noqa: BLE001 - sacct unreachable: say so rather than fail the summary
        return "UNKNOWN"
    return str(state).split()[0]  # "CANCELLED by 0" -> "CANCELLED"


def last_error_line(log_path: str | None) -> str | None:
    """The one-line reason augbench printed before the job exited (``augbench: ...``), if any."""
    try:
        lines = Path(log_path).read_text(errors="replace").splitlines() if log_path else []
    except OSError:
        return None
    return next((line.strip() for line in reversed(lines) if line.startswith("augbench:")), None)


def record_lost_job(folder: Path, config: dict, job_id: str, state: str, log_path: str | None,
                    reason: str | None = None) -> dict:
    """metrics.json of a run whose SLURM job ended without a result; what the sweep summary lists."""
    from augbench.runs import read_metrics, write_metrics

    previous = read_metrics(folder) or {}
    if previous.get("status") == "completed":  # finished, but its result file was lost: the run stands
        return previous
    reason = reason or last_error_line(log_path) or f"ended {state} without a result"
    where = f"; its log: {log_path}" if log_path else ""
    metrics = {**previous, "status": "failed", "slurm_state": state, "slurm_job_id": job_id,
               "error": f"SLURM job {job_id}: {reason}{where}", "config": previous.get("config", config)}
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_metrics(folder, metrics)
    return metrics

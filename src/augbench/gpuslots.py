"""Hand out the GPUs of one machine to parallel jobs (a local joblib sweep, several sweeps at once).

Picking a GPU by job number ignores GPUs that are busy and piles jobs onto one GPU when job numbers
are not contiguous. Instead each job takes a free *slot*, ``runs_per_gpu`` per GPU: one flock'd file
per slot, held while the job trains. The kernel drops a flock when its holder dies, even by SIGKILL,
so a crashed job never leaves a slot taken. flock is used directly, not through ``filelock``: locks on
distinct open files conflict even within one process, and no version of ``filelock`` may quietly
make a second acquisition re-entrant or fall back to a lock that outlives its process.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("augbench")


@dataclass
class GpuSlot:
    index: int  # the GPU's index as torch sees it (0..G-1 in the visible list)
    gpu_id: str  # the physical id named in the lock file: the CUDA_VISIBLE_DEVICES entry, else str(index)
    slot: int
    _fd: int | None = field(default=None, repr=False, compare=False)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor of the open file drops the flock
            self._fd = None

    def __enter__(self) -> GpuSlot:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def visible_gpu_ids(device_count: int) -> list[str]:
    """Physical ids of the visible GPUs, so that sweeps with different CUDA_VISIBLE_DEVICES share slots."""
    ids = [s.strip() for s in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if s.strip()]
    return ids[:device_count] if ids else [str(i) for i in range(device_count)]


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path``, or None when another open file holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user's lock file, read-only to us: flock works on it all the same
        fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        os.close(fd)
        return None


def _check_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def acquire_gpu_slot(device_count: int, runs_per_gpu: int = 1, lock_dir=None, *, poll_s: float = 0.5,
                     timeout_s: float | None = None, log_wait: bool = True) -> GpuSlot:
    """Take a free slot on the least loaded GPU, waiting for one if all are taken.

    Raises TimeoutError when ``timeout_s`` passes first. Keep the returned slot (or the process)
    alive while the job trains; ``release()`` it, or exit, to free it."""
    _check_int("device_count", device_count)
    _check_int("runs_per_gpu", runs_per_gpu)
    lock_dir = Path(lock_dir) if lock_dir is not None else Path(tempfile.gettempdir()) / "augbench-gpu-slots"
    if not lock_dir.is_dir():
        lock_dir.mkdir(parents=True, exist_ok=True)
        try:
            os.chmod(lock_dir, 0o1777)  # shared by all users of the machine, like /tmp
        except OSError:
            pass  # someone else's folder
    ids = visible_gpu_ids(device_count)
    paths = {(g, k): lock_dir / f"gpu{re.sub(r'[^A-Za-z0-9_.-]', '_', gid)}.slot{k}.lock"
             for g, gid in enumerate(ids) for k in range(runs_per_gpu)}
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    waiting = False
    while True:
        # count each GPU's free slots (a probe holds a lock for microseconds), then try the emptiest first
        free = [0] * len(ids)
        for (g, _), path in paths.items():
            fd = _try_lock(path)
            if fd is not None:
                os.close(fd)
                free[g] += 1
        for g in sorted(range(len(ids)), key=lambda g: (-free[g], g)):
            for k in range(runs_per_gpu):
                fd = _try_lock(paths[g, k])
                if fd is not None:
                    if waiting and log_wait:
                        log.info("got GPU %s (slot %d) after waiting", ids[g], k)
                    return GpuSlot(g, ids[g], k, fd)
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise TimeoutError(f"no free GPU slot within {timeout_s} s: all {len(ids)} GPU(s) x {runs_per_gpu} "
                               f"run(s) per GPU are taken (slot locks in {lock_dir})")
        if log_wait and not waiting:
            log.info("waiting for a free GPU slot: all %d GPU(s) x %d run(s) per GPU are taken (slot locks in %s)",
                     len(ids), runs_per_gpu, lock_dir)
        waiting = True
        time.sleep(poll_s if left is None else min(poll_s, left))

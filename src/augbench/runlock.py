"""One process owns a run folder at a time, also across machines that share it over NFS.

flock does not reach across NFS clients reliably, so ownership is a file, ``run.lock``, that says who
holds it. On the owner's host a lock is live while that process exists (its /proc start time guards
against pid reuse); elsewhere it is live while its mtime, refreshed by a heartbeat thread, is recent.
A lock whose owner died is taken over, so a crash never needs a manual clean-up.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from augbench.errors import RunLockedError

log = logging.getLogger("augbench")

LOCK = "run.lock"
_ATTEMPTS = 5


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    started: str  # ISO-8601 UTC, when the lock was taken
    proc_start: str | None  # /proc/<pid>/stat field 22 of the owner, None when unavailable
    heartbeat: float  # the lock file's mtime

    def describe(self) -> str:
        try:
            since = datetime.fromisoformat(self.started).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        except (TypeError, ValueError):
            since = str(self.started)
        return f"pid {self.pid} on host {self.host}, since {since}"


def _proc_start(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot: with the pid it names one process for ever."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # the command name may hold spaces and ')'
        return None if fields[0] == "Z" else fields[19]  # fields[0] is field 3; a zombie has died
    except (OSError, IndexError):
        return None


def _read(path: Path) -> tuple[Owner | None, bytes, int] | None:
    """(owner or None if garbage, raw bytes, inode) of a lock file; None when there is none."""
    try:
        with open(path, "rb") as f:
            st, raw = os.fstat(f.fileno()), f.read(4096)
    except FileNotFoundError:
        return None
    except OSError:
        return None, b"", -1
    try:
        d = json.loads(raw)
        o = Owner(d["host"], d["pid"], d["started"], d.get("proc_start"), st.st_mtime)
        ok = type(o.pid) is int and isinstance(o.host, str) and isinstance(o.started, str) \
            and isinstance(o.proc_start, (str, type(None)))
    except (ValueError, KeyError, TypeError, AttributeError):
        o, ok = None, False
    return (o if ok else None), raw, st.st_ino


def read_owner(folder) -> Owner | None:
    """The owner named in ``folder``'s lock; None when there is no lock or it is unreadable (stale)."""
    found = _read(Path(folder) / LOCK)
    return found[0] if found else None


def is_live(owner: Owner, stale_after_s: float) -> bool:
    if owner.host != socket.gethostname():
        return time.time() - owner.heartbeat < stale_after_s
    if owner.pid <= 0:  # os.kill(0 or -n, 0) would probe process groups
        return False
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, run by another user
        pass
    now = _proc_start(owner.pid)
    if now is None and os.path.exists(f"/proc/{owner.pid}"):
        return False  # a zombie: dead but not yet reaped
    return owner.proc_start is None or now is None or now == owner.proc_start


def live_owner(folder, stale_after_s: float = 600) -> Owner | None:
    owner = read_owner(folder)
    return owner if owner is not None and is_live(owner, stale_after_s) else None


class RunLock:
    def __init__(self, folder, *, stale_after_s: float = 600, heartbeat_s: float = 30):
        self.folder, self.path = Path(folder), Path(folder) / LOCK
        self.stale_after_s, self.heartbeat_s = stale_after_s, heartbeat_s
        self._raw: bytes | None = None  # what we wrote, while we hold the lock
        self._ino, self._stop, self._thread = -1, threading.Event(), None

    def _create(self) -> bool:
        """Write our lock atomically; False if a lock is already there. Written to a temp file and
        hard-linked into place (atomic, also on NFS), so nobody ever sees an empty lock file."""
        host, pid = socket.gethostname(), os.getpid()
        raw = json.dumps({"host": host, "pid": pid, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          "proc_start": _proc_start(pid)}).encode()
        tmp = self.folder / f"{LOCK}.tmp.{host}.{pid}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
                f.flush()
                os.fsync(f.fileno())
            os.link(tmp, self.path)
        except FileExistsError:
            if os.stat(tmp).st_nlink != 2:  # 2: NFS made the link but lost the reply
                return False
        finally:
            tmp.unlink(missing_ok=True)
        self._raw, self._ino = raw, os.stat(self.path).st_ino
        return True

    def acquire(self) -> RunLock:
        if self._raw is not None:
            return self
        for _ in range(_ATTEMPTS):
            if self._create():
                self._stop = threading.Event()  # heartbeat: other hosts judge liveness by the mtime
                self._thread = threading.Thread(target=self._beat, args=(self._stop,), daemon=True,
                                                name=f"runlock:{self.folder}")
                self._thread.start()
                return self
            owner, raw, ino = _read(self.path) or (None, None, None)
            if raw is None:
                continue  # released meanwhile
            if owner is not None and is_live(owner, self.stale_after_s):
                raise RunLockedError(
                    f"{self.folder} is in use: being trained by {owner.describe()}. Wait for it to finish, "
                    "or stop that process; a lock whose owner died is taken over automatically", owner.describe())
            self._take_over(owner, raw, ino)
        raise RunLockedError(f"{self.folder}: could not take its lock in {_ATTEMPTS} attempts; others keep taking it")

    def _take_over(self, owner: Owner | None, raw: bytes, ino: int) -> None:
        """Remove a stale lock: renamed aside first, so that we delete only the file we judged stale."""
        aside = self.folder / f"{LOCK}.stale.{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # someone else removed it; retry
        found = _read(aside)
        if found is None or found[1:] != (raw, ino) or (found[0] and is_live(found[0], self.stale_after_s)):
            # a fresh lock took its place, or its owner came back to life, meanwhile: put it back
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
            aside.unlink(missing_ok=True)
            return  # the retry judges the restored lock
        aside.unlink(missing_ok=True)
        who = f"the run lock of {owner.describe()}, which is gone" if owner else "an unreadable run lock"
        log.warning("%s: taking over %s", self.folder, who)

    def _ours(self) -> bool:
        found = _read(self.path)
        return found is not None and self._raw is not None and found[1:] == (self._raw, self._ino)

    def _beat(self, stop: threading.Event) -> None:
        """Refresh the mtime so other hosts see the lock as live; stop if it was taken from us."""
        while not stop.wait(self.heartbeat_s):
            if not self._ours():
                log.warning("%s: the run lock was removed or taken over by another process; "
                            "no longer refreshing it", self.folder)
                return
            with contextlib.suppress(OSError):  # removed since the check: the next beat reports it
                os.utime(self.path)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None
        if self._raw is not None and self._ours():
            self.path.unlink(missing_ok=True)
        self._raw = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

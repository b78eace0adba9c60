"""The run lock: one live owner per run folder, dead owners taken over, other hosts judged by heartbeat."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from augbench.errors import RunLockedError
from augbench.runlock import LOCK, RunLock, is_live, live_owner, read_owner

HOLD = """
import sys
from augbench.runlock import RunLock
lock = RunLock(sys.argv[1]).acquire()
print("ready", flush=True)
sys.stdin.read()  # hold it until stdin closes or we are killed
"""


@pytest.fixture
def caplog_augbench(caplog):
    caplog.set_level(logging.WARNING, logger="augbench")
    return caplog


def write_lock(folder, host, pid, proc_start=None, mtime=None):
    path = folder / LOCK
    path.write_text(json.dumps({"host": host, "pid": pid, "started": "2026-01-02T03:04:05+00:00",
                                "proc_start": proc_start}))
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_one_owner_at_a_time(tmp_path):
    lock = RunLock(tmp_path).acquire()
    owner = read_owner(tmp_path)
    assert (owner.host, owner.pid) == (socket.gethostname(), os.getpid())
    assert owner.proc_start is not None and live_owner(tmp_path) == owner
    with pytest.raises(RunLockedError) as err:
        RunLock(tmp_path).acquire()  # a second lock object in this same process is refused too
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path) in msg and f"pid {os.getpid()}" in msg
    assert lock.acquire() is lock  # the holder itself may ask again
    lock.release()
    lock.release()  # idempotent
    assert not (tmp_path / LOCK).exists() and read_owner(tmp_path) is None
    with RunLock(tmp_path) as again:
        assert read_owner(tmp_path).pid == os.getpid()
        assert again._thread.is_alive()
    assert not (tmp_path / LOCK).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temp or stale files left behind


def test_owner_exited_without_releasing_is_taken_over(tmp_path, caplog_augbench):
    child = subprocess.run([sys.executable, "-c", "import os, sys; from augbench.runlock import RunLock; "
                            "RunLock(sys.argv[1]).acquire(); print(os.getpid()); os._exit(0)", str(tmp_path)],
                           capture_output=True, text=True, check=True)
    pid = int(child.stdout)
    assert read_owner(tmp_path).pid == pid and live_owner(tmp_path) is None
    with RunLock(tmp_path):
        assert read_owner(tmp_path).pid == os.getpid()
    warning = caplog_augbench.text
    assert str(tmp_path) in warning and f"pid {pid}" in warning and "taking over" in warning


def test_live_owner_blocks_until_killed(tmp_path, caplog_augbench):
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(RunLockedError, match=f"pid {child.pid} on host"):
            RunLock(tmp_path).acquire()
        assert "taking over" not in caplog_augbench.text
    finally:
        os.kill(child.pid, signal.SIGKILL)  # no cleanup: the lock file stays
        child.wait(timeout=10)
    assert read_owner(tmp_path).pid == child.pid
    with RunLock(tmp_path):
        assert read_owner(tmp_path).pid == os.getpid()
    assert f"pid {child.pid}" in caplog_augbench.text


def test_other_host_is_judged_by_heartbeat(tmp_path, caplog_augbench):
    stale = 60
    write_lock(tmp_path, "elsewhere.example", 4242, mtime=time.time())
    with pytest.raises(RunLockedError, match="pid 4242 on host elsewhere.example, since 2026-01-02 03:04:05 UTC"):
        RunLock(tmp_path, stale_after_s=stale).acquire()
    write_lock(tmp_path, "elsewhere.example", 4242, mtime=time.time() - 2 * stale)
    assert not is_live(read_owner(tmp_path), stale)
    with RunLock(tmp_path, stale_after_s=stale):
        assert read_owner(tmp_path).host == socket.gethostname()
    assert "elsewhere.example" in caplog_augbench.text


def test_reused_pid_is_not_the_owner(tmp_path, caplog_augbench):
    write_lock(tmp_path, socket.gethostname(), os.getppid(), proc_start="1")  # alive, but started at another time
    assert not is_live(read_owner(tmp_path), 600)
    with RunLock(tmp_path):
        assert read_owner(tmp_path).pid == os.getpid()
    assert f"pid {os.getppid()}" in caplog_augbench.text
    write_lock(tmp_path, socket.gethostname(), os.getppid(), proc_start=None)  # start time unknown: trust the pid
    with pytest.raises(RunLockedError):
        RunLock(tmp_path).acquire()


def test_heartbeat_advances_mtime_and_stops_on_release(tmp_path):
    lock = RunLock(tmp_path, heartbeat_s=0.1).acquire()
    path = tmp_path / LOCK
    os.utime(path, (1e9, 1e9))
    deadline = time.monotonic() + 5
    while os.stat(path).st_mtime == 1e9 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.stat(path).st_mtime > time.time() - 60
    thread = lock._thread
    lock.release()
    assert not thread.is_alive()


def test_heartbeat_stops_when_lock_taken_from_us(tmp_path, caplog_augbench):
    lock = RunLock(tmp_path, heartbeat_s=0.05).acquire()
    thread = lock._thread
    write_lock(tmp_path, "elsewhere.example", 4242, mtime=time.time())  # replaced behind our back
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert "taken over by another process" in caplog_augbench.text
    lock.release()
    assert read_owner(tmp_path).host == "elsewhere.example"  # not ours: left alone


def test_release_leaves_someone_elses_lock(tmp_path):
    lock = RunLock(tmp_path).acquire()
    (tmp_path / LOCK).unlink()
    other = write_lock(tmp_path, "elsewhere.example", 4242, mtime=time.time())
    lock.release()
    assert other.exists() and read_owner(tmp_path).pid == 4242


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"host": 3, "pid": "x"}', b"[1, 2]"])
def test_garbage_lock_is_stale(tmp_path, caplog_augbench, content):
    (tmp_path / LOCK).write_bytes(content)
    assert read_owner(tmp_path) is None and live_owner(tmp_path) is None
    with RunLock(tmp_path):
        assert read_owner(tmp_path).pid == os.getpid()
    assert "unreadable run lock" in caplog_augbench.text and str(tmp_path) in caplog_augbench.text


def test_folder_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError):
        RunLock(tmp_path / "missing").acquire()


def test_killed_but_unreaped_owner_is_dead(tmp_path, caplog_augbench):
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    os.kill(child.pid, signal.SIGKILL)
    try:
        deadline = time.monotonic() + 5  # a zombie until reaped: the pid still exists
        while live_owner(tmp_path) is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        with RunLock(tmp_path):
            assert read_owner(tmp_path).pid == os.getpid()
    finally:
        child.wait(timeout=10)


RACE = """
import os, sys, time
from augbench.errors import RunLockedError
from augbench.runlock import RunLock
print("ready", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.001)
try:
    lock = RunLock(sys.argv[1]).acquire()
    print("won", flush=True)
except RunLockedError:
    print("lost", flush=True)
sys.stdin.read()
"""


def test_racing_takeovers_leave_one_owner(tmp_path):
    folder, go = tmp_path / "run", tmp_path / "go"
    folder.mkdir()
    (folder / LOCK).write_text("left by a crash")
    children = [subprocess.Popen([sys.executable, "-c", RACE, str(folder), str(go)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True) for _ in range(8)]
    try:
        assert all(c.stdout.readline().strip() == "ready" for c in children)
        go.touch()
        results = sorted(c.stdout.readline().strip() for c in children)
    finally:
        for c in children:
            c.stdin.close()
            c.wait(timeout=10)
    assert results == ["lost"] * 7 + ["won"]
    assert [p.name for p in folder.iterdir()] == [LOCK]  # no stale or temp files left behind

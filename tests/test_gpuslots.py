"""GPU slots: each parallel job takes the least loaded free GPU, and a dead job's slot is free again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from augbench.gpuslots import acquire_gpu_slot, visible_gpu_ids

HOLD = """
import sys
from augbench.gpuslots import acquire_gpu_slot
slot = acquire_gpu_slot(2, 1, sys.argv[1], timeout_s=5)
print(slot.index, flush=True)
sys.stdin.read()  # hold it until stdin closes or we are killed
"""


@pytest.fixture(autouse=True)
def no_cvd(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_visible_gpu_ids(monkeypatch):
    assert visible_gpu_ids(3) == ["0", "1", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, 5,GPU-ab12")
    assert visible_gpu_ids(3) == ["3", "5", "GPU-ab12"]
    assert visible_gpu_ids(2) == ["3", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpu_ids(2) == ["0", "1"]


def test_lock_names_the_physical_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    with acquire_gpu_slot(2, lock_dir=tmp_path) as slot:
        assert (slot.index, slot.gpu_id, slot.slot) == (0, "3", 0)
        assert (tmp_path / "gpu3.slot0.lock").exists()
        with acquire_gpu_slot(2, lock_dir=tmp_path) as second:
            assert (second.index, second.gpu_id) == (1, "5")


def test_one_run_per_gpu(tmp_path):
    a = acquire_gpu_slot(2, 1, tmp_path)
    b = acquire_gpu_slot(2, 1, tmp_path)
    assert {a.index, b.index} == {0, 1} and a.slot == b.slot == 0
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="no free GPU slot"):
        acquire_gpu_slot(2, 1, tmp_path, poll_s=0.05, timeout_s=0.3)
    assert 0.25 < time.monotonic() - start < 2
    b.release()
    b.release()  # idempotent
    c = acquire_gpu_slot(2, 1, tmp_path, timeout_s=0)
    assert c.index == b.index
    a.release()
    c.release()


def test_several_runs_per_gpu(tmp_path):
    slots = [acquire_gpu_slot(1, 2, tmp_path, timeout_s=0) for _ in range(2)]
    assert [(s.index, s.slot) for s in slots] == [(0, 0), (0, 1)]
    with pytest.raises(TimeoutError):
        acquire_gpu_slot(1, 2, tmp_path, poll_s=0.05, timeout_s=0.2)
    for s in slots:
        s.release()


def test_load_spreads_over_gpus(tmp_path):
    slots = [acquire_gpu_slot(2, 2, tmp_path, timeout_s=0) for _ in range(4)]
    assert [(s.index, s.slot) for s in slots] == [(0, 0), (1, 0), (0, 1), (1, 1)]
    for i in (0, 1, 3):
        slots[i].release()
    # GPU 0 runs one job (in slot 1), GPU 1 none: the idle GPU wins although GPU 0's slot 0 is free
    nxt = [acquire_gpu_slot(2, 2, tmp_path, timeout_s=0) for _ in range(3)]
    assert [(s.index, s.slot) for s in nxt] == [(1, 0), (0, 0), (1, 1)]
    for s in nxt + slots:
        s.release()


def test_other_process_holds_a_slot_until_killed(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        theirs = int(child.stdout.readline())
        mine = acquire_gpu_slot(2, 1, tmp_path, timeout_s=0)
        assert mine.index == 1 - theirs
        with pytest.raises(TimeoutError):
            acquire_gpu_slot(2, 1, tmp_path, timeout_s=0)
    finally:
        os.kill(child.pid, signal.SIGKILL)  # no cleanup: the kernel drops its lock
        child.wait(timeout=10)
    with acquire_gpu_slot(2, 1, tmp_path, poll_s=0.05, timeout_s=2) as freed:
        assert freed.index == theirs
    mine.release()


def test_waiting_job_gets_the_slot_when_released(tmp_path, caplog):
    caplog.set_level("INFO", logger="augbench")
    held = acquire_gpu_slot(1, 1, tmp_path)
    timer = threading.Timer(0.3, held.release)
    timer.start()
    start = time.monotonic()
    with acquire_gpu_slot(1, 1, tmp_path, poll_s=0.05, timeout_s=5) as slot:
        waited = time.monotonic() - start
    timer.join()
    assert slot.index == 0 and 0.2 < waited < 2
    assert caplog.text.count("waiting for a free GPU slot") == 1


def test_default_lock_dir_is_per_machine(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with acquire_gpu_slot(1, timeout_s=0):
        assert (tmp_path / "augbench-gpu-slots" / "gpu0.slot0.lock").exists()


@pytest.mark.parametrize("runs_per_gpu", [0, -1, 1.5, True])
def test_invalid_runs_per_gpu(tmp_path, runs_per_gpu):
    with pytest.raises(ValueError, match=f"runs_per_gpu must be an integer >= 1, got {runs_per_gpu!r}"):
        acquire_gpu_slot(1, runs_per_gpu, tmp_path)


@pytest.mark.parametrize("device_count", [0, -2])
def test_no_gpu(tmp_path, device_count):
    with pytest.raises(ValueError, match=f"device_count must be an integer >= 1, got {device_count}"):
        acquire_gpu_slot(device_count, 1, tmp_path)

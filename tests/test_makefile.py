"""The Makefile's promises that no other test exercises."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_n(*args):
    r = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_tensorboard_serves_this_machine_only_unless_asked():
    line = make_n("tensorboard").strip().splitlines()[-1]
    assert "--host localhost" in line and "bind_all" not in line
    assert "--host 0.0.0.0" in make_n("tensorboard", "HOST=0.0.0.0").strip().splitlines()[-1]


def test_gpu_targets_exist():
    assert "pytest -m gpu" in make_n("test-gpu")
    assert "python -m augbench.gpucheck" in make_n("gpu-check")

"""The Makefile's promises that no other test exercises."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_n(*args):
    # --no-print-directory: under `make test` this runs as a sub-make, which would add Entering/Leaving lines
    r = subprocess.run(["make", "-n", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def serve_line(*args):
    return next(line for line in make_n("tensorboard", *args).splitlines() if "tensorboard --logdir" in line)


def test_tensorboard_serves_this_machine_only_unless_asked():
    line = serve_line()
    assert "--host localhost" in line and "bind_all" not in line
    assert "--host 0.0.0.0" in serve_line("HOST=0.0.0.0")


def test_gpu_targets_exist():
    assert "pytest -m gpu" in make_n("test-gpu")
    assert "python -m augbench.gpucheck" in make_n("gpu-check")

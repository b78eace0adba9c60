"""The cluster path on a real one-node SLURM (make test-slurm): sweeps submitted as job arrays, a time-limit
requeue and a preemption that end equal to an uninterrupted run, a cancelled job in the summary with its
SLURM state, and a relaunch that submits nothing.

The cluster is started by tests/slurm/cluster.sh (as root) and torn down afterwards, even when a test
fails. All runs use the CPU: the node has no GPU (gres is not tested here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CLUSTER = HERE / "cluster.sh"

# one CPU and a little memory per job: two jobs run side by side on a 2-core node
LAUNCH = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.gpus_per_node=0",
          "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2"]


def slurm(*args, check=True) -> str:
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


@pytest.fixture(scope="module")
def cluster():
    up = subprocess.run(["bash", str(CLUSTER), "up"], capture_output=True, text=True, timeout=900)
    try:
        if up.returncode != 0:
            pytest.fail(f"the SLURM cluster did not start: {(up.stderr or up.stdout).strip()}", pytrace=False)
        os.environ["SLURM_CONF"] = slurm("bash", str(CLUSTER), "env").split("SLURM_CONF=")[-1].strip()
        yield
    finally:
        subprocess.run(["bash", str(CLUSTER), "down"], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from augbench.fakedata import write_fake_cifar

    return write_fake_cifar(tmp_path_factory.mktemp("cifar"), n_train=2000, n_test=200, cifar100=False)


def run_args(data, sweep: Path, *extra: str) -> list[str]:
    return ["--multirun", *LAUNCH, "model=lenet", "aug=cutmix", f"data.root={data}", "data.verify=false",
            "data.download=false", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
            "data.batch_size=32", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
            f"hydra.sweep.dir={sweep}", *extra]


def start(args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def jobs(comment: str) -> list[dict]:
    """This test's jobs in the queue: id, state, reason."""
    out = slurm("squeue", "-h", "-o", "%i|%T|%r|%k")
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return [{"id": i, "state": s, "reason": r} for i, s, r, k in rows if k == comment]


def release_requeued(comment: str) -> None:
    """A requeued job waits about 120 s before it is eligible again; tests need not wait."""
    for job in jobs(comment):
        if job["state"] == "PENDING" and job["reason"] == "BeginTime":
            slurm("scontrol", "update", f"jobid={job['id']}", "StartTime=now", check=False)


def finish(proc: subprocess.Popen, comment: str, timeout: float = 420, each=None) -> str:
    deadline = time.time() + timeout
    while proc.poll() is None:
        assert time.time() < deadline, f"the {comment} sweep did not end in {timeout} s"
        release_requeued(comment)
        if each is not None:
            each()
        time.sleep(1)
    return proc.stdout.read()


def metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def weights(folder: Path) -> dict:
    return torch.load(folder / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


def run_folder(sweep: Path, seed: int = 0) -> Path:
    return sweep / f"cifar10/lenet/cutmix/seed={seed}"


def test_a_two_job_sweep_completes_and_its_relaunch_submits_nothing(cluster, data, tmp_path):
    args = run_args(data, tmp_path, "seed=0,1", "trainer.max_epochs=2", "trainer.limit_train_batches=4",
                    "hydra.launcher.timeout_min=10", "hydra.launcher.comment=two")
    out = finish(start(args), "two")
    assert "sweep finished: all 2 runs" in out, out[-3000:]
    assert all(metrics(run_folder(tmp_path, s))["status"] == "completed" for s in (0, 1))
    submitted = sorted((tmp_path / ".submitit").iterdir())
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "2 of 2 runs already completed, skipped; launching 0" in r.stdout, r.stdout[-2000:]
    assert sorted((tmp_path / ".submitit").iterdir()) == submitted  # nothing submitted


def test_time_limit_requeue_and_preemption_end_equal_to_an_uninterrupted_run(cluster, data, tmp_path):
    # over a minute of training on one CPU (150 epochs took 31 s with trainer.steps_per_batch 16): past
    # the 1-minute limit (SLURM signals 15 s before it, or up to 30 s earlier), so the timed run is
    # requeued at least once; the preempted one is requeued by hand
    epochs = ["seed=0", "trainer.max_epochs=350", "trainer.limit_train_batches=50"]
    ref, timed, preempted = tmp_path / "ref", tmp_path / "timed", tmp_path / "preempted"
    procs = {name: start(run_args(data, folder, *epochs, f"hydra.launcher.comment={name}",
                                  f"hydra.launcher.timeout_min={1 if name == 'timed' else 10}"))
             for name, folder in (("ref", ref), ("timed", timed), ("preempted", preempted))}
    requeued = []

    def tend():  # release requeued jobs at once; preempt once the run has a checkpoint to resume from
        release_requeued("timed")
        release_requeued("preempted")
        running = [j for j in jobs("preempted") if j["state"] == "RUNNING"]
        if not requeued and running and (run_folder(preempted) / "last.ckpt").exists():
            slurm("scontrol", "requeue", running[0]["id"])
            requeued.append(running[0]["id"])

    outputs = {name: finish(proc, name, timeout=600, each=tend) for name, proc in procs.items()}
    assert requeued, "the preempted run finished before it could be requeued"
    # signalled a tenth of its 1-minute limit before it, at least 15 s (not Hydra's fixed 120 s)
    [script] = (timed / ".submitit").glob("*/*_submission.sh")
    assert "#SBATCH --signal=USR2@15\n" in script.read_text()

    reference = metrics(run_folder(ref))
    assert reference["status"] == "completed" and reference["attempts"] == 1, outputs["ref"][-3000:]
    for name, folder in (("timed", timed), ("preempted", preempted)):
        m = metrics(run_folder(folder))
        assert m["status"] == "completed", outputs[name][-3000:]
        assert m["attempts"] >= 2, m["attempt_log"]  # it really was stopped and resumed
        assert [a["ended"] for a in m["attempt_log"][:-1]] == ["requeued"] * (m["attempts"] - 1)  # not a Ctrl-C
        assert m["wall_seconds"] == pytest.approx(sum(m["attempt_seconds"]), abs=0.05)
        assert m["wall_seconds"] > m["attempt_seconds"][-1]  # every attempt counted, not the last one only
        assert m["history"] == reference["history"] and m["test_acc1"] == reference["test_acc1"]
        a, b = weights(run_folder(folder)), weights(run_folder(ref))
        assert all(torch.equal(a[k], b[k]) for k in b)


def test_a_cancelled_job_is_in_the_summary_with_its_slurm_state(cluster, data, tmp_path):
    args = run_args(data, tmp_path, "seed=0,1", "trainer.max_epochs=40", "trainer.limit_train_batches=20",
                    "hydra.launcher.timeout_min=10", "hydra.launcher.comment=cancel")
    cancelled = []

    def cancel_seed_1():
        running = {j["id"] for j in jobs("cancel") if j["state"] == "RUNNING"}
        target = next((i for i in running if i.endswith("_1")), None)
        if not cancelled and target and (run_folder(tmp_path, 1) / "last.ckpt").exists():
            slurm("scancel", target)
            cancelled.append(target)

    proc = start(args)
    out = finish(proc, "cancel", each=cancel_seed_1)
    assert cancelled, out[-3000:]
    assert proc.returncode == 1 and "Traceback" not in out, out[-3000:]
    assert "1 of 2 runs" in out and "cifar10/lenet/cutmix/seed=1: failed (SLURM: CANCELLED)" in out, out[-3000:]
    lost = metrics(run_folder(tmp_path, 1))
    assert lost["status"] == "failed" and lost["slurm_state"] == "CANCELLED" and lost["slurm_job_id"] == cancelled[0]
    assert metrics(run_folder(tmp_path, 0))["status"] == "completed"  # the other run is kept and reported


def test_a_request_the_cluster_cannot_satisfy_is_refused_in_one_line(cluster, data, tmp_path):
    args = run_args(data, tmp_path, "seed=0", "hydra.launcher.gpus_per_node=1")  # the node has no GPU (gres)
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stdout + r.stderr
    assert "augbench: SLURM refused the jobs (" in r.stderr and "gres" in r.stderr, r.stderr[-2000:]
    assert not list(tmp_path.rglob("metrics.json"))

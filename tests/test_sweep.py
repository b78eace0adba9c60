"""Sweeps through the real Hydra CLI: fixed folders, resume by relaunch, failures that don't stop the grid."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CONF, TINY

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, timeout=600):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)  # Hydra logs to stdout


def tiny(root):
    return [*TINY, f"data.root={root}"]


def mtimes(sweep):
    return {p.parent.relative_to(sweep).as_posix(): p.stat().st_mtime_ns for p in sweep.rglob("metrics.json")}


def test_tiny_grid_folders_relaunch_and_failures(tmp_path, fake_cifar):
    sweep = tmp_path / "grid"
    args = ["--multirun", "model=lenet,resnet18", "aug=baseline,cutmix", "seed=0,1", *tiny(fake_cifar),
            f"hydra.sweep.dir={sweep}"]
    r = cli(*args)
    assert r.returncode == 0, r.stdout[-3000:]
    jobs = [f"cifar10/{m}/{a}/seed={s}" for m in ("lenet", "resnet18") for a in ("baseline", "cutmix") for s in (0, 1)]
    first = mtimes(sweep)
    assert sorted(first) == sorted(jobs)
    for job in jobs:  # each job its own folder, metrics and TensorBoard log
        assert json.loads((sweep / job / "metrics.json").read_text())["status"] == "completed"
        assert list((sweep / job / "tb").glob("events.out.tfevents.*"))

    # relaunch: nothing is launched, nothing rewritten (not even the jobs' .hydra/ folders)
    hydra_files = {p: p.stat().st_mtime_ns for p in sweep.glob("**/.hydra/*.yaml")}
    r = cli(*args)
    assert r.returncode == 0, r.stdout[-3000:]
    assert "8 of 8 runs already completed, skipped; launching 0" in r.stdout
    assert "; skipping" not in r.stdout  # no job started to find its own result (train logs that)
    assert "sweep finished: all 8 runs" in r.stdout
    assert mtimes(sweep) == first
    assert {p: p.stat().st_mtime_ns for p in sweep.glob("**/.hydra/*.yaml")} == hydra_files

    # one metrics.json deleted: exactly that run is redone
    redo = "cifar10/lenet/cutmix/seed=1"
    (sweep / redo / "metrics.json").unlink()
    r = cli(*args)
    assert r.returncode == 0 and "7 of 8 runs already completed, skipped; launching 1" in r.stdout
    after = mtimes(sweep)
    assert [j for j in jobs if after[j] != first.get(j)] == [redo]

    # the same folders with another config: refused before anything runs, results untouched
    r = cli(*args, "optim.lr=0.05")
    assert r.returncode == 1 and "holds a completed run with a different config" in r.stdout
    assert mtimes(sweep) == after

    # one run fails (its checkpoint belongs to another model): the others stay, the sweep lists it, exit != 0
    broken = "cifar10/resnet18/baseline/seed=0"
    (sweep / broken / "metrics.json").unlink()
    shutil.copy(sweep / "cifar10/lenet/baseline/seed=0/last.ckpt", sweep / broken / "last.ckpt")
    r = cli(*args)
    assert r.returncode != 0
    assert "1 of 8 runs" in r.stdout and broken in r.stdout
    failed = json.loads((sweep / broken / "metrics.json").read_text())
    assert failed["status"] == "failed" and "state_dict" in failed["error"]
    assert sum(json.loads((sweep / j / "metrics.json").read_text())["status"] == "completed" for j in jobs) == 7


def test_joblib_launcher_runs_jobs_in_parallel_folders(tmp_path, fake_cifar):
    sweep = tmp_path / "par"
    r = cli("--multirun", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "model=lenet", "seed=0,1",
            *tiny(fake_cifar), f"hydra.sweep.dir={sweep}")
    assert r.returncode == 0, r.stdout[-3000:]
    assert sorted(mtimes(sweep)) == ["cifar10/lenet/baseline_plus/seed=0", "cifar10/lenet/baseline_plus/seed=1"]


def test_submitit_launcher_config(tmp_path, fake_cifar):
    sweep = tmp_path / "sub"
    r = cli("--multirun", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5", "model=lenet",
            "seed=3", *tiny(fake_cifar), f"hydra.sweep.dir={sweep}")
    assert r.returncode == 0, r.stdout[-3000:]
    assert json.loads((sweep / "cifar10/lenet/baseline_plus/seed=3/metrics.json").read_text())["status"] == "completed"


def test_a_bad_value_anywhere_in_a_sweep_stops_it_before_the_first_job(tmp_path, fake_cifar):
    r = cli("--multirun", "model=lenet", "aug=cutmix", "aug.prob=0.5,1.5", *tiny(fake_cifar),
            f"hydra.sweep.dir={tmp_path}")
    assert r.returncode == 1 and "aug.prob=1.5 is invalid: must be a number in [0, 1]" in r.stdout
    assert "Traceback" not in r.stdout
    assert not list(tmp_path.rglob("metrics.json"))  # the valid job (prob 0.5) did not start either


def test_seed_range_syntax_fails_at_once_with_the_working_syntax(tmp_path, fake_cifar):
    r = cli("--multirun", "seed=0-4", *tiny(fake_cifar), f"hydra.sweep.dir={tmp_path}")
    assert r.returncode != 0 and "seed=range(5)" in r.stdout
    assert not list(tmp_path.rglob("metrics.json"))


def test_grid_and_prob_sweep_experiments_define_the_study(tmp_path):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        grid = compose("train", overrides=["experiment=grid"], return_hydra_config=True)
        prob = compose("train", overrides=["experiment=cutmix_prob_sweep"], return_hydra_config=True)
    params = grid.hydra.sweeper.params
    assert params.data.split(",") == ["cifar10", "cifar100"]
    assert params.model.split(",") == ["resnet18", "lenet", "densenet", "vgg"]
    assert params.aug.split(",") == ["baseline", "baseline_plus", "cutout", "mixup", "cutmix"]
    assert params.seed == "range(5)" and grid.experiment_name == "grid"
    assert grid.trainer.max_epochs == 200 and grid.optim.milestones == [60, 120, 160]
    probs = [float(p) for p in prob.hydra.sweeper.params["aug.prob"].split(",")]
    assert probs == pytest.approx([i / 10 for i in range(11)])
    assert prob.model.name == "resnet18" and prob.aug.name == "cutmix" and prob.trainer.max_epochs == 10
    assert prob.hydra.sweep.subdir == "cifar10/resnet18/cutmix/prob=1.0/seed=0"  # one folder per prob


def test_slurm_launcher_config_requeues_on_timeout():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.gpus_per_node == 1 and launcher.tasks_per_node == 1  # one GPU per job, never DDP
    assert launcher.max_num_timeout > 0 and launcher.partition == "gpu"


def test_jobs_are_spread_over_gpus_by_job_number(monkeypatch):
    from augbench import sweep

    monkeypatch.setattr("torch.cuda.device_count", lambda: 4)
    assert [sweep._gpu_for_job(j) for j in range(6)] == [0, 1, 2, 3, 0, 1]
    monkeypatch.setattr("torch.cuda.device_count", lambda: 1)
    assert sweep._gpu_for_job(5) is None  # one GPU (or none): leave the choice to Lightning


def test_missing_dataset_stops_the_sweep_at_once(tmp_path):
    r = cli("--multirun", "model=lenet", "seed=0,1,2", *TINY, f"data.root={tmp_path / 'none'}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert r.returncode != 0 and "cifar10 is missing" in r.stdout
    assert r.stdout.count("cifar10 is missing") == 1  # the first job stopped it; nobody else tried

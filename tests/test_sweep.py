"""Sweeps through the real Hydra CLI: fixed folders, resume by relaunch, failures that don't stop the grid."""

import json
import time
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict

from conftest import CONF, TINY, make_cfg

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


def test_seed_range_a_dash_b_sweeps_those_seeds(tmp_path, fake_cifar):
    r = cli("--multirun", "seed=0-2", "model=lenet", *tiny(fake_cifar), f"hydra.sweep.dir={tmp_path}")
    assert r.returncode == 0, r.stdout[-3000:]
    assert sorted(mtimes(tmp_path)) == [f"cifar10/lenet/baseline_plus/seed={s}" for s in range(3)]


@pytest.mark.parametrize("arg,message", [
    ("seed=4-0", "augbench: seed=4-0 is an empty range: write A-B with A <= B, e.g. seed=0-4"),
    ("seed=a-b", "seed='a-b' is invalid: must be an integer >= 0"),
    ("aug.prob=0-1", "aug.prob='0-1' is invalid: must be a number in [0, 1]"),  # not an integer key
])
def test_malformed_ranges_fail_in_one_line(tmp_path, fake_cifar, arg, message):
    r = cli("--multirun", arg, "model=lenet", "aug=cutmix", *tiny(fake_cifar), f"hydra.sweep.dir={tmp_path}")
    assert r.returncode == 1 and message in r.stdout, r.stdout[-2000:]
    assert "Traceback" not in r.stdout
    assert not list(tmp_path.rglob("metrics.json"))


def test_expand_ranges_only_touches_integer_keys():
    from augbench.sweep import expand_ranges

    ints = {"seed", "trainer.max_epochs"}
    assert expand_ranges(["seed=0-4", "model=lenet", "trainer.max_epochs=1-3", "aug.prob=0-1", "seed=range(5)",
                          "data.root=/data/2020-2021"], ints.__contains__) == [
        "seed=range(0,5)", "model=lenet", "trainer.max_epochs=range(1,4)", "aug.prob=0-1", "seed=range(5)",
        "data.root=/data/2020-2021"]


def test_job_composer_gives_hydras_own_configs(tmp_path):
    """Composing each group combination once and applying the value overrides on top must give every job
    exactly the config (and folder) that Hydra composes for it from scratch."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from augbench.sweep import JobComposer

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("train", ["experiment=grid", f"hydra.sweep.dir={tmp_path}"],
                                           run_mode=RunMode.MULTIRUN)
        composer = JobComposer(loader, master)
        jobs = [["experiment=grid", f"data={d}", f"model={m}", f"aug={a}", f"seed={s}", "optim.lr=0.05",
                 "trainer.max_epochs=3"] for d, m, a, s in [("cifar10", "lenet", "cutmix", 0),
                                                            ("cifar10", "lenet", "cutmix", 4),
                                                            ("cifar100", "vgg", "cutout", 2),
                                                            ("cifar100", "vgg", "baseline", 2)]]
        jobs.append(["aug=cutmix", "aug.prob=0.5", "seed=1"])
        for overrides in jobs:
            fast, folder = composer.compose(overrides)
            full = loader.load_sweep_config(master_config=master, sweep_overrides=overrides)
            assert folder == Path(full.hydra.sweep.dir) / full.hydra.sweep.subdir
            with open_dict(full):
                del full["hydra"]
                full.output_dir = str(folder)
            assert OmegaConf.to_container(fast, resolve=True) == OmegaConf.to_container(full, resolve=True)
        assert len(composer.cache) == 4  # cifar10/lenet/cutmix composed once for seeds 0 and 4


def test_a_run_locked_by_a_live_process_is_left_to_it(tmp_path, fake_cifar):
    from augbench.runlock import RunLock

    sweep = tmp_path / "sweep"
    args = ["--multirun", "model=lenet", "seed=0,1", *tiny(fake_cifar), f"hydra.sweep.dir={sweep}"]
    taken = sweep / "cifar10/lenet/baseline_plus/seed=1"
    taken.mkdir(parents=True)
    with RunLock(taken):  # this test process stands for another machine's job, alive and training
        r = cli(*args)
    assert r.returncode == 0, r.stdout[-3000:]
    assert "0 of 2 runs already completed, 1 being trained by another process, skipped; launching 1" in r.stdout
    assert "1 runs were left to another process" in r.stdout and "seed=1" in r.stdout
    assert sorted(mtimes(sweep)) == ["cifar10/lenet/baseline_plus/seed=0"]  # seed=1's folder untouched
    r = cli(*args)  # the lock is gone (that process ended without finishing): this sweep trains it
    assert r.returncode == 0 and "launching 1" in r.stdout and "sweep finished: all 2 runs" in r.stdout


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


def test_missing_dataset_stops_the_sweep_at_once(tmp_path):
    r = cli("--multirun", "model=lenet", "seed=0,1,2", *TINY, f"data.root={tmp_path / 'none'}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert r.returncode != 0 and "cifar10 is missing" in r.stdout
    assert r.stdout.count("cifar10 is missing") == 1  # the first job stopped it; nobody else tried


def _start(*args):
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_the_same_run_launched_twice_trains_once(tmp_path, fake_cifar):
    out = tmp_path / "run"
    args = [*tiny(fake_cifar), "model=lenet", "trainer.max_epochs=40", f"hydra.run.dir={out}"]
    first = _start(*args)
    deadline = time.time() + 120
    while not (out / "run.lock").exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert (out / "run.lock").exists(), "the first run never started training"
    t = time.time()
    second = cli(*args, timeout=60)
    assert second.returncode == 1 and time.time() - t < 30
    last = [line for line in second.stdout.splitlines() if line.strip()][-1]
    assert last.startswith(f"augbench: {out} is in use: being trained by pid {first.pid} on host ")
    first_out, _ = first.communicate(timeout=600)
    assert first.returncode == 0, first_out[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs"] == 40  # untouched by the second launch
    assert not (out / "run.lock").exists()


def test_the_same_sweep_started_twice_at_once_divides_the_runs(tmp_path, fake_cifar):
    sweep = tmp_path / "grid"
    args = ["--multirun", "model=lenet", "seed=0,1,2,3", *tiny(fake_cifar), "trainer.max_epochs=15",
            f"hydra.sweep.dir={sweep}"]
    procs = [_start(*args), _start(*args)]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    runs = [f"cifar10/lenet/baseline_plus/seed={s}" for s in range(4)]
    trained = [{r for r in runs if f"{sweep / r}: training (process" in out} for out in outputs]
    assert trained[0] | trained[1] == set(runs) and not trained[0] & trained[1]  # each run trained exactly once
    for mine, out, theirs in ((trained[0], outputs[0], trained[1]), (trained[1], outputs[1], trained[0])):
        for run in theirs:  # every run this process did not train it left to the other, and says so
            assert f"{run}:" in out.split("left to another process")[-1] or f"{sweep / run} already completed" in out
    for run in runs:
        assert json.loads((sweep / run / "metrics.json").read_text())["status"] == "completed"


def test_family_and_cutmix_alpha_experiments():
    from hydra import compose, initialize_config_dir

    from augbench.gallery import AUG_CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        family = compose("train", overrides=["experiment=family"], return_hydra_config=True)
        alpha = compose("train", overrides=["experiment=cutmix_alpha", "aug.alpha=0.25", "seed=2"],
                        return_hydra_config=True)
    augs = family.hydra.sweeper.params.aug.split(",")
    # every regime, old and new; CutMix's ablations and mixup's large alphas have experiments of their own
    variants = {p.stem for p in [*AUG_CONF.glob("cutmix_*.yaml"), *AUG_CONF.glob("mixup_alpha*.yaml")]}
    assert set(augs) == {p.stem for p in AUG_CONF.glob("*.yaml")} - variants
    assert family.model.name == "resnet18" and family.hydra.sweeper.params.data == "cifar10,cifar100"
    assert [float(a) for a in alpha.hydra.sweeper.params["aug.alpha"].split(",")] == [0.1, 0.25, 0.5, 1, 2, 4]
    assert alpha.hydra.sweep.subdir == "cifar100/resnet18/cutmix/alpha=0.25/seed=2"  # one folder per alpha
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        layer = compose("train", overrides=["experiment=cutmix_layer", "aug.layer=3", "seed=1"], return_hydra_config=True)
    assert layer.hydra.sweeper.params["aug.layer"] == "0,1,2,3,4" and layer.model.name == "resnet18"
    assert layer.hydra.sweep.subdir == "cifar100/resnet18/cutmix/layer=3/seed=1"


def test_a_job_failing_before_its_run_starts_is_recorded_and_summarised(tmp_path, monkeypatch, capsys):
    from augbench import sweep, training

    def broken(cfg, gpu=None):
        raise TypeError("Trainer.__init__() got an unexpected keyword argument")

    monkeypatch.setattr(training, "train", broken)
    monkeypatch.setattr(sweep, "_multirun", lambda: True)
    cfg = make_cfg(tmp_path / "sweep" / "seed=0", TINY)
    assert sweep.run_job(cfg) is None  # the sweep goes on
    m = json.loads((tmp_path / "sweep" / "seed=0" / "metrics.json").read_text())
    assert m["status"] == "failed" and "unexpected keyword" in m["error"] and m["config"]["seed"] == 0
    with pytest.raises(SystemExit):
        sweep.SweepSummary().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}}))
    assert "1 of 1 runs" in capsys.readouterr().err

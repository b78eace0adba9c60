"""SLURM behaviour that can be shown without a cluster: the time-limit signal's delay, a requeue told apart
from a Ctrl-C, and a job lost at the SLURM level recorded and summarised instead of ending the sweep.
The same behaviour on a real one-node SLURM: tests/slurm/ (make test-slurm)."""

import json
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.utils import JobStatus
from hydra.types import RunMode
from omegaconf import OmegaConf
from submitit.core.utils import UncompletedJobError

from augbench import module, slurm, sweep
from augbench.training import train
from conftest import CONF, TINY, make_cfg, stop_training_at
from hydra_plugins.augbench_plugins.slurm_launcher import _Settled


def test_signal_delay_follows_the_time_limit():
    assert slurm.signal_delay(240) == 120  # long jobs: Hydra's default
    assert slurm.signal_delay(10) == 60
    assert slurm.signal_delay(2) == 15  # not signalled at once: a floor
    assert slurm.signal_delay(1) == 15


def test_a_time_limit_requeue_is_recorded_as_requeued_not_interrupted(tmp_path, fake_cifar, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setattr(slurm, "_requeue_requested", False)

    def submitit_requeue(signum, frame):  # what submitit does: requeue the job, then exit
        raise SystemExit(-1)

    previous = signal.signal(slurm.REQUEUE_SIGNAL, submitit_requeue)
    try:
        slurm.watch_requeue_signal()
        step = module.Classifier.training_step

        def signalled(self, batch, i):
            if self.current_epoch == 1:
                os.kill(os.getpid(), slurm.REQUEUE_SIGNAL)  # SLURM: the time limit is near
            return step(self, batch, i)

        monkeypatch.setattr(module.Classifier, "training_step", signalled)
        cfg = make_cfg(tmp_path, TINY + ["model=lenet", "trainer.max_epochs=2"], fake_cifar)
        with pytest.raises(SystemExit):
            train(cfg)
    finally:
        signal.signal(slurm.REQUEUE_SIGNAL, previous)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "requeued" and metrics["attempt_log"][-1]["ended"] == "requeued"


def test_a_preemption_sigterm_under_slurm_is_requeued(tmp_path, fake_cifar, monkeypatch):
    class SIGTERMException(SystemExit):  # what Lightning raises on SIGTERM (scontrol requeue, preemption)
        pass

    monkeypatch.setenv("SLURM_JOB_ID", "78")
    monkeypatch.setattr(slurm, "_requeue_requested", False)
    stop_training_at(monkeypatch, 1, SIGTERMException())
    with pytest.raises(SystemExit):
        train(make_cfg(tmp_path, TINY + ["model=lenet", "trainer.max_epochs=2"], fake_cifar))
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "requeued"


def test_a_time_limit_with_no_requeue_left_is_a_failure_with_slurm_state_timeout(tmp_path, fake_cifar, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "79")
    monkeypatch.setattr(slurm, "_requeue_requested", True)
    stop_training_at(monkeypatch, 1, UncompletedJobError("Job not requeued because: timed-out too many times."))
    with pytest.raises(UncompletedJobError):
        train(make_cfg(tmp_path, TINY + ["model=lenet", "trainer.max_epochs=2"], fake_cifar))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["slurm_state"] == "TIMEOUT"
    assert "timed-out too many times" in metrics["error"]


def test_ctrl_c_is_still_interrupted(tmp_path, fake_cifar, monkeypatch):
    monkeypatch.setattr(slurm, "_requeue_requested", False)
    stop_training_at(monkeypatch, 1, KeyboardInterrupt())
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        train(make_cfg(tmp_path, TINY + ["model=lenet", "trainer.max_epochs=2"], fake_cifar))
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "interrupted"


class CancelledJob:
    job_id = "12_1"
    paths = SimpleNamespace(stderr=Path("/sweep/.submitit/12_1/12_1_0_log.err"))

    def results(self):
        raise UncompletedJobError("Job 12_1 (task: 0) with path ... has not produced any output (state: CANCELLED by 0)")

    def get_info(self, mode="force"):
        return {"State": "CANCELLED by 0"}


def test_a_job_lost_by_slurm_is_recorded_and_summarised_not_raised(tmp_path, capsys):
    sweep_dir = tmp_path / "sweep"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("train", [f"hydra.sweep.dir={sweep_dir}"], run_mode=RunMode.MULTIRUN)
        launcher = SimpleNamespace(hydra_context=SimpleNamespace(config_loader=loader), config=master)
        done = sweep_dir / "cifar10/lenet/baseline_plus/seed=0"
        done.mkdir(parents=True)
        (done / "metrics.json").write_text(json.dumps({"status": "completed", "test_acc1": 0.5}))
        [ret] = _Settled(CancelledJob(), ["model=lenet", "seed=1"], launcher).results()
    assert ret.status == JobStatus.COMPLETED and ret.return_value["slurm_state"] == "CANCELLED"
    lost = json.loads((sweep_dir / "cifar10/lenet/baseline_plus/seed=1/metrics.json").read_text())
    assert lost["status"] == "failed" and lost["slurm_state"] == "CANCELLED" and lost["slurm_job_id"] == "12_1"
    assert "12_1_0_log.err" in lost["error"] and lost["config"]["seed"] == 1
    with pytest.raises(SystemExit) as e:
        sweep.SweepSummary().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}}}))
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "1 of 2 runs" in err and "cifar10/lenet/baseline_plus/seed=1: failed (SLURM: CANCELLED)" in err


def test_a_completed_run_whose_result_file_was_lost_stands(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"status": "completed", "test_acc1": 0.5}))
    assert slurm.record_lost_job(tmp_path, {}, "3", "NODE_FAIL", None)["status"] == "completed"
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "completed"

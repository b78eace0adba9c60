"""Crash safety: exact resume after SIGKILL, atomic files, NaN losses, unwritable outputs, one download."""

import errno
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from augbench import data as data_mod
from augbench import checkpoints, module, runs
from augbench.module import NonFiniteLossError
from augbench.training import train
from conftest import TINY, make_cfg, write_fake_cifar

DRIVER = Path(__file__).parent / "kill_driver.py"


def drive(out, root, kill=None, *overrides):
    args = [sys.executable, str(DRIVER), str(out), str(root), kill or "none", *overrides]
    return subprocess.run(args, capture_output=True, text=True, timeout=600)


def final_state(out):
    ckpt = torch.load(out / "last.ckpt", map_location="cpu", weights_only=False)
    metrics = json.loads((out / "metrics.json").read_text())
    return ckpt, metrics


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, fake_cifar):
    out = tmp_path_factory.mktemp("reference")
    r = drive(out, fake_cifar)
    assert r.returncode == 0, r.stderr[-3000:]
    return final_state(out)


@pytest.mark.parametrize("kill, every", [("epoch", 1), ("checkpoint", 1), ("test", 1), ("last_epoch", 2),
                                         ("epoch", 2)])
def test_killed_run_resumes_to_bit_identical_result(tmp_path, fake_cifar, uninterrupted, kill, every):
    """Checkpoints every epoch or every 2nd (then the killed run redoes up to one epoch): the reference
    saved every epoch, so the result does not depend on the cadence either."""
    cadence = f"trainer.checkpoint_every_n_epochs={every}"
    r = drive(tmp_path, fake_cifar, kill, cadence)
    assert r.returncode == -9, r.stderr[-3000:]  # really killed
    status = json.loads((tmp_path / "metrics.json").read_text())["status"]
    assert status == "running"  # a killed run never claims to be finished
    if kill == "checkpoint":  # the torn file is a temp file; the previous checkpoint is intact
        assert list(tmp_path.glob(".last.ckpt.*.tmp")) and (tmp_path / "last.prev.ckpt").exists()
        assert not (tmp_path / "last.ckpt").exists()
    if every == 2 and kill == "last_epoch":  # killed in epoch 3 of 3: only epoch 2's checkpoint is there
        assert torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=False)["epoch"] == 1
        assert not (tmp_path / "last.prev.ckpt").exists()
    if every == 2 and kill == "epoch":  # killed in epoch 2 of 3: no checkpoint yet, the rerun starts afresh
        assert not (tmp_path / "last.ckpt").exists()
    r = drive(tmp_path, fake_cifar, None, cadence)  # the same command again
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt, metrics = final_state(tmp_path)
    ref_ckpt, ref_metrics = uninterrupted
    assert ckpt["global_step"] == ref_ckpt["global_step"] == 12
    for k, v in ref_ckpt["state_dict"].items():
        assert torch.equal(ckpt["state_dict"][k], v), k
    for a, b in zip(ckpt["optimizer_states"][0]["state"].values(), ref_ckpt["optimizer_states"][0]["state"].values()):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    for key in ("status", "test_acc1", "test_acc5", "test_loss", "val_acc1", "epochs", "history"):
        assert metrics[key] == ref_metrics[key], key
    # the run's time is that of both attempts, the killed one counted up to its last epoch end
    # (killed before its first checkpoint, a run starts afresh: one attempt, the one that counts)
    attempts = 1 if (kill, every) == ("epoch", 2) else 2
    assert ref_metrics["attempts"] == 1 and metrics["attempts"] == attempts
    assert all(t > 0 for t in metrics["attempt_seconds"]) and len(metrics["attempt_seconds"]) == attempts
    assert metrics["wall_seconds"] == pytest.approx(sum(metrics["attempt_seconds"]), abs=0.02)
    assert [a.get("ended") for a in metrics["attempt_log"]] == [None, "completed"][-attempts:]  # the first was killed
    assert not list(tmp_path.glob(".*.tmp"))  # no torn temp file left behind


def test_damaged_last_checkpoint_falls_back_to_previous(tmp_path, caplog):
    good = {"x": torch.arange(10)}
    io = checkpoints.AtomicCheckpointIO()
    io.save_checkpoint(good, tmp_path / "last.ckpt")
    io.save_checkpoint({"x": torch.arange(20)}, tmp_path / "last.ckpt")
    assert torch.load(tmp_path / "last.prev.ckpt")["x"].tolist() == list(range(10))
    raw = (tmp_path / "last.ckpt").read_bytes()
    (tmp_path / "last.ckpt").write_bytes(raw[: len(raw) // 2])  # cut off mid-write
    assert runs.resume_checkpoint(tmp_path) == str(tmp_path / "last.prev.ckpt")
    assert "damaged" in caplog.text
    (tmp_path / "last.prev.ckpt").write_bytes(b"garbage")
    assert runs.resume_checkpoint(tmp_path) is None  # nothing intact: start fresh


def test_nan_loss_stops_at_once_and_keeps_the_last_good_checkpoint(tmp_path, fake_cifar, monkeypatch):
    loss = module.Classifier.training_loss  # once per optimiser step; i: the step in the epoch

    def poisoned(self, batch, i):
        if (self.current_epoch, i) == (1, 1):
            batch["image"] = batch["image"] * float("nan")
        return loss(self, batch, i)

    monkeypatch.setattr(module.Classifier, "training_loss", poisoned)
    cfg = make_cfg(tmp_path, TINY + ["model=lenet", "trainer.max_epochs=3", "trainer.limit_train_batches=3",
                                     "optim.check_finite_every_n_steps=1"], fake_cifar)
    with pytest.raises(NonFiniteLossError, match="NaN/inf at epoch 1, step 1"):
        train(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "epoch 1, step 1" in metrics["error"]
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 3  # end of epoch 0, the last good one
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def test_nan_found_at_epoch_end_when_not_checked_every_step(tmp_path, fake_cifar, monkeypatch):
    loss = module.Classifier.training_loss

    def poisoned(self, batch, i):
        if i == 1:
            batch["image"] = batch["image"] * float("inf")
        return loss(self, batch, i)

    monkeypatch.setattr(module.Classifier, "training_loss", poisoned)
    cfg = make_cfg(tmp_path, TINY + ["model=lenet", "trainer.limit_train_batches=3",
                                     "optim.check_finite_every_n_steps=0"], fake_cifar)
    with pytest.raises(NonFiniteLossError, match="epoch 0, step 1"):
        train(cfg)
    assert not (tmp_path / "last.ckpt").exists()  # the poisoned epoch was never saved


def test_disk_full_leaves_no_half_written_metrics(tmp_path, monkeypatch):
    runs.write_metrics(tmp_path, {"status": "completed", "test_acc1": 0.9})
    before = (tmp_path / "metrics.json").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runs.os, "fsync", full)
    with pytest.raises(OSError, match="disk is not full"):
        runs.write_metrics(tmp_path, {"status": "completed", "test_acc1": 0.1})
    assert (tmp_path / "metrics.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_unwritable_output_folder_is_a_clear_error(tmp_path, fake_cifar):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match=r"cannot create the output folder .*file/run.*writable"):
        train(make_cfg(blocker / "run", TINY + ["model=lenet"], fake_cifar))


def test_corrupt_dataset_fails_before_training_and_claims_nothing(tmp_path):
    root = write_fake_cifar(tmp_path / "data")
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x04garbage")
    with pytest.raises(data_mod.DatasetError, match="corrupt"):
        train(make_cfg(tmp_path / "run", TINY, root))
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_concurrent_jobs_download_once(tmp_path, monkeypatch):
    calls = []

    def slow_download(spec, root):
        calls.append(threading.get_ident())
        time.sleep(0.5)  # long enough for the other job to arrive while the first downloads
        write_fake_cifar(root)

    monkeypatch.setattr(data_mod, "_download_cifar", slow_download)
    spec, root, errors = data_mod.SPECS["cifar10"], tmp_path / "empty", []

    def job():
        try:
            data_mod.prepare(spec, root, download=True)
            data_mod.load(spec, root, verify=False)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(calls) == 1


def test_ctrl_c_leaves_a_resumable_checkpoint(tmp_path, fake_cifar, monkeypatch):
    loss = module.Classifier.training_loss

    def interrupt(self, batch, i):
        if (self.current_epoch, i) == (1, 1):
            raise KeyboardInterrupt
        return loss(self, batch, i)

    monkeypatch.setattr(module.Classifier, "training_loss", interrupt)
    cfg = make_cfg(tmp_path, TINY + ["model=lenet", "trainer.max_epochs=2", "trainer.limit_train_batches=3"],
                   fake_cifar)
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        train(cfg)
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "interrupted"
    monkeypatch.setattr(module.Classifier, "training_loss", loss)
    assert runs.resume_checkpoint(tmp_path) == str(tmp_path / "last.ckpt")
    assert train(cfg)["status"] == "completed"

"""The evaluation suite inside a run and on finished runs, corrupted labels, warmup and collapsed runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from augbench.runs import collapse_reason, same_config
from tests.conftest import TINY, make_cfg

# a cheap standard suite: every measure of the default, on the fake test set
SMALL_SUITE = ["eval=standard", "eval.in_between_pairs=16", "eval.ood_noise_images=32", "eval.batch_size=32"]


def _tiny(tmp_path, fake_cifar, extra=(), name="run"):
    return make_cfg(tmp_path / name, [o for o in TINY if o != "eval=accuracy"] + list(extra), root=fake_cifar)


def _train(cfg) -> dict:
    from augbench.training import train

    return train(cfg)


# --- corrupted labels --------------------------------------------------------------------------


def test_corrupt_labels_draws_exactly_the_rate_seeded_and_reports_the_effective_rate():
    from augbench.data import corrupt_labels

    y = torch.arange(10).repeat(1000)  # 10,000 labels, 10 classes
    idx = torch.arange(len(y)) * 3  # indices into a training file
    a = corrupt_labels(y, 0.5, 10, seed=0, file_index=idx)
    b = corrupt_labels(y, 0.5, 10, seed=0, file_index=idx)
    c = corrupt_labels(y, 0.5, 10, seed=1, file_index=idx)
    assert a["n_drawn"] == 5000 and torch.equal(a["targets"], b["targets"]) and not torch.equal(a["targets"], c["targets"])
    assert torch.equal(a["true"], y)  # the true labels are kept apart
    untouched = torch.ones(len(y), dtype=torch.bool)
    untouched[a["drawn"]] = False
    assert torch.equal(a["targets"][untouched], y[untouched])  # only drawn images change
    # a replacement is any of the K classes, so about 1 in 10 drawn labels stays right
    assert a["n_corrupted"] == int((a["targets"] != y).sum()) and 4300 < a["n_corrupted"] < 4700
    assert a["effective_rate"] == pytest.approx(a["n_corrupted"] / len(y))
    assert torch.equal(a["drawn_file_index"], idx[a["drawn"]])


def test_label_noise_touches_training_labels_only_and_is_saved_with_the_run(tmp_path, fake_cifar):
    from hydra.utils import instantiate

    clean = instantiate(_tiny(tmp_path, fake_cifar).data)
    noisy = instantiate(_tiny(tmp_path, fake_cifar, ["data.label_noise=0.8"]).data)
    clean.load(), noisy.load()
    for split in ("val", "test"):
        assert torch.equal(clean.host[split][1], noisy.host[split][1])
    assert not torch.equal(clean.host["train"][1], noisy.host["train"][1])
    assert torch.equal(clean.host["train"][1], noisy.noise["true"])

    m = _train(_tiny(tmp_path, fake_cifar, ["data.label_noise=0.8", "data.test_every_epoch=true", "model=lenet",
                                            "eval=accuracy"], name="noisy"))
    saved = json.loads((tmp_path / "noisy" / m["label_noise"]["indices_file"]).read_text())
    assert saved["drawn_file_index"] == noisy.noise["drawn_file_index"].tolist()
    assert saved["label"] == noisy.noise["targets"][noisy.noise["drawn"]].tolist()
    assert m["label_noise"]["rate"] == 0.8 and m["label_noise"]["n_drawn"] == len(saved["label"])
    h = m["history"]
    for key in ("train_clean_acc1", "train_noisy_acc1", "train_noisy_true_acc1", "test_acc1"):
        assert len(h[key]) == 1 and 0 <= h[key][0] <= 1, key
    assert m["best_test_acc1"] == max(h["test_acc1"])


# --- warmup and collapsed runs ----------------------------------------------------------------


def test_warmup_is_linear_per_step_then_the_study_decay():
    from augbench.module import warmup_factor

    f = warmup_factor(2, 10, [5, 8], 0.1)
    assert [f(s) for s in (0, 9, 19)] == pytest.approx([1 / 20, 10 / 20, 1.0])
    assert [f(s) for s in (20, 49, 50, 79, 80)] == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])


def test_warmup_run_starts_below_the_base_rate(tmp_path, fake_cifar):
    m = _train(_tiny(tmp_path, fake_cifar, ["optim.warmup_epochs=1", "eval=accuracy", "trainer.max_epochs=2"]))
    lrs = m["history"]["train_lr"]  # logged at each epoch end: after the warmup epoch it is the base rate
    assert lrs == pytest.approx([0.1, 0.1])
    m0 = _train(_tiny(tmp_path, fake_cifar, ["optim.warmup_epochs=0", "eval=accuracy", "trainer.max_epochs=2"], "b"))
    assert m0["test_acc1"] != m["test_acc1"] or m0["history"]["train_loss"] != m["history"]["train_loss"]


def test_collapse_reason():
    k = 10
    assert collapse_reason(0.4, 0.9, k) is None
    assert "ln K" in collapse_reason(math.log(k) * 1.03, 0.5, k)
    assert "chance" in collapse_reason(0.5, 0.115, k)
    assert collapse_reason(math.log(k) * 1.1, 0.125, k) is None  # 10% off ln K and 2.5 points off chance
    assert collapse_reason(None, None, k) is None


def test_a_collapsed_run_is_flagged_in_its_metrics(tmp_path, fake_cifar):
    # fake CIFAR's labels are noise: a model that learns nothing sits at chance
    m = _train(_tiny(tmp_path, fake_cifar, ["eval=accuracy", "optim.lr=1e-9", "model=lenet"]))
    assert m["collapsed"] is True and "ln K" in m["collapse_reason"]


# --- the suite inside a run --------------------------------------------------------------------


def test_standard_suite_runs_after_training_and_goes_to_metrics_figures_and_tensorboard(tmp_path, fake_cifar):
    m = _train(_tiny(tmp_path, fake_cifar, SMALL_SUITE + ["model=lenet"]))
    e = m["eval"]
    assert e["suite"] == "standard" and e["seconds"] > 0 and "eval_error" not in m
    assert set(e["calibration"]) == {"nll", "ece", "mce", "overconfidence"}
    assert list(e["fgsm"]) == ["1/255", "2/255", "4/255", "8/255"]
    assert list(e["occlusion_center"]) == [str(s) for s in range(0, 33, 4)]
    assert e["occlusion_center"]["0"] == e["occlusion_boundary"]["32"]  # both are the clean test set
    assert {"uniform", "gaussian", "cifar100"} <= set(e["ood"])  # the other CIFAR is on disk beside this one
    assert set(e["in_between"]) >= {"mixup", "cutmix"}
    for rel in e["figures"].values():
        assert (tmp_path / "run" / rel).read_bytes()[:4] == b"\x89PNG"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "run" / "tb"))
    acc.Reload()
    assert "eval/calibration/ece" in acc.Tags()["scalars"] and "eval/fgsm/8/255" in acc.Tags()["scalars"]


def test_full_suite_adds_corruptions_and_says_they_are_procedural(tmp_path, fake_cifar):
    m = _train(_tiny(tmp_path, fake_cifar, SMALL_SUITE[1:] + ["eval=full", "model=lenet",
                                                               "eval.corruptions=[gaussian_noise,contrast]"]))
    e = m["eval"]
    assert e["suite"] == "full" and set(e["corruption"]) == {"gaussian_noise", "contrast"}
    assert list(e["corruption"]["contrast"]) == ["1", "2", "3", "4", "5"]
    assert e["corruption_source"].startswith("procedural") and "not the published" in e["corruption_source"]
    assert e["corruption_mean_acc"] == pytest.approx(
        sum(sum(v.values()) for v in e["corruption"].values()) / 10)
    assert (tmp_path / "run" / e["figures"]["corruption"]).is_file()


def test_a_failing_suite_keeps_the_trained_run(tmp_path, fake_cifar, monkeypatch):
    from augbench.evaluation import suite

    def broken(self, args, res, figure, dm, title):
        raise RuntimeError("boom")

    monkeypatch.setattr(suite.EvalSuite, "_fgsm", broken)
    m = _train(_tiny(tmp_path, fake_cifar, SMALL_SUITE + ["model=lenet"]))
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["status"] == "completed" and "boom" in saved["eval_error"] and "eval" not in saved
    assert m["test_acc1"] == saved["test_acc1"]


def test_the_suite_is_not_part_of_a_runs_identity():
    a = {"seed": 0, "eval": {"name": "standard", "measures": ["fgsm"]}}
    b = {"seed": 0, "eval": {"name": "full", "measures": ["fgsm", "corruption"]}}
    assert same_config(a, b) and not same_config(a, {"seed": 1, "eval": a["eval"]})


# --- python -m augbench.evaluate ---------------------------------------------------------------


def test_evaluate_finished_runs_from_their_checkpoints_resumably(tmp_path, fake_cifar, capsys):
    from augbench.evaluate import main

    grid = tmp_path / "grid"
    for seed in (0, 1):
        _train(make_cfg(grid / f"seed={seed}", TINY + ["model=lenet", f"seed={seed}"], root=fake_cifar))
    before = json.loads((grid / "seed=0" / "metrics.json").read_text())
    assert before["eval"] == {"suite": "accuracy", "seconds": 0.0}  # trained with eval=accuracy

    args = [str(grid), *SMALL_SUITE, "--device", "cpu"]
    assert main(args) == 0
    assert "2 runs to evaluate" in capsys.readouterr().out
    after = json.loads((grid / "seed=0" / "metrics.json").read_text())
    assert after["eval"]["suite"] == "standard" and after["config"]["eval"]["in_between_pairs"] == 16
    assert {k: v for k, v in after.items() if k not in ("eval", "config")} == \
        {k: v for k, v in before.items() if k not in ("eval", "config")}  # nothing else changes

    assert main(args) == 0  # the same suite again: nothing to do
    assert "0 runs to evaluate, 2 skipped" in capsys.readouterr().out
    assert main([str(grid / "seed=1"), *SMALL_SUITE, "eval.in_between_pairs=8", "--device", "cpu"]) == 0
    assert "1 runs to evaluate" in capsys.readouterr().out  # another suite: evaluated again


def test_evaluate_says_what_is_wrong(tmp_path, fake_cifar, capsys):
    from augbench.evaluate import main

    assert main([str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([str(tmp_path), "eval.fgsm_eps=[-1]"]) == 2
    assert "eval.fgsm_eps=[-1] is invalid" in capsys.readouterr().err
    assert main([str(tmp_path), "model=vgg"]) == 2
    assert "only eval=" in capsys.readouterr().err

    run = tmp_path / "run"
    _train(make_cfg(run, TINY + ["model=lenet"], root=fake_cifar))
    (run / "last.ckpt").unlink()
    (run / "last.prev.ckpt").unlink(missing_ok=True)
    assert main([str(run), *SMALL_SUITE, "--device", "cpu"]) == 1
    assert "last.ckpt is missing" in capsys.readouterr().err
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"  # untouched


@pytest.mark.parametrize("override, message", [
    ("eval.measures=[fgsm,entropy]", "eval.measures"),
    ("eval.occlusion_sizes=[0,40]", "eval.occlusion_sizes"),
    ("data.label_noise=1.5", "data.label_noise"),
    ("optim.warmup_epochs=500", "optim.warmup_epochs"),
    ("eval=nonsense", "eval"),
])
def test_bad_eval_noise_and_warmup_values_fail_in_one_line(tmp_path, override, message):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "train.py", override, f"hydra.run.dir={tmp_path}"], capture_output=True,
                       text=True, cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr

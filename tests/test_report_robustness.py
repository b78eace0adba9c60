"""augbench.report: the robustness section, label-noise section, and the whole report on a fake
grid carrying the evaluation suite's results."""

import csv
import json
import math

import numpy as np
import pytest
from matplotlib.image import imread

from augbench import report as R
from augbench.report.curves import plot_curves
from augbench.report.label_noise import summarise_label_noise
from augbench.report.robustness import summarise_robustness
from test_report import PNG_MAGIC, write_run
from test_report_significance import patch_metrics, row_of

OCC = [0, 4, 8, 12, 16, 20, 24, 28, 32]


def fake_eval(acc, ece, nll, shift=0.0, suite="full", bins=True):
    """An eval block in the evaluation suite's schema; every accuracy moves with `shift`."""
    e = {"suite": suite, "seconds": 3.0,
         "calibration": {"nll": nll, "ece": ece, "mce": 2 * ece, "overconfidence": ece / 2},
         "fgsm": {f"{k}/255": max(0.0, acc - 0.05 * k + shift) for k in (1, 2, 4, 8)},
         "occlusion_center": {str(s): acc - 0.01 * s + shift for s in OCC},
         "occlusion_boundary": {str(s): 0.1 + (acc - 0.1) * s / 32 + shift for s in OCC},
         "in_between": {"mixup": {f"{lam / 10:.1f}": {"a": lam / 10, "b": 1 - lam / 10, "either": 0.9 + shift,
                                                       "neither": 0.1 - shift} for lam in range(11)},
                        "cutmix": {str(s): {"a": 0.5, "b": 0.4, "either": 0.9 - s / 100, "neither": 0.1 + s / 100}
                                   for s in OCC}, "pairs": 500},
         "ood": {"uniform": {"auroc": 0.9 + shift, "tnr_at_tpr95": 0.5, "detection_acc": 0.8},
                 "gaussian": {"auroc": 0.8 + shift, "tnr_at_tpr95": 0.4, "detection_acc": 0.7}},
         "corruption": {name: {str(k): acc - 0.04 * k + shift for k in range(1, 6)}
                        for name in ("gaussian_noise", "contrast")},
         "corruption_mean_acc": acc - 0.12 + shift,
         "corruption_source": "procedural (augbench.evaluation.corruptions; not the published CIFAR-10-C)",
         "figures": {"reliability": "figures/reliability.png"}}
    if bins:  # 15 bins and the exactly-1.0 one; empty bins hold 0.0, as the suite writes them
        conf = [(i + 0.5) / 15 for i in range(15)] + [1.0]
        count = [0] * 5 + [100] * 10 + [7]
        e["calibration_bins"] = {
            "lower": [i / 15 for i in range(16)], "upper": [i / 15 for i in range(1, 16)] + [1.0], "count": count,
            "accuracy": [max(0.0, c - ece) if n else 0.0 for c, n in zip(conf, count)],
            "confidence": [c if n else 0.0 for c, n in zip(conf, count)]}
    return e


# ECE per seed (fractions) by regime: mixup lower on every seed (significant), cutmix higher
ECE = {"baseline_plus": [0.050, 0.052, 0.049], "mixup": [0.020, 0.021, 0.019], "cutmix": [0.060, 0.064, 0.061]}
ACC = {"baseline_plus": [0.900, 0.905, 0.898], "mixup": [0.902, 0.900, 0.904], "cutmix": [0.910, 0.913, 0.909]}


@pytest.fixture
def eval_grid(tmp_path):
    root = tmp_path / "grid"
    for aug in ECE:
        for s in range(3):
            d = write_run(root, "fashion_mnist", "lenet", aug, s, ACC[aug][s])
            patch_metrics(d, eval=fake_eval(ACC[aug][s], ECE[aug][s], 0.3 + ECE[aug][s], 0.01 * s))
    # a collapsed run with an eval block: left out of the robustness means too
    d = write_run(root, "fashion_mnist", "lenet", "mixup", 3, 0.10,
                  history={"epoch": [0, 1], "train_loss": [2.30, 2.30], "test_acc1": [0.1, 0.1]})
    patch_metrics(d, eval=fake_eval(0.10, 0.0, 2.3))
    # label noise 50%: ERM memorises, mixup α=1 and α=8 resist; test every epoch
    for aug, alpha, last in (("baseline_plus", None, [0.60, 0.62]), ("mixup", 1.0, [0.80, 0.81]),
                             ("mixup", 8.0, [0.84, 0.83])):
        for s in range(2):
            d = write_run(root, "fashion_mnist", "lenet", aug, s, last[s], sub=f"noise/{aug}{alpha}",
                          history={"epoch": [0, 1, 2], "test_acc1": [0.7, 0.85 + 0.01 * s, last[s]],
                                   "train_clean_acc1": [0.6, 0.8, 0.9],
                                   "train_noisy_acc1": [0.1, 0.3, 0.9 - 0.3 * (alpha or 0) / 8]})
            m = json.loads((d / "metrics.json").read_text())
            m["config"]["data"] = {"name": "fashion_mnist", "label_noise": 0.5}
            m["config"]["aug"]["alpha"] = alpha
            m["label_noise"] = {"rate": 0.5, "effective_rate": 0.45, "n_corrupted": 24000, "n_train": 48000,
                                "indices_file": "noisy_indices.npy"}
            (d / "metrics.json").write_text(json.dumps(m))
    return root


def test_robustness_values_are_means_over_seeds(eval_grid):
    rb = summarise_robustness(R.collect_runs(eval_grid))
    row = ("fashion_mnist", "lenet")
    assert rb["rows"] == [row] and rb["augs"] == ["baseline_plus", "mixup", "cutmix"]
    keys = [m.key for m in rb["metrics"]]
    assert keys == ["ece", "nll", "fgsm_1", "fgsm_8", "occlusion_center_16", "occlusion_boundary_16",
                    "corruption_mean", "ood_auroc_gaussian", "ood_auroc_uniform"]
    ece = rb["cells"]["ece"][(*row, "mixup")]
    assert ece["n"] == 3 and ece["left_out"] == 1 and ece["mean"] == pytest.approx(100 * np.mean(ECE["mixup"]))
    assert ece["ci"] == pytest.approx(R.t_value(3) * np.std(100 * np.array(ECE["mixup"]), ddof=1) / math.sqrt(3))
    fg = rb["cells"]["fgsm_8"][(*row, "cutmix")]
    assert fg["mean"] == pytest.approx(100 * np.mean([a - 0.4 + 0.01 * s for s, a in enumerate(ACC["cutmix"])]))
    occ = rb["cells"]["occlusion_center_16"][(*row, "baseline_plus")]
    expected = [a - 0.16 + 0.01 * s for s, a in enumerate(ACC["baseline_plus"])]
    assert occ["mean"] == pytest.approx(100 * np.mean(expected))
    assert rb["cells"]["nll"][(*row, "mixup")]["mean"] == pytest.approx(0.3 + np.mean(ECE["mixup"]))
    assert rb["cells"]["ood_auroc_uniform"][(*row, "cutmix")]["mean"] == pytest.approx(91.0)
    assert rb["suites"] == {"full": 10} and len(rb["sources"]) == 1


def test_robustness_marks_know_lower_ece_is_better(eval_grid):
    rb = summarise_robustness(R.collect_runs(eval_grid))
    row = ("fashion_mnist", "lenet")
    assert rb["cells"]["ece"][(*row, "mixup")]["mark"] == "better"  # lower ECE
    assert rb["cells"]["ece"][(*row, "cutmix")]["mark"] == "worse"  # higher ECE
    comps = {(c["metric"], c["aug"]): c for c in rb["comparisons"]}
    assert comps["ece", "mixup"]["diff"] < 0 and comps["ece", "mixup"]["significant"]
    # accuracy-like metrics: higher is better; the shifts are the same per seed, so no test there
    assert comps["fgsm_8", "cutmix"]["diff"] > 0


def test_label_noise_errors_from_history(eval_grid):
    ln = summarise_label_noise(R.collect_runs(eval_grid))
    (key,) = ln["groups"]
    assert key == ("fashion_mnist", "lenet", 0.5)
    g = ln["groups"][key]
    assert g["regimes"] == ["baseline_plus", "mixup α=1", "mixup α=8"] and g["erm"] == "baseline_plus"
    erm = g["cells"]["baseline_plus"]
    assert erm["best"]["mean"] == pytest.approx(100 * (1 - np.mean([0.85, 0.86])))  # max over epochs
    assert erm["last"]["mean"] == pytest.approx(100 * (1 - np.mean([0.60, 0.62])))
    assert g["cells"]["mixup α=8"]["best"]["mean"] == pytest.approx(100 * (1 - np.mean([0.85, 0.86])))
    assert g["cells"]["mixup α=8"]["last"]["values"] == {0: pytest.approx(16.0), 1: pytest.approx(17.0)}
    assert erm["noisy_fit"]["mean"] == pytest.approx(90.0) and g["effective"] == [0.45] * 6


def test_bands_in_curves_are_clipped(tmp_path):
    # two runs near 100%: the t-band (n=2, t = 12.7) would reach far above 100
    series = {"cutmix": [(np.array([0, 1, 2]), np.array([90.0, 97.0, 99.5])),
                         (np.array([0, 1, 2]), np.array([80.0, 92.0, 93.0]))]}
    fig = plot_curves(tmp_path / "c.png", "cifar10", "lenet", "test_acc1", series)
    ys = np.concatenate([p.vertices[:, 1] for c in fig.axes[0].collections for p in c.get_paths()])
    assert ys.size and ys.min() >= 0.0 and ys.max() <= 100.0 and ys.max() == pytest.approx(100.0)
    assert fig.axes[0].get_legend() is not None and fig.axes[0].get_ylabel() == "test top-1 accuracy (%)"


def test_report_end_to_end_on_an_evaluated_grid(eval_grid):
    written = R.write_report(eval_grid)
    tag = "fashion_mnist_lenet"
    expected = {"table1.md", "table1.csv", "table1.tex", "significance.csv", "report.md", f"curves_{tag}.png",
                "robustness.md", "robustness.csv", "label_noise.csv", f"label_noise_{tag}_0.5.png",
                *(f"robust_{k}_{tag}.png" for k in ("occlusion", "fgsm", "corruption", "inbetween", "reliability"))}
    assert set(written) == expected
    for name, path in written.items():
        assert path.exists() and path.stat().st_size
        if name.endswith(".png"):
            assert path.read_bytes()[:8] == PNG_MAGIC and imread(path).ndim == 3
    rep = (eval_grid / "report.md").read_text()
    for name in expected - {"report.md", "table1.md"}:
        assert f"({name})" in rep, name
    # collapsed run flagged and counted where it matters
    assert "## Collapsed runs" in rep and "recomputed" in rep and "1 completed run collapsed" in rep
    assert "(n=3, 1 collapsed run left out)" in row_of((eval_grid / "table1.md").read_text(), "fashion_mnist",
                                                       "lenet")["mixup"]
    # no study row for Fashion-MNIST: no Δ columns; Table 1 holds clean runs only
    assert "Δ" not in (eval_grid / "table1.md").read_text() and "Delta" not in (eval_grid / "table1.tex").read_text()
    assert row_of((eval_grid / "table1.md").read_text(), "fashion_mnist", "lenet")["baseline_plus"].endswith("(n=3)")
    # robustness: ECE table with mixup marked better, the corruption source stated
    rob = (eval_grid / "robustness.md").read_text()
    assert "**ECE (%, 15 bins)**, lower is better." in rob and "▲" in rob
    assert "procedural (augbench.evaluation.corruptions" in rob and "not the published CIFAR-10-C files" in rob
    rows = list(csv.DictReader((eval_grid / "robustness.csv").open()))
    ece = next(r for r in rows if r["metric"] == "ece" and r["aug"] == "mixup")
    assert float(ece["mean"]) == pytest.approx(100 * np.mean(ECE["mixup"]), abs=1e-4)
    assert ece["vs_baseline_plus"] == "better" and ece["higher_is_better"] == "0"
    # run-level figures linked relative to the report
    assert "[png](grid/fashion_mnist/lenet/mixup/seed=0/figures/reliability.png)" in rep
    # label noise: table, the paper's numbers labelled as such
    assert "## Label noise" in rep and "50% label noise, effective rate 45.0%" in rep
    assert "the mixup paper's Table 2** at 50% noise (PreAct ResNet-18, CIFAR-10, 200 epochs" in rep
    assert "ERM 18.8 / 44.6; mixup α=32 11.3 / 12.7" in rep
    assert "| baseline_plus (ERM) | 14.50 ± " in rep
    lrows = {r["regime"]: r for r in csv.DictReader((eval_grid / "label_noise.csv").open())}
    assert float(lrows["mixup α=1"]["last_error_mean"]) == pytest.approx(19.5)
    sig = {(r["metric"], r["aug"]) for r in csv.DictReader((eval_grid / "significance.csv").open())}
    assert ("test_acc1", "mixup") in sig and ("ece", "mixup") in sig and ("last_test_error", "mixup α=8") in sig


def test_no_eval_no_robustness_section(tmp_path):
    for s in range(2):
        write_run(tmp_path, "cifar10", "lenet", "baseline_plus", s, 0.6 + s / 100)
    written = R.write_report(tmp_path)
    assert not {"robustness.md", "robustness.csv", "label_noise.csv"} & set(written)
    rep = written["report.md"].read_text()
    assert "## Robustness" not in rep and "## Label noise" not in rep and "## Collapsed runs" not in rep
    # an accuracy-only suite has no section to show either
    patch_metrics(tmp_path / "grid/cifar10/lenet/baseline_plus/seed=0", eval={"suite": "accuracy", "seconds": 1.0})
    assert summarise_robustness(R.collect_runs(tmp_path)) is not None  # the suite ran, nothing to tabulate
    assert "robust_fgsm_cifar10_lenet.png" not in R.write_report(tmp_path)


def test_reliability_pools_bins_by_count():
    from augbench.report.robustness_figures import mean_reliability

    def run(acc, count):
        return {"eval": {"calibration_bins": {"confidence": [0.25, 0.75, 0.0], "accuracy": acc, "count": count}}}

    conf, acc = mean_reliability([run([0.2, 0.6, 0.0], [10, 30, 0]), run([0.4, 0.9, 0.0], [30, 10, 0])])
    assert conf.tolist() == pytest.approx([25.0, 75.0])  # the empty third bin is dropped
    assert acc.tolist() == pytest.approx([(10 * 20 + 30 * 40) / 40, (30 * 60 + 10 * 90) / 40])


def test_warmup_runs_are_named(tmp_path):
    for s, w in ((0, 0), (1, 5)):
        d = write_run(tmp_path, "cifar10", "lenet", "baseline_plus", s, 0.6)
        m = json.loads((d / "metrics.json").read_text())
        m["config"]["optim"] = {"warmup_epochs": w}
        (d / "metrics.json").write_text(json.dumps(m))
    rep = R.write_report(tmp_path)["report.md"].read_text()
    assert ("Table 1 pools runs with different linear learning-rate warmup "
            "(optim.warmup_epochs: 0 in 1 run, 5 in 1 run)") in rep

"""Tests for augbench.report on hand-made run folders with known numbers."""

import csv
import json
import math
import statistics

import numpy as np
import pytest
from matplotlib.image import imread

from augbench import report as R

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
T4 = 2.776445  # t(0.975, 4), from tables
S5 = statistics.stdev([90, 91, 92, 93, 94])  # sqrt(2.5)


def write_run(root, data, model, aug, seed, acc=None, status="completed", experiment="grid",
              prob=None, history="default", error=None, sub=None):
    d = root / (sub or f"grid/{data}/{model}/{aug}") / f"seed={seed}"
    d.mkdir(parents=True, exist_ok=True)
    m = {"status": status, "experiment": experiment, "data": data, "model": model, "aug": aug,
         "seed": seed, "config": {"aug": {"name": aug, "prob": prob if prob is not None else 1.0}}}
    if acc is not None:
        m["test_acc1"] = acc
    if error:
        m["error"] = error
    if history == "default" and acc is not None:
        history = {"epoch": [0, 1, 2], "test_acc1": [acc - 0.2, acc - 0.1, acc],
                   "val_acc1": [acc - 0.3, acc - 0.2, acc - 0.1]}
    if isinstance(history, dict):
        m["history"] = history
    (d / "metrics.json").write_text(json.dumps(m))
    return d


@pytest.fixture
def grid(tmp_path):
    root = tmp_path / "multirun"
    for s, a in enumerate([0.90, 0.91, 0.92, 0.93, 0.94]):
        write_run(root, "cifar10", "resnet18", "baseline_plus", s, a)
    for s, a in enumerate([0.95, 0.96, 0.97, 0.98, 0.99]):
        write_run(root, "cifar10", "resnet18", "cutmix", s, a)
    write_run(root, "cifar10", "resnet18", "mixup", 0, 0.93)
    write_run(root, "cifar10", "resnet18", "baseline", 0, status="failed",
              error="CUDA out of memory\nTraceback (most recent call last): ...")
    write_run(root, "cifar10", "resnet18", "baseline", 1, 0.80)
    write_run(root, "cifar10", "resnet18", "baseline", 2, 0.82)
    write_run(root, "cifar10", "resnet18", "baseline", 3, status="running")
    write_run(root, "cifar100", "lenet", "baseline_plus", 0, 0.40)
    write_run(root, "cifar100", "lenet", "baseline_plus", 1, 0.42)
    write_run(root, "cifar100", "lenet", "cutout", 0, 0.38)
    return root


def md_row(text, data, model):
    line = next(l for l in text.splitlines() if l.startswith(f"| {data} | {model} |"))
    return [c.strip() for c in line.strip("|").split("|")]


# ----------------------------------------------------------------------------- statistics


def test_mean_ci_t_matches_hand_computation():
    assert R.t_value(5) == pytest.approx(2.7764, abs=1e-4)
    assert R.t_value(5) == pytest.approx(T4, abs=1e-6)
    mean, hw, n = R.mean_ci([90, 91, 92, 93, 94])
    assert (mean, n) == (pytest.approx(92.0), 5)
    assert hw == pytest.approx(T4 * S5 / math.sqrt(5), rel=1e-6)
    assert hw == pytest.approx(1.9632, abs=1e-4)


def test_mean_ci_normal_is_the_studys_196_s():
    mean, hw, n = R.mean_ci([90, 91, 92, 93, 94], ci="normal")
    assert hw == pytest.approx(1.96 * S5) and mean == pytest.approx(92.0) and n == 5


def test_mean_ci_small_and_bad_input():
    m, hw, n = R.mean_ci([91.0])
    assert m == 91.0 and math.isnan(hw) and n == 1
    m, hw, n = R.mean_ci([])
    assert math.isnan(m) and math.isnan(hw) and n == 0
    with pytest.raises(ValueError):
        R.mean_ci([1, 2], ci="bootstrap")


# ----------------------------------------------------------------------------- summary


def test_summarise_cells(grid):
    runs = R.collect_runs(grid)
    assert len(runs) == 18
    s = R.summarise(runs)
    assert s["rows"] == [("cifar10", "resnet18"), ("cifar100", "lenet")]
    assert s["augs"] == list(R.AUGS)
    c = s["cells"]
    bp = c["cifar10", "resnet18", "baseline_plus"]
    assert bp["mean"] == pytest.approx(92.0) and bp["n"] == 5 and bp["seeds"] == [0, 1, 2, 3, 4]
    assert bp["ci"] == pytest.approx(T4 * S5 / math.sqrt(5), rel=1e-6)
    # failed and running baseline runs are excluded
    base = c["cifar10", "resnet18", "baseline"]
    assert base["n"] == 2 and base["mean"] == pytest.approx(81.0) and base["seeds"] == [1, 2]
    assert base["ci"] == pytest.approx(12.7062 * math.sqrt(2) / math.sqrt(2), abs=1e-3)
    assert c["cifar10", "resnet18", "mixup"]["n"] == 1 and c["cifar10", "resnet18", "mixup"]["ci"] is None
    cut = c["cifar10", "resnet18", "cutout"]
    assert cut["n"] == 0 and cut["mean"] is None and cut["delta"] is None
    # best per row
    assert [a for a in R.AUGS if c["cifar10", "resnet18", a]["best"]] == ["cutmix"]
    assert [a for a in R.AUGS if c["cifar100", "lenet", a]["best"]] == ["baseline_plus"]
    # delta against the study's Table 1
    assert c["cifar10", "resnet18", "cutmix"]["delta"] == pytest.approx(97.0 - 96.20)
    assert bp["delta"] == pytest.approx(92.0 - 94.99) and bp["study_mean"] == 94.99
    assert c["cifar100", "lenet", "cutout"]["delta"] == pytest.approx(38.0 - 37.30)


def test_summarise_normal_ci(grid):
    s = R.summarise(R.collect_runs(grid), ci="normal")
    assert s["cells"]["cifar10", "resnet18", "baseline_plus"]["ci"] == pytest.approx(1.96 * S5)
    assert "1.96·s" in s["ci_label"]


def test_study_constant_matches_reference():
    assert len(R.STUDY) == 40
    assert R.STUDY["cifar10", "lenet", "baseline"] == (63.63, 3.15)
    assert R.STUDY["cifar100", "vgg", "cutmix"] == (73.78, 0.86)
    assert R.STUDY["cifar100", "densenet", "mixup"] == (77.23, 0.58)


def test_row_order_unknown_names_and_duplicates(tmp_path):
    for d, m, a in [("svhn", "lenet", "mixup"), ("cifar100", "lenet", "cutmix"),
                    ("cifar10", "wrn", "cutmix"), ("cifar10", "resnet18", "autoaug")]:
        write_run(tmp_path, d, m, a, 0, 0.5)
    # the same seed again in another folder counts once
    write_run(tmp_path, "cifar10", "wrn", "cutmix", 0, 0.6, sub="rerun/cifar10/wrn/cutmix")
    s = R.summarise(R.collect_runs(tmp_path))
    assert s["rows"] == [("cifar10", "resnet18"), ("cifar10", "wrn"), ("cifar100", "lenet"), ("svhn", "lenet")]
    assert s["augs"] == [*R.AUGS, "autoaug"]
    assert s["cells"]["cifar10", "wrn", "cutmix"]["n"] == 1
    assert len(s["duplicates"]) == 1


# ----------------------------------------------------------------------------- files


def test_write_report_renders_everything(grid):
    written = R.write_report(grid)
    names = {"table1.md", "table1.csv", "table1.tex", "report.md", "significance.csv",
             "curves_cifar10_resnet18.png", "curves_cifar100_lenet.png"}
    assert set(written) == names
    assert all(p.parent == grid and p.exists() for p in written.values())
    assert not [p for p in grid.iterdir() if p.name.startswith(".")]  # no temp files left
    for n in names:
        if n.endswith(".png"):
            assert (grid / n).read_bytes()[:8] == PNG_MAGIC
            assert imread(grid / n).ndim == 3

    hw = T4 * S5 / math.sqrt(5)
    md = (grid / "table1.md").read_text()
    assert "t(0.975, n−1)·s/√n" in md
    row = md_row(md, "cifar10", "resnet18")
    header = md_row(md.replace("| data | model |", "| cifar10 | resnet18 |", 1), "cifar10", "resnet18")
    col = dict(zip(header, row))
    assert col["cutmix"] == f"**97.00 ± {hw:.2f} (n=5)**"
    assert col["baseline_plus"] == f"92.00 ± {hw:.2f} (n=5)"
    assert col["mixup"] == "93.00 (n=1)"
    assert col["cutout"] == "—"
    assert col["Δ cutmix"] == "+0.80" and col["Δ baseline_plus"] == "-2.99" and col["Δ cutout"] == "—"
    assert "**41.00" in md_row(md, "cifar100", "lenet")[3]

    rows = list(csv.DictReader((grid / "table1.csv").open()))
    assert len(rows) == 10
    by = {(r["data"], r["model"], r["aug"]): r for r in rows}
    cm = by["cifar10", "resnet18", "cutmix"]
    assert float(cm["mean"]) == pytest.approx(97.0) and float(cm["ci"]) == pytest.approx(hw, abs=1e-4)
    assert cm["n"] == "5" and cm["best"] == "1" and cm["ci_method"] == "t95"
    assert float(cm["study_mean"]) == 96.2 and float(cm["delta"]) == pytest.approx(0.8)
    assert [r["aug"] for r in rows if r["best"] == "1"] == ["cutmix", "baseline_plus"]
    assert by["cifar10", "resnet18", "cutout"]["mean"] == "" and by["cifar10", "resnet18", "cutout"]["n"] == "0"
    assert by["cifar10", "resnet18", "baseline"]["n"] == "2"

    tex = (grid / "table1.tex").read_text()
    assert r"\begin{tabular}" in tex and r"\end{tabular}" in tex
    assert rf"\textbf{{97.00 $\pm$ {hw:.2f} (n=5)}}" in tex and r"baseline\_plus" in tex
    assert r"\sqrt{n}" in tex


def test_report_md_missing_and_findings(grid):
    R.write_report(grid)
    rep = (grid / "report.md").read_text()
    for name in ("table1.csv", "table1.tex", "curves_cifar10_resnet18.png", "curves_cifar100_lenet.png"):
        assert f"({name})" in rep
    # failed: listed with the first line of the error only
    assert "grid/cifar10/resnet18/baseline/seed=0" in rep and "CUDA out of memory" in rep
    assert "Traceback" not in rep
    # unfinished and missing cells
    assert "grid/cifar10/resnet18/baseline/seed=3" in rep and "running, or killed" in rep
    assert "cifar10/resnet18/cutout: no completed run" in rep
    assert "cifar10/resnet18/mixup: 1 of 5 seeds (missing seeds 1, 2, 3, 4)" in rep
    assert "cifar10/resnet18/baseline: 2 of 5 seeds (missing seeds 0, 3, 4)" in rep
    assert "cifar10/resnet18/cutmix:" not in rep
    assert "cifar100/vgg" in rep  # a study row with no run at all
    # findings computed from the numbers
    assert "on cifar10/resnet18 cutmix wins with 97.00%, +5.00 over baseline_plus and +4.00 over the runner-up mixup" in rep
    assert "on cifar100/lenet baseline_plus wins with 41.00% and +3.00 over the runner-up cutout" in rep
    assert "wins: cutmix 1, baseline_plus 1" in rep
    assert "baseline -11.00 (1 row), cutout -3.00 (1 row), mixup +1.00 (1 row), cutmix +5.00 (1 row)" in rep
    deltas = [81 - 88.97, 92 - 94.99, 93 - 95.77, 97 - 96.20, 41 - 41.32, 38 - 37.30]
    assert f"mean |Δ| is {np.mean(np.abs(deltas)):.2f} points over 6 cells" in rep
    assert "18 found, 16 completed, 1 failed, 1 unfinished" in rep


def test_cli_normal_ci_and_out(grid, tmp_path, capsys):
    out = tmp_path / "out"
    assert R.main([str(grid), "--ci", "normal", "--out", str(out)]) == 0
    assert not (grid / "table1.md").exists()
    md = (out / "table1.md").read_text()
    assert "1.96·s" in md and "not a CI of the mean" in md
    assert f"**97.00 ± {1.96 * S5:.2f} (n=5)**" in md
    rows = {(r["data"], r["model"], r["aug"]): r for r in csv.DictReader((out / "table1.csv").open())}
    assert float(rows["cifar10", "resnet18", "baseline_plus"]["ci"]) == pytest.approx(1.96 * S5, abs=1e-4)
    assert rows["cifar10", "resnet18", "baseline_plus"]["ci_method"] == "1.96s"
    assert "1.96\\,s" in (out / "table1.tex").read_text()
    assert str(out / "report.md") in capsys.readouterr().out


def test_empty_folder_errors(tmp_path, capsys):
    assert R.main([str(tmp_path)]) != 0
    assert "no runs found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert R.main([str(tmp_path / "nope")]) != 0
    with pytest.raises(R.NoRunsError):
        R.write_report(tmp_path)


def test_partial_grid(tmp_path):
    write_run(tmp_path, "cifar100", "vgg", "mixup", 0, 0.70, history=None)
    write_run(tmp_path, "cifar10", "lenet", "cutmix", 0, status="running")
    written = R.write_report(tmp_path)
    assert "curves_cifar100_vgg.png" not in written  # no history anywhere
    md = (tmp_path / "table1.md").read_text()
    assert md_row(md, "cifar100", "vgg")[5] == "**70.00 (n=1)**"
    assert md_row(md, "cifar10", "lenet")[2:7] == ["—"] * 5
    assert len(list(csv.DictReader((tmp_path / "table1.csv").open()))) == 10
    rep = (tmp_path / "report.md").read_text()
    assert "no winners" in rep and "cifar100/vgg/cutmix: no completed run" in rep
    assert "No per-epoch history" in rep


# ----------------------------------------------------------------------------- curves


def test_curves_aggregate_and_prefer_test(grid):
    runs = [r for r in R.collect_runs(grid) if r["aug"] == "baseline_plus" and r["data"] == "cifar10"]
    curves = [R.run_curves(r) for r in runs]
    assert all(set(c) == {"test_acc1", "val_acc1"} for c in curves)
    ep, mean, hw, n = R.aggregate_curves([c["test_acc1"] for c in curves])
    assert ep.tolist() == [0, 1, 2] and n.tolist() == [5, 5, 5]
    assert mean == pytest.approx([72.0, 82.0, 92.0])
    assert hw == pytest.approx([T4 * S5 / math.sqrt(5)] * 3, rel=1e-6)
    # runs with different lengths: the last epoch has one run, so no band there
    ep, mean, hw, n = R.aggregate_curves([([0, 1], [10, 20]), ([0, 1, 2], [30, 40, 50])])
    assert n.tolist() == [2, 2, 1] and mean.tolist() == [20, 30, 50] and math.isnan(hw[2])
    assert "cifar10 / resnet18 (test accuracy)" in (R.write_report(grid)["report.md"]).read_text()


def test_curves_use_val_when_no_test_history(tmp_path):
    for s in range(2):
        write_run(tmp_path, "cifar10", "lenet", "mixup", s, 0.6,
                  history={"epoch": [0, 1], "val_acc1": [0.4, 0.5 + 0.1 * s]})
    written = R.write_report(tmp_path)
    assert imread(written["curves_cifar10_lenet.png"]).ndim == 3
    assert "cifar10 / lenet (validation accuracy)" in written["report.md"].read_text()


def test_tensorboard_fallback(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    d = write_run(tmp_path, "cifar10", "lenet", "cutout", 0, 0.7, history=None)
    w = SummaryWriter(str(d / "tb"))
    for e in range(3):
        w.add_scalar("epoch", e, e * 10 + 4)  # Lightning logs `epoch` with every logging call
        w.add_scalar("train/loss", 1.0 / (e + 1), e * 10 + 4)
        w.add_scalar("epoch", e, e * 10 + 9)
        w.add_scalar("val/acc1", 0.5 + 0.1 * e, e * 10 + 9)
    w.close()
    (run,) = R.collect_runs(tmp_path)
    curves = R.run_curves(run)
    assert set(curves) == {"val_acc1"}
    ep, acc = curves["val_acc1"]
    assert ep.tolist() == [0, 1, 2] and acc == pytest.approx([50, 60, 70], abs=1e-4)
    written = R.write_report(tmp_path)
    assert written["curves_cifar10_lenet.png"].read_bytes()[:8] == PNG_MAGIC
    assert "(validation accuracy)" in written["report.md"].read_text()


# ----------------------------------------------------------------------------- cutmix prob sweep


def test_cutmix_prob_sweep(grid, tmp_path):
    sweep = grid / "cutmix_prob_sweep/cifar10/resnet18/cutmix"
    for p, accs in ((0.1, [0.80, 0.82]), (0.5, [0.84, 0.86])):
        for s, a in enumerate(accs):
            write_run(grid, "cifar10", "resnet18", "cutmix", s, a, experiment=None, prob=p,
                      sub=str((sweep / f"prob={p}").relative_to(grid)))
    # recognised by experiment name alone, too
    write_run(grid, "cifar10", "resnet18", "cutmix", 0, 0.90, experiment="cutmix_prob_sweep", prob=1.0,
              sub="elsewhere/p1")
    runs = R.collect_runs(grid)
    pts = R.summarise_prob_sweep(runs)
    assert [(p["prob"], p["n"]) for p in pts] == [(0.1, 2), (0.5, 2), (1.0, 1)]
    assert [p["mean"] for p in pts] == pytest.approx([81.0, 85.0, 90.0])
    assert pts[0]["ci"] == pytest.approx(R.t_value(2) * math.sqrt(2) / math.sqrt(2))
    assert pts[2]["ci"] is None
    # sweep runs stay out of Table 1
    cm = R.summarise(runs)["cells"]["cifar10", "resnet18", "cutmix"]
    assert cm["n"] == 5 and cm["mean"] == pytest.approx(97.0)
    written = R.write_report(grid)
    assert imread(written["cutmix_prob.png"]).ndim == 3
    rep = written["report.md"].read_text()
    assert "(cutmix_prob.png)" in rep and "| cifar10 | resnet18 | 0.1 | 81.00 ±" in rep


def test_no_prob_plot_for_a_single_prob(tmp_path):
    write_run(tmp_path, "cifar10", "resnet18", "cutmix", 0, 0.9, prob=0.5, sub="cutmix_prob_sweep/x")
    write_run(tmp_path, "cifar10", "resnet18", "cutmix", 1, 0.9, prob=0.5, sub="cutmix_prob_sweep/x")
    assert "cutmix_prob.png" not in R.write_report(tmp_path)


def test_report_tells_a_slurm_requeue_from_a_ctrl_c_and_names_slurm_states(tmp_path):
    write_run(tmp_path, "cifar10", "lenet", "cutmix", 0, status="requeued", error="SystemExit: -1")
    write_run(tmp_path, "cifar10", "lenet", "cutmix", 1, status="interrupted", error="KeyboardInterrupt: ")
    d = write_run(tmp_path, "cifar10", "lenet", "cutmix", 2, status="failed",
                  error="SLURM job 12_2 ended CANCELLED without a result")
    m = json.loads((d / "metrics.json").read_text()) | {"slurm_state": "CANCELLED"}
    (d / "metrics.json").write_text(json.dumps(m))
    R.write_report(tmp_path)
    lines = (tmp_path / "report.md").read_text().splitlines()
    line = lambda seed: next(x for x in lines if f"seed={seed}`" in x)  # noqa: E731
    assert "requeued by SLURM (time limit or preemption), waiting to resume" in line(0)
    assert "interrupted (stopped by the user); relaunch to resume" in line(1)
    assert "(SLURM: CANCELLED)" in line(2) and "ended CANCELLED without a result" in line(2)


def test_report_shows_every_regime_the_runs_hold(tmp_path):
    for aug, acc in (("baseline_plus", 0.9), ("cutmix", 0.92), ("random_erasing", 0.91), ("ricap", 0.93),
                     ("mixup_cutmix", 0.925)):
        for seed in range(2):
            write_run(tmp_path, "cifar10", "resnet18", aug, seed, acc=acc + seed / 1000)
    R.write_report(tmp_path)
    header = next(line for line in (tmp_path / "table1.md").read_text().splitlines() if line.startswith("| data"))
    for aug in ("baseline_plus", "cutmix", "random_erasing", "ricap", "mixup_cutmix"):
        assert f" {aug} " in header
    assert "ricap" in (tmp_path / "report.md").read_text()


def test_table1_with_many_regimes_is_printed_a_line_per_regime(tmp_path):
    from augbench.report import collect_runs, summarise, table_md

    augs = ["baseline", "baseline_plus", "cutout", "mixup", "cutmix", "ricap", "gridmask", "hide_and_seek"]
    for i, aug in enumerate(augs):
        for seed in range(2):
            write_run(tmp_path, "fashion_mnist", "lenet", aug, seed, 0.80 + 0.01 * i + 0.001 * seed)
    md = table_md(summarise(collect_runs(tmp_path)))
    lines = [line for line in md.splitlines() if line.startswith("|")]
    assert lines[0] == "| regime | fashion_mnist / lenet |"
    assert len(lines) == 2 + len(augs) and lines[2].startswith("| baseline |")
    best = [line for line in lines if "**" in line]
    assert len(best) == 1 and best[0].startswith("| hide_and_seek |") and "best mean in the column" in md

"""augbench.report: paired tests over seeds, Holm's correction, significance marks, collapsed runs."""

import csv
import json
import math

import numpy as np
import pytest
from scipy import stats

from augbench import report as R
from augbench.report.collect import split_collapsed
from augbench.report.stats import band
from test_report import md_row, write_run


def patch_metrics(run_dir, **fields):
    """Add or replace top-level keys of a fake run's metrics.json; a value of None deletes the key."""
    m = json.loads((run_dir / "metrics.json").read_text())
    for k, v in fields.items():
        if v is None:
            m.pop(k, None)
        else:
            m[k] = v
    (run_dir / "metrics.json").write_text(json.dumps(m))
    return run_dir


def row_of(md, data, model):
    header = md_row(md.replace("| data | model |", f"| {data} | {model} |", 1), data, model)
    return dict(zip(header, md_row(md, data, model)))


# ----------------------------------------------------------------------------- statistics


def test_holm_matches_hand_computation():
    # sorted p: 0.01, 0.02, 0.03, 0.04 with m = 4 -> 0.04, 0.06, 0.06 (monotone), 0.04 -> 0.06
    assert R.holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    # capped at 1, untested entries stay None and do not count in m (m = 2 here)
    assert R.holm([0.6, None, 0.2]) == [pytest.approx(0.6), None, pytest.approx(0.4)]
    assert R.holm([0.9, 0.8]) == [1.0, 1.0]
    assert R.holm([None]) == [None] and R.holm([]) == []


def test_paired_test_matches_scipy_and_pairs_by_seed():
    a = {0: 91.0, 1: 92.5, 2: 90.8, 3: 93.1, 4: 99.0}
    b = {0: 90.2, 1: 91.0, 2: 90.9, 3: 91.7, 7: 50.0}  # seed 4 and 7 have no partner
    res = R.paired_test(a, b)
    ref = stats.ttest_rel([91.0, 92.5, 90.8, 93.1], [90.2, 91.0, 90.9, 91.7])
    assert res["n"] == 4 and res["seeds"] == [0, 1, 2, 3]
    assert res["p"] == pytest.approx(ref.pvalue) and res["t"] == pytest.approx(ref.statistic)
    assert res["diff"] == pytest.approx(np.mean([0.8, 1.5, -0.1, 1.4]))
    # known value: differences 1, 2, 3 -> t = 2/(1/sqrt 3) = 3.4641, df 2, p = 0.0742
    res = R.paired_test({0: 11, 1: 12, 2: 13}, {0: 10, 1: 10, 2: 10})
    assert res["t"] == pytest.approx(2 * math.sqrt(3)) and res["p"] == pytest.approx(0.07418, abs=1e-4)


def test_fewer_than_two_shared_seeds_is_not_a_test():
    one = R.paired_test({0: 1.0, 1: 2.0}, {1: 1.5, 5: 3.0})
    assert one["p"] is None and one["n"] == 1 and "only 1 shared seed" in one["note"]
    none = R.paired_test({0: 1.0}, {1: 1.0})
    assert none["p"] is None and none["n"] == 0 and "no shared seed" in none["note"]
    same = R.paired_test({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0})
    assert same["p"] is None and "same" in same["note"]
    comps = R.compare_row({"baseline_plus": {0: 1.0}, "mixup": {0: 2.0}}, ["baseline_plus"], ("d", "m"))
    assert comps[0]["p_holm"] is None and not comps[0]["significant"] and comps[0]["direction"] is None


def test_compare_row_holm_across_the_row_and_direction():
    base = {s: 90.0 + s % 3 * 0.5 for s in range(5)}
    values = {"baseline_plus": base,
              "cutmix": {s: v + 2.0 + 0.1 * s for s, v in base.items()},   # clear win
              "mixup": {s: v + (0.3 if s % 2 else -0.2) for s, v in base.items()},  # noise
              "baseline": {s: v - 5.0 - 0.2 * s for s, v in base.items()}}  # clear loss
    comps = {c["aug"]: c for c in R.compare_row(values, ["baseline_plus"], ("c10", "r18"))}
    raw = [comps[a]["p"] for a in ("cutmix", "mixup", "baseline")]
    assert [comps[a]["p_holm"] for a in ("cutmix", "mixup", "baseline")] == pytest.approx(R.holm(raw))
    assert comps["cutmix"]["direction"] == "better" and comps["baseline"]["direction"] == "worse"
    assert comps["mixup"]["direction"] is None and not comps["mixup"]["significant"]
    # a lower-is-better metric turns the same win into "worse"
    low = {c["aug"]: c for c in R.compare_row(values, ["baseline_plus"], ("c10", "r18"), "ece", False)}
    assert low["cutmix"]["direction"] == "worse" and low["baseline"]["direction"] == "better"


def test_band_is_clipped_to_the_accuracy_scale():
    lo, hi, ok = band([5.0, 50.0, 97.0, 60.0], [20.0, 10.0, 8.0, np.nan])
    assert lo.tolist() == [0.0, 40.0, 89.0, 60.0] and hi.tolist() == [25.0, 60.0, 100.0, 60.0]
    assert ok.tolist() == [True, True, True, False]


# ----------------------------------------------------------------------------- Table 1 marks


@pytest.fixture
def marked_grid(tmp_path):
    """cutmix beats baseline_plus on every seed by about 2 points (significant); mixup differs
    by ±0.3 (not significant); cutout shares only one seed with baseline_plus."""
    rng = np.random.default_rng(0)
    for s in range(5):
        b = 0.90 + 0.01 * rng.standard_normal()
        write_run(tmp_path, "cifar10", "resnet18", "baseline_plus", s, b)
        write_run(tmp_path, "cifar10", "resnet18", "cutmix", s, b + 0.02 + 0.002 * rng.standard_normal())
        write_run(tmp_path, "cifar10", "resnet18", "mixup", s, b + (0.003 if s % 2 else -0.003))
    write_run(tmp_path, "cifar10", "resnet18", "cutout", 0, 0.85)
    return tmp_path


def test_significant_win_is_marked_and_noise_is_not(marked_grid, tmp_path):
    R.write_report(marked_grid)
    col = row_of((marked_grid / "table1.md").read_text(), "cifar10", "resnet18")
    assert col["cutmix"].endswith("▲") and col["cutmix"].startswith("**")
    assert not col["mixup"].endswith(("▲", "▼")) and not col["cutout"].endswith(("▲", "▼"))
    assert not col["baseline_plus"].endswith(("▲", "▼"))
    assert "▲/▼: significantly better/worse than baseline_plus" in (marked_grid / "table1.md").read_text()
    assert r"$^\uparrow$" in (marked_grid / "table1.tex").read_text()
    rows = {r["aug"]: r for r in csv.DictReader((marked_grid / "significance.csv").open())}
    assert rows["cutmix"]["significant"] == "1" and rows["cutmix"]["direction"] == "better"
    assert float(rows["cutmix"]["p_holm"]) < 0.05 <= float(rows["mixup"]["p_holm"])
    assert float(rows["cutmix"]["p_holm"]) >= float(rows["cutmix"]["p"])
    assert rows["cutout"]["p"] == "" and "only 1 shared seed" in rows["cutout"]["note"]
    assert rows["cutmix"]["n"] == "5" and float(rows["cutmix"]["mean_diff"]) == pytest.approx(2.0, abs=0.3)
    t1 = {r["aug"]: r for r in csv.DictReader((marked_grid / "table1.csv").open())}
    assert t1["cutmix"]["vs_baseline_plus"] == "better" and t1["mixup"]["vs_baseline_plus"] == ""
    rep = (marked_grid / "report.md").read_text()
    assert "cutmix vs baseline_plus: significantly better" in rep
    assert "1 of 2 tested differences in Table 1 are significant" in rep and "mixup better" not in rep
    # --reference adds a second reference to every row, and Holm then runs over all 4 tests of the row
    out = tmp_path / "ref"
    assert R.main([str(marked_grid), "--reference", "mixup", "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "significance.csv").open()))
    assert {r["reference"] for r in rows} == {"baseline_plus", "mixup"}
    ps = [float(r["p"]) for r in rows if r["p"]]
    assert len(ps) == 4
    assert [float(r["p_holm"]) for r in rows if r["p"]] == pytest.approx(R.holm(ps), abs=2e-6)  # CSV: 6 decimals
    assert R.main([str(marked_grid), "--reference", "nosuch", "--out", str(out)]) == 2


# ----------------------------------------------------------------------------- collapsed runs


@pytest.fixture
def collapsed_grid(tmp_path):
    for s in range(5):
        write_run(tmp_path, "cifar10", "lenet", "baseline_plus", s, 0.70 + 0.01 * s)
        write_run(tmp_path, "cifar10", "lenet", "mixup", s, 0.72 + 0.01 * s)
    # flagged by training
    patch_metrics(write_run(tmp_path, "cifar10", "lenet", "mixup", 5, 0.10), collapsed=True,
                  collapse_reason="test accuracy 10.00% is within 2 points of chance (10.00%)")
    write_run(tmp_path, "cifar10", "lenet", "baseline_plus", 5, 0.75)
    # an older run without the flag: recomputed from its final training loss (ln 10 = 2.303)
    old = write_run(tmp_path, "cifar10", "lenet", "baseline_plus", 6, 0.30,
                    history={"epoch": [0, 1], "train_loss": [2.31, 2.30], "test_acc1": [0.2, 0.3]})
    write_run(tmp_path, "cifar10", "lenet", "mixup", 6, 0.78)
    # flagged False by training: trusted, even though accuracy is low
    patch_metrics(write_run(tmp_path, "cifar10", "lenet", "cutout", 0, 0.11), collapsed=False)
    return tmp_path, old


def test_collapse_flag_and_recomputation_for_old_runs(collapsed_grid):
    root, old = collapsed_grid
    runs = {(r["aug"], r["seed"]): r for r in R.collect_runs(root)}
    assert runs["mixup", 5]["collapsed"] and "chance" in runs["mixup", 5]["collapse_reason"]
    assert runs["baseline_plus", 6]["collapsed"]
    assert "training loss 2.300" in runs["baseline_plus", 6]["collapse_reason"]
    assert "recomputed" in runs["baseline_plus", 6]["collapse_reason"]
    assert not runs["cutout", 0]["collapsed"] and not runs["baseline_plus", 0]["collapsed"]
    # the same old run without a training loss and with a healthy accuracy is not collapsed
    patch_metrics(old, history=None, test_acc1=0.65)
    assert not next(r for r in R.collect_runs(root) if r["seed"] == 6 and r["aug"] == "baseline_plus")["collapsed"]


def test_collapsed_runs_left_out_counted_and_kept_on_request(collapsed_grid, tmp_path):
    root, _ = collapsed_grid
    runs = R.collect_runs(root)
    cells = R.summarise(runs)["cells"]
    mix = cells["cifar10", "lenet", "mixup"]
    assert mix["n"] == 6 and mix["left_out"] == 1 and 5 not in mix["seeds"]
    assert mix["mean"] == pytest.approx(np.mean([72, 73, 74, 75, 76, 78]))
    bp = cells["cifar10", "lenet", "baseline_plus"]
    assert bp["n"] == 6 and bp["left_out"] == 1 and bp["mean"] == pytest.approx(np.mean([70, 71, 72, 73, 74, 75]))
    kept = R.summarise(runs, keep_collapsed=True)["cells"]["cifar10", "lenet", "mixup"]
    assert kept["n"] == 7 and kept["left_out"] == 0 and kept["collapsed_kept"] == 1
    assert kept["mean"] == pytest.approx(np.mean([72, 73, 74, 75, 76, 10, 78]))
    # the paired test uses only seeds both kept: 0-4 (5 is collapsed in mixup, 6 in baseline_plus)
    c = next(c for c in R.summarise(runs)["comparisons"] if c["aug"] == "mixup")
    assert c["seeds"] == [0, 1, 2, 3, 4]
    assert split_collapsed([{"collapsed": True}], True) == ([{"collapsed": True}], [])

    R.write_report(root)
    col = row_of((root / "table1.md").read_text(), "cifar10", "lenet")
    assert col["mixup"].startswith(f"**{np.mean([72, 73, 74, 75, 76, 78]):.2f} ± ")
    assert "(n=6, 1 collapsed run left out)" in col["mixup"]
    rep = (root / "report.md").read_text()
    assert "## Collapsed runs" in rep and "2 completed runs collapsed" in rep and "left out of every mean" in rep
    assert "cifar10/lenet/mixup seed 5" in rep and "within 2 points of chance" in rep
    assert "2 of the completed collapsed (left out" in rep
    assert "seed 5 collapsed, left out" in rep  # in Missing, not called a missing seed
    out = tmp_path / "keep"
    assert R.main([str(root), "--keep-collapsed", "--out", str(out)]) == 0
    col = row_of((out / "table1.md").read_text(), "cifar10", "lenet")
    assert "(n=7, incl. 1 collapsed)" in col["mixup"]
    assert "kept in every mean" in (out / "report.md").read_text()


def test_label_noise_runs_stay_out_of_table1(tmp_path):
    write_run(tmp_path, "cifar10", "resnet18", "baseline_plus", 0, 0.95)
    d = write_run(tmp_path, "cifar10", "resnet18", "baseline_plus", 0, 0.55, sub="noisy")
    m = json.loads((d / "metrics.json").read_text())
    m["config"]["data"] = {"label_noise": 0.5}
    (d / "metrics.json").write_text(json.dumps(m))
    s = R.summarise(R.collect_runs(tmp_path))
    c = s["cells"]["cifar10", "resnet18", "baseline_plus"]
    assert c["n"] == 1 and c["mean"] == pytest.approx(95.0) and len(s["noisy"]) == 1 and not s["duplicates"]
    assert "1 label-noise run is reported apart" in R.table_md(s)

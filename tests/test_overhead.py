"""The framework-overhead section of the benchmark runs and reports what it measured."""

import argparse
import json

import pytest
import torch

from augbench.bench.overhead import bench_overhead, overhead_md, write_overhead


def test_overhead_section_measures_five_loops_and_writes_its_tables(tmp_path, fake_cifar):
    args = argparse.Namespace(root=str(fake_cifar), verify=False, overhead_batch=8, overhead_steps=3,
                              overhead_reps=1, steps_per_batch=2)
    r = bench_overhead(args, torch.device("cpu"))
    assert set(r["ms_per_step"]) == {"plain", "trainer", "trainer_grouped", "trainer_automatic",
                                      "trainer_before"}
    assert all(len(v) == 1 for v in r["raw_ms"].values())
    # one repetition: the paired difference is that repetition's difference
    raw = r["raw_ms"]
    assert r["trainer_minus_plain_ms"] == pytest.approx(raw["trainer"][0] - raw["plain"][0])
    assert r["automatic_minus_plain_ms"] == pytest.approx(raw["trainer_automatic"][0] - raw["plain"][0])
    assert r["grouped_minus_plain_ms"] == pytest.approx(raw["trainer_grouped"][0] - raw["plain"][0])
    assert r["steps_per_batch"] == 2
    assert r["over_plain_range_ms"]["trainer"] == [pytest.approx(r["trainer_minus_plain_ms"])] * 2
    md = overhead_md(r)
    assert "not projected" in md and "0.15 ms" in md and "trainer.steps_per_batch=2" in md
    paths = write_overhead(r, tmp_path)
    assert [p.name for p in paths] == ["overhead_cpu.json", "overhead_cpu.md"]
    assert json.loads(paths[0].read_text())["batch"] == 8


@pytest.mark.parametrize("n,j", [(5, 0), (6, 1), (21, 6), (41, 14)])
def test_the_median_interval_takes_the_binomial_order_statistics(n, j):
    from math import comb

    from augbench.bench.common import median_ci

    xs = [float(i) for i in range(n)][::-1]  # any order
    lo, hi = median_ci(xs)
    assert (lo, hi) == ((0.0, n - 1.0) if j == 0 else (j - 1.0, n - j + 0.0))
    if j:  # coverage 1 − 2·P(B < j) ≥ 95%, and one order statistic further in would fall below it
        below = sum(comb(n, i) for i in range(j)) / 2**n
        assert 1 - 2 * below >= 0.95 and 1 - 2 * (below + comb(n, j) / 2**n) < 0.95


def test_the_benchmarks_time_the_default_steps_per_batch(tmp_path):
    from augbench.bench.trainer import STEPS_PER_BATCH
    from conftest import make_cfg

    assert make_cfg(tmp_path).trainer.steps_per_batch == STEPS_PER_BATCH

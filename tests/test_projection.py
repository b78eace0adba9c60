"""Kernel counting (the stated rule), the tracked kernel counts, and the GPU projection (on the CPU, fast)."""

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from augbench.bench import projcli, tracking
from augbench.bench import projection as P
from augbench.bench.kernels import (KernelCounter, StepCounter, count_kernels, count_step, kernels_of,
                                    multi_tensor_launches)
from augbench.bench.projection_md import gap_row, gpu_measurement
from augbench.callbacks import CropFlip

aten = torch.ops.aten


# --- the rule ---------------------------------------------------------------------------------------------


def test_views_are_free_and_ops_count_one():
    x = torch.randn(4, 6)
    counts = count_kernels(lambda: x.view(6, 4).t().unsqueeze(0).expand(2, 4, 6).detach()[0].add(1))
    assert counts == {"add": 1}
    assert count_kernels(lambda: torch.empty(3)) == {}


def test_multi_kernel_ops_follow_the_table():
    w = torch.randn(4, 3, 3, 3)
    args = (torch.randn(2, 3, 8, 8), w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1)
    assert kernels_of(aten.convolution.default, args, {}) == 1
    assert kernels_of(aten.convolution.default, (*args[:2], torch.zeros(4), *args[3:]), {}) == 2
    bwd = lambda mask: kernels_of(aten.convolution_backward.default, (None,) * 10 + (mask,), {})  # noqa: E731
    assert (bwd([True, True, False]), bwd([False, True, False]), bwd([True, True, True])) == (3, 2, 4)
    assert kernels_of(aten.randperm.default, (10,), {}) == 3
    assert kernels_of(aten.cat.default, ([torch.zeros(1)] * 200,), {}) == 2


def test_multi_tensor_apply_groups_like_cuda():
    small = [torch.empty(10)] * 100
    assert multi_tensor_launches([small]) == 1  # 100 tensors fit one launch of a 1-list op (110)
    assert multi_tensor_launches([small] * 3) == 3  # 48 per launch for 3 lists: 48 + 48 + 4
    assert multi_tensor_launches([[torch.empty(65_536 * 400)]] * 2) == 2  # 400 chunks, 320 per launch
    assert multi_tensor_launches([[]]) == 0


def test_boolean_mask_indexing_is_a_sync_and_a_nonzero():
    x, m = torch.randn(8), torch.rand(8) > 0.5
    with KernelCounter() as c:
        x[m]
    assert c.total()["index"] == 4 and c.syncs["step"]["index"] == 1


def test_bytes_count_a_broadcast_once_and_flops_match_flop_counter():
    a, b = torch.randn(64, 64), torch.ones(64, 1)
    with KernelCounter() as c:
        a + b.expand(64, 64)
    assert c.bytes["step"] == (64 * 64 * 2 + 64) * 4
    step = StepCounter("lenet")
    step.use([CropFlip()])
    with KernelCounter() as c, FlopCounterMode(display=False) as f:
        step.run()
    assert sum(c.flops.values()) == f.get_total_flops() > 0


# --- counting a training step -------------------------------------------------------------------------------


def test_counting_a_step_is_deterministic_and_split_by_phase():
    first, second = (count_step("lenet", [CropFlip()]) for _ in range(2))
    assert first.summary() == second.summary()
    phases = first.summary()
    assert set(P.PHASES) <= set(phases)
    assert phases["optimizer"]["by_op"] == {"_fused_sgd_": 1}  # fused SGD, as on a GPU
    assert phases["forward"]["by_op"]["_to_copy"] > 0  # bf16 autocast's casts
    assert sum(v["kernels"] for v in phases.values()) == first.total().total()


def test_the_training_count_reused_per_batch_signature_is_what_a_fresh_count_gives():
    regimes = projcli.regime_factories(["mixup", "cutmix"])
    shared = StepCounter("lenet", steps=4)
    shared.count(regimes["mixup"]())  # the same batch signature as cutmix: two partners
    reused, fresh = shared.count(regimes["cutmix"]()).summary(), count_step("lenet", regimes["cutmix"]()).summary()
    assert len(shared.trained) == 1
    for phase in ("forward", "loss", "backward", "optimizer"):
        assert reused[phase] == fresh[phase]


def test_the_committed_kernel_counts_match_this_code_for_lenet():
    committed = tracking.load()
    assert committed is not None, f"benchmarks/kernels.json is missing: {tracking.REFRESH}"
    regimes = projcli.regime_factories()
    fresh = tracking.counts_doc(P.measure(["lenet"], regimes, rounds=0))
    diff = tracking.compare(fresh, committed)
    assert not (diff["grew"] or diff["shrank"] or diff["new"]), (
        "kernels per step differ from benchmarks/kernels.json:\n" + "\n".join(tracking.describe(diff)))


def test_check_kernels_flags_a_cell_that_grew(monkeypatch, capsys):
    fresh = tracking.counts_doc(P.measure(["lenet"], projcli.regime_factories(["cutmix"]), rounds=0))
    cell = fresh["counts"]["lenet"]["cutmix"]
    fewer = {"counts": {"lenet": {"cutmix": {"kernels": cell["kernels"] - 5,
                                             "phases": cell["phases"] | {"augmentation": cell["phases"]["augmentation"] - 5}}}}}
    monkeypatch.setattr(tracking, "load", lambda path=None: fewer)
    assert projcli.main(["--check-kernels", "--models", "lenet", "--regimes", "cutmix"]) == 1
    err = capsys.readouterr().err
    assert "REGRESSION" in err and "lenet/cutmix" in err and "augmentation +5" in err and tracking.REFRESH in err
    monkeypatch.setattr(tracking, "load", lambda path=None: fresh)
    assert projcli.main(["--check-kernels", "--models", "lenet", "--regimes", "cutmix"]) == 0


def test_help_lists_the_knobs(capsys):
    with pytest.raises(SystemExit):
        projcli.parse_args(["--project", "h100", "--help"])
    out = capsys.readouterr().out
    assert all(f"--{k.replace('_', '-')}" in out for k in P.ASSUMPTIONS) and "80-90%" in out


def test_update_merges_cells(tmp_path):
    path = tmp_path / "kernels.json"
    doc = {"counts": {"lenet": {"a": {"kernels": 1, "phases": {}}}}}
    tracking.write(doc, path)
    tracking.write({"counts": {"lenet": {"b": {"kernels": 2, "phases": {}}}}}, path)
    assert set(json.loads(path.read_text())["counts"]["lenet"]) == {"a", "b"}


# --- the projection ---------------------------------------------------------------------------------------


A = {k: v for k, (v, _) in P.ASSUMPTIONS.items()}
FW = {"framework_us": 100.0, "framework_kernels": 2}


def test_step_model_host_device_graphs_and_k_runs():
    p = P.PROFILES["h100"]
    host_bound = {"kernels": 1000, "flops": 1e9, "bytes": 1e8, "host_s": 0.004}
    s = P.project_step(host_bound, p, A, FW)
    assert s["host_s"] == pytest.approx(1002 * 5e-6 + 100e-6) and s["bound"] == "host"
    assert s["eager_s"] == s["host_s"] and s["host_here_s"] == pytest.approx(0.004 + 100e-6)
    assert s["graphs_s"] == max(s["device_s"], 120e-6) < s["eager_s"]
    assert s["k2_run_step_s"] == max(s["host_s"], 2 * s["device_s"]) and s["k4_s_per_step"] < s["eager_s"]
    device_bound = {"kernels": 10, "flops": 1e13, "bytes": 0, "host_s": 0.0}
    d = P.project_step(device_bound, p, A, FW)
    assert d["bound"] == "device" and d["eager_s"] == pytest.approx(1e13 / (989.4e12 * 0.3) + 12e-6)
    assert d["k2_s_per_step"] == pytest.approx(d["device_s"])  # a device-bound step gains nothing from K runs


def test_projection_command_writes_labelled_tables(tmp_path, capsys):
    rc = projcli.main(["--project", "h100,a100", "--quick", "--framework-us", "400", "--rounds", "1",
                       "--out", str(tmp_path)])
    assert rc == 0
    for gpu in ("h100", "a100"):
        doc = json.loads((tmp_path / f"projection_{gpu}.json").read_text())
        assert doc["label"].startswith("PROJECTION")
        cells = doc["measured"]["lenet"]
        assert set(cells) == {"baseline", "baseline_plus", "cutmix"}
        assert all(c["kernels"] > 0 and c["flops"] > 0 and c["bytes"] > 0 and c["host_s"] >= 0 for c in cells.values())
        assert doc["projection"]["grid_hours"]["eager"]["total"] > doc["projection"]["grid_hours"]["peak_floor"]["total"]
        md = (tmp_path / f"projection_{gpu}.md").read_text()
        assert md.startswith("# PROJECTION (not a measurement)") and "No GPU measurement exists" in md
        assert "400 µs | given with --framework-us" in md and "K=4 runs per GPU" in md
    assert "PROJECTION" in capsys.readouterr().out


def test_a_gpu_measurement_is_compared(tmp_path):
    bench = {"meta": {"device_name": "NVIDIA H100 80GB HBM3"},
             "pipelines": [{"model": "lenet", "augbench": {"images_per_s": 10_000.0}}]}
    (tmp_path / "bench_cuda.json").write_text(json.dumps(bench))
    result = {"projection": {"steps": {"lenet": {"baseline_plus": {"eager_s": 128 / 20_000, "kernels": 80,
                                                                   "eager_here_s": 128 / 5_000}}}}}
    g = gpu_measurement(tmp_path, P.profile_dict("h100"), result)
    assert g["status"] == "compared" and g["rows"][0]["gap"] == pytest.approx(1.0)
    assert g["rows"][0]["gap_here"] == pytest.approx(-0.5)
    assert g["rows"][0]["implied_host_us_per_kernel"] == pytest.approx(128 / 10_000 / 80 * 1e6)  # 160 µs
    assert g["rows"][0]["kernels_of"].startswith("this code")
    # a measurement that counted its own code's kernels is explained by those, not by today's count
    bench["pipelines"][0]["augbench"]["gpu_kernels_per_step"] = 100
    (tmp_path / "bench_cuda.json").write_text(json.dumps(bench))
    row = gpu_measurement(tmp_path, P.profile_dict("h100"), result)["rows"][0]
    assert row["kernels"] == 100 and row["kernels_of"] == "the measured code"
    assert row["implied_host_us_per_kernel"] == pytest.approx(128)
    assert gpu_measurement(tmp_path, P.profile_dict("a100"), result)["status"] == "other_gpu"


def test_the_framework_overhead_comes_from_the_overhead_sections_paired_figure(tmp_path):
    r = {"device_type": "cpu", "steps_per_batch": 8, "reps": 11, "batch": 32,
         "trainer_minus_plain_ms": 0.27, "grouped_minus_plain_ms": -0.02}
    path = tmp_path / "overhead_cpu.json"
    assert P.paired_overhead(path, 8) == {}  # not measured yet: the projection's own epochs decide
    path.write_text(json.dumps(r))
    one, grouped = P.paired_overhead(path, 1), P.paired_overhead(path, 8)
    assert one["framework_us"] == pytest.approx(270) and one["paired_source"] == "overhead_cpu.json"
    assert grouped["framework_us"] == 0.0 and grouped["paired_us"] == pytest.approx(-20)  # clamped, and shown
    assert P.paired_overhead(path, 4) == {}  # measured for another steps_per_batch
    path.write_text(json.dumps(r | {"device_type": "cuda"}))
    assert P.paired_overhead(path, 8) == {}  # a GPU's overhead is not this CPU's


def test_a_measurement_without_this_cpus_host_figure_shows_a_dash(tmp_path):
    bench = {"meta": {"device_name": "NVIDIA H100 80GB HBM3"},
             "pipelines": [{"model": "lenet", "augbench": {"images_per_s": 10_000.0, "gpu_kernels_per_step": 80}}]}
    (tmp_path / "bench_cuda.json").write_text(json.dumps(bench))
    result = {"projection": {"steps": {"lenet": {"baseline_plus": {"eager_s": 128 / 20_000, "kernels": 80}}}}}
    (row,) = gpu_measurement(tmp_path, P.profile_dict("h100"), result)["rows"]
    assert "gap_here" not in row and gap_row(row).endswith("| +100% | – | – | 80 | 160.0 |")


# --- the DenseNet study ------------------------------------------------------------------------------------

def test_the_committed_densenet_tables_are_what_the_study_renders_from_its_json():
    """benchmarks/densenet.md is render(densenet.json): no figure in the table was edited by hand, and
    the verdicts follow from the figures (a compiled mode meets 1.5× only when its projection does)."""
    from pathlib import Path

    from augbench.bench.densenet import render

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    r = json.loads((bench / "densenet.json").read_text())
    assert render(r) == (bench / "densenet.md").read_text()
    before = r["variants"]["before"]["projected"]["eager_s"]
    for key in ("compile", "whole_step"):
        x = r[key]
        assert x["status"] == "measured" and x["step_kernels"] > x["kernels"]
        verdict = "met" if before / x["projected"]["eager_s"] >= 1.5 else "MISSED"
        assert f"{before / x['projected']['eager_s']:.2f}× before (≥ 1.5×: {verdict} by this mode" in render(r)


def test_a_compiled_step_is_projected_with_its_own_kernels_and_the_eager_bytes():
    from augbench.bench.densenet import _project_compiled

    adopted = {"kernels": 1492, "flops": 1e11, "bytes": 8e9, "host_s": 0.02}
    a = {k: v for k, (v, _) in P.ASSUMPTIONS.items()}
    fw = {"framework_us": 50.0, "framework_kernels": 0}
    rate = {"host_per_kernel_s": 1e-5}
    eager = P.project_step(adopted, P.PROFILES["h100"], a, fw)
    half = _project_compiled(adopted, 746, rate, "h100", a, fw)
    assert half["host_s"] == pytest.approx(746 * 5e-6 + 50e-6) and half["host_here_s"] == pytest.approx(746e-5 + 50e-6)
    assert half["device_s"] < eager["device_s"] and half["eager_s"] < eager["eager_s"]

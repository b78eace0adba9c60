"""The benchmark runs end to end at tiny settings and writes what it promises (no timing assertions)."""

import json

import lightning as L
import pytest
import torch

from augbench import bench
from augbench.bench import levers, pipelines, tracking
from augbench.bench import trainer as trainer_section
from augbench.bench import main, parse_args, render_md
from augbench.module import sgd_flags

TINY = ["--device", "cpu", "--models", "lenet", "--threads", "1", "--steps", "2", "--windows", "2",
        "--warmup", "1", "--workers", "1", "--epochs", "1", "--limit-batches", "2", "--batch-size", "32",
        "--aug-images", "64", "--aug-windows", "1", "--sync-steps", "2", "--fake-images", "320",
        "--concurrency", "1,2"]


def test_bench_writes_json_and_md(tmp_path):
    result = main(TINY + ["--data-root", str(tmp_path / "no-cifar"), "--out", str(tmp_path)])
    written = json.loads((tmp_path / "bench_cpu.json").read_text())
    assert written["targets"] == result["targets"]
    assert {"meta", "settings", "pipelines", "grid_hours", "augmentation", "trainer_vs_plain", "host_syncs",
            "levers", "concurrency", "targets"} <= set(written)
    meta = written["meta"]
    assert meta["device"] == "cpu" and meta["cifar_real"] is False
    assert all(meta[k] for k in ("device_name", "torch", "lightning", "torchvision", "date"))

    (row,) = written["pipelines"]
    assert row["model"] == "lenet" and row["ratio"] > 0
    tracked = tracking.load()["counts"]["lenet"]["baseline_plus"]["kernels"]  # benchmarks/kernels.json
    assert row["augbench"]["gpu_kernels_per_step"] == tracked
    for kind in ("augbench", "conventional"):
        assert row[kind]["images_per_s"] > 0 and row[kind]["s_per_epoch"] > 0 and row[kind]["peak_rss_mib"] > 0
    assert all(v > 0 for v in written["grid_hours"].values())

    aug = written["augmentation"]
    assert [a["name"] for a in aug if a["regime"]] == ["baseline_plus", "cutout", "mixup", "cutmix"]
    assert all(a["augbench_images_per_s"] > 0 and a["baseline_images_per_s"] > 0 and a["speedup"] > 0 for a in aug)

    t = written["trainer_vs_plain"]
    assert t["batches_per_epoch"] == 2 and t["model"] == "lenet"
    assert all(t[f"{k}_s_per_epoch"] > 0 for k in ("plain", "module", "trainer", "trainer_automatic"))
    assert t["trainer_over_plain"] > 0 and t["trainer_automatic_over_plain"] > 0

    syncs = written["host_syncs"]
    assert {"baseline", "baseline_plus", "cutout", "mixup", "cutmix", "trainer"} <= set(syncs)
    assert isinstance(syncs["no_sync_every_step"], bool)

    levers = written["levers"]
    assert levers["model"] == "lenet" and levers["compile"] is False
    status = {r["lever"]: r["status"] for r in levers["rows"]}
    assert list(status) == ["baseline", "channels_last", "cudnn_benchmark", "autocast", "fused_sgd", "compile",
                            "reduce_overhead", "whole_step"]
    for r in levers["rows"]:
        if r["lever"] in ("baseline", "channels_last", "autocast"):
            assert r["status"] == "measured" and r["images_per_s"] > 0 and r["s_per_epoch"] > 0
            assert r["speedup_vs_first"] > 0
    assert status["cudnn_benchmark"].startswith("n/a on cpu") and status["fused_sgd"].startswith("n/a on cpu")
    assert status["compile"] == "skipped (--levers-compile off)" and status["reduce_overhead"].startswith("n/a")
    assert status["whole_step"] == "n/a on cpu (CUDA graphs)"
    assert "fp32" in levers["rows"][3]["note"]

    conc = written["concurrency"]
    assert [r["processes"] for r in conc["rows"]] == [1, 2]
    for r in conc["rows"]:
        assert r["status"] == "measured", r["status"]
        assert len(r["per_process_images_per_s"]) == r["processes"] and min(r["per_process_images_per_s"]) > 0
        assert r["aggregate_images_per_s"] > 0 and r["runs_per_hour"] > 0 and r["speedup_vs_one"] > 0
    assert [r["threads_per_process"] for r in conc["rows"]][1] == max(1, conc["cores"] // 2)

    md = (tmp_path / "bench_cpu.md").read_text()
    assert "FAKE CIFAR-10" in md and "GPU figures are unmeasured" in md
    assert "python -m augbench.bench --device cuda" in md
    assert "## 5. Levers" in md and "## 6. Grid throughput with several runs per device" in md
    assert "skipped (--levers-compile off)" in md and "runs per hour" in md.lower()

    skipped = render_md(result | {"levers": None, "concurrency": None})
    assert "(--skip-levers)" in skipped and "(--skip-concurrency)" in skipped

    # a GPU run's rows carry both peak figures, and the report names both
    def on_gpu(row):
        return {k: v for k, v in row.items() if k != "peak_rss_mib"} | {"peak_allocated_mib": 10.0,
                                                                         "peak_reserved_mib": 12.0}

    gpu = json.loads(json.dumps(result))
    gpu["settings"]["device"] = "cuda"
    for p in gpu["pipelines"]:
        p["augbench"], p["conventional"] = on_gpu(p["augbench"]), on_gpu(p["conventional"])
    gpu["levers"]["rows"] = [on_gpu(r) if r["status"] == "measured" else r for r in gpu["levers"]["rows"]]
    gpu_md = render_md(gpu)
    assert gpu_md.count("peak MiB allocated / reserved") == 3 and "| 10 / 12 |" in gpu_md
    assert "reserved (allocator cache included)" in gpu_md and "max_memory_reserved" in gpu_md


def test_skip_flags_and_concurrency_parse():
    args = parse_args(["--device", "cpu", "--skip-levers", "--skip-concurrency", "--concurrency", "4,1,2,2"])
    assert args.skip_levers and args.skip_concurrency and args.concurrency == [1, 2, 4]
    assert args.lever_model == "lenet" and args.levers_compile is False


def test_a_failing_lever_or_worker_is_recorded_not_fatal(monkeypatch):
    args = parse_args(["--device", "cpu", "--steps", "1", "--windows", "1", "--warmup", "0", "--batch-size", "16",
                       "--concurrency", "1", "--concurrency-model", "lenet"])
    host = (torch.zeros(64, 3, 32, 32, dtype=torch.uint8), torch.zeros(64, dtype=torch.long))
    step = bench.augbench_step

    def no_autocast(*a, precision=None, **kw):
        if precision != "32-true":
            raise RuntimeError("no autocast here\nsecond line")
        return step(*a, precision=precision, **kw)

    monkeypatch.setattr(levers, "augbench_step", no_autocast)  # where the levers section looks it up
    rows = {r["lever"]: r for r in bench.bench_levers(args, torch.device("cpu"), host)["rows"]}
    assert rows["autocast"]["status"] == "failed: RuntimeError: no autocast here"
    assert rows["baseline"]["status"] == rows["channels_last"]["status"] == "measured"

    args.concurrency_model = "no-such-model"  # fails in the worker, before the barrier
    (row,) = bench.bench_concurrency(args, torch.device("cpu"), 64, timeout=120)["rows"]
    assert row["status"].startswith("failed: worker 0: ValueError") and "no-such-model" in row["status"]


# --- same optimiser and precision as training, both peak-memory figures --------------------------------------

HOST = (torch.zeros(64, 3, 32, 32, dtype=torch.uint8), torch.zeros(64, dtype=torch.long))
FLAGS = ("fused", "foreach")


def test_plain_loop_and_augbench_step_use_trainings_optimiser():
    cpu = torch.device("cpu")
    plain = bench.plain_step(HOST, bench.CIFAR, cpu, 16, "32-true")
    ours = bench.augbench_step("lenet", HOST, bench.CIFAR, cpu, [], 16)
    for step in (plain, ours):
        group = step.opt.param_groups[0]
        assert {k: group[k] for k in FLAGS} == sgd_flags("cpu")
        assert {k: group[k] for k in bench.OPTIM} == bench.OPTIM
        step(0)  # and it trains
    # on a GPU the builder gives the fused kernel, as training does (fused SGD accepts CPU parameters)
    net = torch.nn.Linear(2, 2)
    group = bench._sgd(net.parameters(), torch.device("cuda")).param_groups[0]
    assert {k: group[k] for k in FLAGS} == sgd_flags("cuda") == {"fused": True, "foreach": False}
    # the levers force the kernel either way
    for fused in (True, False):
        group = bench._sgd(net.parameters(), torch.device("cuda"), fused=fused).param_groups[0]
        assert (group["fused"], group["foreach"]) == (fused, not fused)


def test_precision_sets_autocast_and_scaler(monkeypatch):
    assert bench._autocast_dtype("bf16-mixed") is torch.bfloat16
    assert bench._autocast_dtype("16-mixed") is torch.float16
    assert bench._autocast_dtype("32-true") is None
    assert bench._scaler("bf16-mixed") is None and bench._scaler("32-true") is None

    made = []

    class Scaler:  # records what Lightning's 16-mixed does: scale, step, update
        def __init__(self, device):
            made.append(device)
            self.calls = []

        def scale(self, loss):
            self.calls.append("scale")
            return loss

        def step(self, opt):
            self.calls.append("step")
            opt.step()

        def update(self):
            self.calls.append("update")

    monkeypatch.setattr(torch.amp, "GradScaler", Scaler)
    cpu = torch.device("cpu")
    plain = bench.plain_step(HOST, bench.CIFAR, cpu, 16, "16-mixed")
    ours = bench.augbench_step("lenet", HOST, bench.CIFAR, cpu, [], 16, precision="16-mixed")
    assert made == ["cuda", "cuda"]
    for step in (plain, ours):
        step(0)
        assert step.scaler.calls == ["scale", "step", "update"]
    assert bench.plain_step(HOST, bench.CIFAR, cpu, 16, "bf16-mixed").scaler is None


def test_peak_memory_reports_allocated_and_reserved(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 100 * 2**20)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device=None: 160 * 2**20)
    peak = bench._peak_memory(torch.device("cuda"))
    assert peak == {"peak_allocated_mib": 100.0, "peak_reserved_mib": 160.0}
    assert peak["peak_reserved_mib"] >= peak["peak_allocated_mib"]
    assert bench._peak_cell(peak) == "100 / 160"
    assert "allocated" in bench.PEAK_CUDA_MD and "reserved (allocator cache included)" in bench.PEAK_CUDA_MD
    assert bench._peak_header("cuda") == "peak MiB allocated / reserved"
    assert set(bench._peak_memory(torch.device("cpu"))) == {"peak_rss_mib"}


def test_precision_option_parses_and_is_recorded(tmp_path, monkeypatch):
    args = parse_args(["--device", "cpu"])
    assert (args.precision_requested, args.precision) == ("auto", "32-true")
    assert parse_args(["--device", "cpu", "--precision", "bf16-mixed"]).precision == "bf16-mixed"
    with pytest.raises(SystemExit):
        parse_args(["--device", "cpu", "--precision", "16-mixed"])  # fp16 AMP with a scaler is CUDA's
    with pytest.raises(SystemExit):
        parse_args(["--device", "cpu", "--precision", "fp8"])

    trainers, amps = [], []
    trainer, amp = L.Trainer, bench._amp

    def recording_trainer(*a, **kw):
        trainers.append(kw["precision"])
        return trainer(*a, **kw)

    def recording_amp(device, precision):
        amps.append(precision)
        return amp(device, precision)

    monkeypatch.setattr(L, "Trainer", recording_trainer)
    for module in (pipelines, trainer_section):  # augbench's step and the plain loop
        monkeypatch.setattr(module, "_amp", recording_amp)
    result = main(TINY + ["--precision", "bf16-mixed", "--skip-levers", "--skip-concurrency",
                          "--data-root", str(tmp_path / "no-cifar"), "--out", str(tmp_path)])
    written = json.loads((tmp_path / "bench_cpu.json").read_text())
    assert written["meta"]["precision"] == written["settings"]["precision"] == "bf16-mixed"
    assert written["settings"]["precision_requested"] == "bf16-mixed"
    assert written["trainer_vs_plain"]["precision"] == "bf16-mixed"
    assert written["pipelines"][0]["augbench_precision"] == "bf16-mixed"
    assert trainers and set(trainers) == {"bf16-mixed"}  # the Trainer of section 3 and of the sync count
    assert amps and set(amps) == {"bf16-mixed"}  # augbench's step and the plain loop
    assert "bf16 autocast (bf16-mixed)" in (tmp_path / "bench_cpu.md").read_text()
    assert result["meta"]["precision"] == "bf16-mixed"

"""The benchmark runs end to end at tiny settings and writes what it promises (no timing assertions)."""

import json

import torch

from augbench import bench
from augbench.bench import main, parse_args, render_md

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
    for kind in ("augbench", "conventional"):
        assert row[kind]["images_per_s"] > 0 and row[kind]["s_per_epoch"] > 0 and row[kind]["peak_mib"] > 0
    assert all(v > 0 for v in written["grid_hours"].values())

    aug = written["augmentation"]
    assert [a["name"] for a in aug if a["regime"]] == ["baseline_plus", "cutout", "mixup", "cutmix"]
    assert all(a["augbench_images_per_s"] > 0 and a["baseline_images_per_s"] > 0 and a["speedup"] > 0 for a in aug)

    t = written["trainer_vs_plain"]
    assert t["batches_per_epoch"] == 2 and t["model"] == "lenet"
    assert all(t[f"{k}_s_per_epoch"] > 0 for k in ("plain", "module", "trainer")) and t["trainer_over_plain"] > 0

    syncs = written["host_syncs"]
    assert {"baseline", "baseline_plus", "cutout", "mixup", "cutmix", "trainer"} <= set(syncs)
    assert isinstance(syncs["no_sync_every_step"], bool)

    levers = written["levers"]
    assert levers["model"] == "lenet" and levers["compile"] is False
    status = {r["lever"]: r["status"] for r in levers["rows"]}
    assert list(status) == ["baseline", "channels_last", "cudnn_benchmark", "autocast", "fused_sgd", "compile",
                            "reduce_overhead"]
    for r in levers["rows"]:
        if r["lever"] in ("baseline", "channels_last", "autocast"):
            assert r["status"] == "measured" and r["images_per_s"] > 0 and r["s_per_epoch"] > 0
            assert r["speedup_vs_first"] > 0
    assert status["cudnn_benchmark"].startswith("n/a on cpu") and status["fused_sgd"].startswith("n/a on cpu")
    assert status["compile"] == "skipped (--levers-compile off)" and status["reduce_overhead"].startswith("n/a")
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


def test_skip_flags_and_concurrency_parse():
    args = parse_args(["--device", "cpu", "--skip-levers", "--skip-concurrency", "--concurrency", "4,1,2,2"])
    assert args.skip_levers and args.skip_concurrency and args.concurrency == [1, 2, 4]
    assert args.lever_model == "lenet" and args.levers_compile is False


def test_a_failing_lever_or_worker_is_recorded_not_fatal(monkeypatch):
    args = parse_args(["--device", "cpu", "--steps", "1", "--windows", "1", "--warmup", "0", "--batch-size", "16",
                       "--concurrency", "1", "--concurrency-model", "lenet"])
    host = (torch.zeros(64, 3, 32, 32, dtype=torch.uint8), torch.zeros(64, dtype=torch.long))
    step = bench.augbench_step

    def no_autocast(*a, amp=None, **kw):
        if amp:
            raise RuntimeError("no autocast here\nsecond line")
        return step(*a, amp=amp, **kw)

    monkeypatch.setattr(bench, "augbench_step", no_autocast)
    rows = {r["lever"]: r for r in bench.bench_levers(args, torch.device("cpu"), host)["rows"]}
    assert rows["autocast"]["status"] == "failed: RuntimeError: no autocast here"
    assert rows["baseline"]["status"] == rows["channels_last"]["status"] == "measured"

    args.concurrency_model = "no-such-model"  # fails in the worker, before the barrier
    (row,) = bench.bench_concurrency(args, torch.device("cpu"), 64, timeout=120)["rows"]
    assert row["status"].startswith("failed: worker 0: ValueError") and "no-such-model" in row["status"]

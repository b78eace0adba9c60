"""The benchmark runs end to end at tiny settings and writes what it promises (no timing assertions)."""

import json

from augbench.bench import main

TINY = ["--device", "cpu", "--models", "lenet", "--threads", "1", "--steps", "2", "--windows", "2",
        "--warmup", "1", "--workers", "1", "--epochs", "1", "--limit-batches", "2", "--batch-size", "32",
        "--aug-images", "64", "--aug-windows", "1", "--sync-steps", "2", "--fake-images", "320"]


def test_bench_writes_json_and_md(tmp_path):
    result = main(TINY + ["--data-root", str(tmp_path / "no-cifar"), "--out", str(tmp_path)])
    written = json.loads((tmp_path / "bench_cpu.json").read_text())
    assert written["targets"] == result["targets"]
    assert {"meta", "settings", "pipelines", "grid_hours", "augmentation", "trainer_vs_plain", "host_syncs",
            "targets"} <= set(written)
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

    md = (tmp_path / "bench_cpu.md").read_text()
    assert "FAKE CIFAR-10" in md and "GPU figures are unmeasured" in md
    assert "python -m augbench.bench --device cuda" in md

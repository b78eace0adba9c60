"""``python -m augbench.gpucheck`` on the CPU: the no-GPU answer, the --allow-cpu sections, failures recorded."""

import json
import os
import subprocess
import sys
import time

import pytest

from augbench import gpucheck


def gpucheck_cli(*args):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU even where there is one
    return subprocess.run([sys.executable, "-m", "augbench.gpucheck", *map(str, args)], capture_output=True,
                          text=True, timeout=600, env=env)


def test_without_cuda_it_says_so_in_one_line_and_exits_0(tmp_path):
    start = time.monotonic()
    r = gpucheck_cli("--out", tmp_path / "out")
    elapsed = time.monotonic() - start
    lines = (r.stdout + r.stderr).splitlines()
    assert r.returncode == 0, r.stderr
    assert len(lines) == 1 and "no CUDA GPU" in lines[0], lines
    assert elapsed < 15  # torch's import and nothing else
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # 56-75 s on 2 cores: four train.py processes of about 10 s start-up each
def test_cpu_sections_train_resume_and_write_the_report(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    r = gpucheck_cli("--allow-cpu", "--sections", "device,backbones,resume", "--models", "lenet",
                     "--out", out, "--work", work)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = json.loads((out / "gpu_check_cpu.json").read_text())
    sections = doc["sections"]
    assert list(sections) == ["device", "backbones", "resume"]
    assert all(s["status"] == "ok" and s["seconds"] > 0 for s in sections.values()), sections
    assert doc["ok"] is True and doc["device"] == "cpu" and "--allow-cpu" in doc["command"] and doc["date_utc"]
    assert sections["device"]["precision_auto"] == "32-true" and sections["device"]["torch"]

    lenet = sections["backbones"]["models"]["lenet"]
    assert lenet["status"] == "completed" and lenet["epochs"] == 2 and lenet["wall_seconds"] > 0
    assert 0 < lenet["eval_seconds"] < lenet["wall_seconds"]  # the standard suite ran, and is not training time
    assert lenet["images_per_second"] == pytest.approx(2 * 32 / (lenet["wall_seconds"] - lenet["eval_seconds"]),
                                                       rel=0.01)
    assert (lenet["precision"], lenet["device"]) == ("32-true", "cpu")

    resume = sections["resume"]
    assert resume["killed"] is True and resume["status_after_kill"] == "running"  # really killed mid-run
    assert resume["equal"] is True and resume["first_difference"] is None and resume["tensors_compared"] > 0
    # the relaunch resumed in the killed run's folder rather than starting a new one elsewhere
    assert (work / "resume" / "killed" / "last.ckpt").exists()

    md = (out / "gpu_check_cpu.md").read_text()
    assert "| resume | ok |" in md and "| backbones: lenet | completed |" in md
    assert "[     ok] resume" in r.stdout and "no section failed" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check_cpu.json", "gpu_check_cpu.md"]  # no temp files


def test_a_run_whose_evaluation_suite_failed_fails_its_section(tmp_path, monkeypatch):
    # as on an H200, where a deterministic run trained but its suite raised: the run is kept, the check fails
    out = tmp_path / "run"

    def train_py(cmd, log):
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps({"status": "completed", "epochs": 2, "wall_seconds": 9.0,
                                                      "eval_error": "RuntimeError: _bincount_cuda is refused"}))
        return 0

    monkeypatch.setattr(gpucheck, "run", train_py)
    c = gpucheck.Check(gpucheck.parse_args(["--allow-cpu", "--work", str(tmp_path)]), "cpu")
    with pytest.raises(gpucheck.SectionError, match="evaluation suite failed: RuntimeError: _bincount_cuda"):
        c.train(["train.py"], out)


def test_run_figures_leave_the_evaluation_suite_out_of_training_speed(tmp_path):
    c = gpucheck.Check(gpucheck.parse_args(["--allow-cpu", "--work", str(tmp_path)]), "cpu")
    fig = gpucheck.run_figures(c, {"status": "completed", "epochs": 2, "wall_seconds": 10.0, "eval": {"seconds": 4.0}})
    assert (fig["seconds_per_epoch"], fig["eval_seconds"]) == (3.0, 4.0)
    assert fig["images_per_second"] == pytest.approx(2 * c.images_per_epoch / 6.0, abs=0.1)


def test_a_failed_section_is_recorded_and_the_check_goes_on(tmp_path, monkeypatch, capsys):
    def broken(c, rec):
        rec["partial"] = "kept"
        raise RuntimeError("device exploded")

    monkeypatch.setitem(gpucheck.SECTION_FUNCTIONS, "device", broken)
    out = tmp_path / "out"
    rc = gpucheck.main(["--allow-cpu", "--sections", "device,tests,backbones,compile",
                        "--models", "nosuchmodel,lenet", "--out", str(out), "--work", str(tmp_path / "work")])
    assert rc == 1
    doc = json.loads((out / "gpu_check_cpu.json").read_text())
    s = doc["sections"]
    assert doc["ok"] is False and list(s) == ["device", "tests", "backbones", "compile"]
    assert s["device"] == {"status": "failed", "partial": "kept", "error": "RuntimeError: device exploded",
                           "summary": "RuntimeError: device exploded", "seconds": s["device"]["seconds"]}

    # the sections after it ran: pytest -m gpu, where on the CPU nothing runs on a GPU
    assert s["tests"]["status"] == "ok" and s["tests"]["returncode"] in (0, 5)
    assert s["tests"]["passed"] == s["tests"]["failed"] == 0
    assert s["tests"].get("deselected", 0) + s["tests"].get("skipped", 0) > 0

    # one backbone failing fails the section, and the next backbone still trains
    models = s["backbones"]["models"]
    assert s["backbones"]["status"] == "failed" and "nosuchmodel" in s["backbones"]["error"]
    assert models["nosuchmodel"]["status"] == "failed" and "train.py exited" in models["nosuchmodel"]["error"]
    assert "nosuchmodel" in models["nosuchmodel"]["summary"]  # the line of the log that says what is wrong
    assert models["lenet"]["status"] == "completed" and models["lenet"]["images_per_second"] > 0
    assert s["compile"]["status"] == "skipped" and "CUDA" in s["compile"]["summary"]

    md = (out / "gpu_check_cpu.md").read_text()
    assert "| device | failed |" in md and "## backbones: error" in md and "device exploded" in md
    printed = capsys.readouterr().out
    assert "[ failed] device" in printed and "gpu-check FAILED: device, backbones" in printed


def test_without_the_source_checkout_a_section_fails_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setattr(gpucheck, "REPO", tmp_path / "installed-only")
    rc = gpucheck.main(["--allow-cpu", "--sections", "backbones", "--models", "lenet",
                        "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")])
    doc = json.loads((tmp_path / "out" / "gpu_check_cpu.json").read_text())
    assert rc == 1 and "source checkout" in doc["sections"]["backbones"]["models"]["lenet"]["error"]


def test_helpers():
    assert gpucheck.slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert gpucheck.slug("Tesla V100-SXM2-16GB") == "tesla-v100-sxm2-16gb"
    assert gpucheck.pytest_counts("3 passed, 1 failed, 2 skipped, 200 deselected, 2 errors in 5.20s") == {
        "passed": 3, "failed": 1, "skipped": 2, "deselected": 200, "errors": 2}
    assert gpucheck.pytest_counts("no tests ran, 169 deselected in 15.95s") == {
        "passed": 0, "failed": 0, "deselected": 169}


def test_unknown_section_is_refused_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        gpucheck.main(["--sections", "device,gpu", "--out", str(tmp_path / "out")])
    assert e.value.code == 2 and "unknown section(s) gpu" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("given,extra", [(None, ["--windows", "3", "--no-levers-compile"]), ("", []),
                                         ("--windows 5 --models lenet", ["--windows", "5", "--models", "lenet"])])
def test_the_bench_section_passes_its_options_on(tmp_path, monkeypatch, given, extra):
    seen = []
    monkeypatch.setattr(gpucheck, "run", lambda cmd, log: seen.append(cmd) or 0)
    argv = ["--work", str(tmp_path), "--out", str(tmp_path / "out")]
    argv += [] if given is None else ["--bench-args", given]
    c, rec = gpucheck.Check(gpucheck.parse_args(argv), "NVIDIA H200"), {}
    gpucheck.section_bench(c, rec)
    (cmd,) = seen
    assert cmd[1:7] == ["-m", "augbench.bench", "--device", "cuda", "--out", str(tmp_path / "out")]
    assert cmd[7:] == extra and rec["args"] == extra and rec["returncode"] == 0


def test_the_compile_section_trains_each_model_scope_against_its_eager_run(tmp_path, monkeypatch):
    """--compiled picks the runs; each one's command carries its scope and CUDA graphs, its speed is set
    against the backbones section's eager run, and one failing run is recorded without stopping the rest."""
    argv = ["--work", str(tmp_path), "--out", str(tmp_path / "out"), "--compiled", "resnet18:step,densenet:step,vgg:backbone"]
    c, rec = gpucheck.Check(gpucheck.parse_args(argv), "NVIDIA H200"), {}
    c.results["backbones"] = {"models": {"resnet18": {"status": "completed", "seconds_per_epoch": 3.0},
                                         "densenet": {"status": "completed", "seconds_per_epoch": 15.0}}}
    monkeypatch.setattr(c, "fake_data", lambda size: tmp_path / "data")
    seen = []

    def train(cmd, out):
        seen.append(cmd)
        if "model=vgg" in cmd:
            raise gpucheck.SectionError("train.py exited 1 (out of memory)")
        return {"status": "completed", "epochs": 2, "wall_seconds": 4.0 if "model=resnet18" in cmd else 10.0,
                "precision": "bf16-mixed", "device": "NVIDIA H200"}

    monkeypatch.setattr(c, "train", train)
    with pytest.raises(gpucheck.SectionError, match="vgg backbone failed"):
        gpucheck.section_compile(c, rec)
    assert [[a for a in cmd if a.startswith("model")] for cmd in seen] == [
        ["model=resnet18", "model.compile=true", "model.compile_mode=reduce-overhead", "model.compile_scope=step"],
        ["model=densenet", "model.compile=true", "model.compile_mode=reduce-overhead", "model.compile_scope=step"],
        ["model=vgg", "model.compile=true", "model.compile_mode=reduce-overhead", "model.compile_scope=backbone"]]
    runs = rec["models"]
    assert runs["resnet18 step"]["speedup_vs_eager"] == 1.5 and runs["densenet step"]["speedup_vs_eager"] == 3.0
    assert runs["vgg backbone"]["status"] == "failed" and "out of memory" in runs["vgg backbone"]["error"]


def test_a_bad_compiled_entry_is_refused_by_name(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        gpucheck.main(["--compiled", "resnet18:graph", "--out", str(tmp_path / "out")])
    assert e.value.code == 2 and "--compiled entry 'resnet18:graph' is invalid" in capsys.readouterr().err

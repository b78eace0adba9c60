"""``python -m augbench.gpucheck``: the first command to run on a machine with a GPU.

    python -m augbench.gpucheck [--sections device,backbones] [--models lenet]   # -> benchmarks/gpu_check_<gpu>.*

Sections run one after another, those that train in subprocesses: a crash or an out-of-memory error is
recorded with the tail of its log and the check goes on (exit code 1 when any section failed):

  device     the GPU, compute capability, native bf16, memory, versions, what precision=auto picks
  tests      ``pytest -m gpu``: the test suite's GPU tests
  backbones  2 epochs of each backbone with CutMix on fake CIFAR of the real size: images/s
  resume     SIGKILL a deterministic run after its first checkpoint, relaunch it: bit-equal to an uninterrupted one?
  compile    under torch.compile with CUDA graphs (reduce-overhead), against the eager runs: ResNet-18's
             backbone, and ResNet-18's and DenseNet's whole step (model.compile_scope=step); ``--compiled``
  bench      ``python -m augbench.bench --device cuda`` with ``--bench-args`` (default: 3 windows, no compiled
             levers: the compile section times compilation; on an H200 the sections then took about 8 minutes
             together, a cold compile on top)

``--allow-cpu`` runs the same sections on the CPU with tiny sizes: a test of the check itself.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the source checkout: train.py, conf/, tests/
SECTIONS = ("device", "tests", "backbones", "resume", "compile", "bench")
MODELS = ("resnet18", "lenet", "densenet", "vgg")
RUN_TIMEOUT = 3600  # seconds for one subprocess: a hang is a failure, not a stuck check
BENCH_ARGS = "--windows 3 --no-levers-compile"  # measured on an H200: the bench section then takes about 2.5 min
NO_GPU = ("augbench gpu-check: no CUDA GPU visible on this machine; nothing to check "
          "(run it where `nvidia-smi` lists a GPU)")


class SectionError(RuntimeError):
    """A section failed; the message says why, with the tail of the log."""


class Skip(Exception):  # noqa: N818 - the section does not apply here; the message says why
    pass


class Check:
    """What the sections share: options, sizes, folders, the results so far."""

    def __init__(self, args, device_name: str):
        self.cpu, self.device_name, self.results, self._data = args.allow_cpu, device_name, {}, {}
        self.bench_args = shlex.split(args.bench_args)
        self.out, self.work, self.models = Path(args.out), Path(args.work), [m for m in args.models.split(",") if m]
        self.compiled = compiled_runs(args.compiled)
        if self.cpu:  # tiny: the logic of each section, not its figures
            self.sizes = {"full": (320, 64), "small": (320, 64)}
            self.limits = {"trainer.limit_train_batches": 2, "trainer.limit_val_batches": 1,
                           "trainer.limit_test_batches": 1, "data.batch_size": 16, "data.eval_batch_size": 32}
            self.images_per_epoch = 2 * 16
        else:  # conf/data holds 20% of the 50,000 out for validation: 40,000 training images an epoch
            self.sizes, self.limits, self.images_per_epoch = {"full": (50000, 10000), "small": (5000, 1000)}, {}, 40000

    def fake_data(self, size: str) -> Path:
        if size not in self._data:
            from augbench.fakedata import write_fake_cifar
            n_train, n_test = self.sizes[size]
            self._data[size] = write_fake_cifar(self.work / f"data_{size}", n_train=n_train, n_test=n_test,
                                                cifar100=False)
        return self._data[size]

    def train_cmd(self, model: str, root: Path, out: Path, *extra: str, **limits) -> list[str]:
        # paths quoted for Hydra's override grammar
        return [sys.executable, "train.py", f"model={model}", "aug=cutmix", f"data.root='{root}'",
                "data.verify=false", "data.download=false", f"trainer.accelerator={'cpu' if self.cpu else 'gpu'}",
                "trainer.enable_progress_bar=false", f"hydra.run.dir='{out}'",
                *(f"{k}={v}" for k, v in (self.limits | limits).items()), *extra]

    def train(self, cmd: list[str], out: Path, fresh: bool = True, log: str = "") -> dict:
        """Run ``cmd`` (into a fresh ``out``); the completed run's metrics.json, else SectionError."""
        if fresh:
            shutil.rmtree(out, ignore_errors=True)
        log = out.parent / f"{out.name}{log}.log"
        rc = run(cmd, log)
        try:
            metrics = json.loads((out / "metrics.json").read_text())
        except (OSError, ValueError):
            metrics = {}
        if rc != 0 or metrics.get("status") != "completed":
            raise SectionError(f"train.py exited {rc} ({cause(log)}), status {metrics.get('status')!r}; "
                               f"log {log}:\n{tail(log)}")
        if metrics.get("eval_error"):  # the run is kept, but a suite that fails on this device is a failure here
            raise SectionError(f"trained, but the evaluation suite failed: {metrics['eval_error']}; log {log}")
        return metrics


def run(cmd: list[str], log: Path) -> int:
    """``cmd`` from the repository root, stdout and stderr into ``log``; its return code."""
    if not (REPO / "train.py").is_file():
        raise SectionError(f"augbench's source checkout (train.py, conf/, tests/) is not at {REPO}: run the "
                           "check from a clone of the repository, with the package installed from it")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        try:
            return subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT).returncode
        except subprocess.TimeoutExpired:
            raise SectionError(f"`{shlex.join(cmd[1:])}` ran past {RUN_TIMEOUT} s; log {log}") from None


def tail(log: Path, n: int = 2500) -> str:
    return log.read_text(errors="replace")[-n:] if log.exists() else ""


def cause(log: Path) -> str:
    """The line of a failed run's log that says what went wrong, as far as a guess can tell."""
    lines = [line.strip() for line in tail(log, 20000).splitlines() if line.strip()]
    hits = [line for line in lines if re.search(r"Error|Exception|Could not|augbench:|out of memory", line)]
    return (hits or lines or ["no output"])[-1][:300]


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


def pytest_counts(line: str) -> dict:
    """``3 passed, 1 failed, 200 deselected in 5.1s`` -> {"passed": 3, "failed": 1, "deselected": 200}"""
    found = re.findall(r"(\d+) (passed|failed|skipped|deselected|xfailed|xpassed|error)", line)
    return {"passed": 0, "failed": 0} | {("errors" if what == "error" else what): int(n) for n, what in found}


# --- the sections: each fills ``rec`` with its figures and raises SectionError (or Skip) --------------

def section_device(c: Check, rec: dict) -> None:
    import torch
    rec.update(name=c.device_name, torch=torch.__version__, cuda=torch.version.cuda,
               cudnn=torch.backends.cudnn.version())
    if c.cpu:
        device, auto = torch.device("cpu"), "32-true"
    else:
        p = torch.cuda.get_device_properties(0)
        native = (p.major, p.minor) >= (8, 0)  # torch.cuda.is_bf16_supported() also counts emulation
        rec.update(capability=f"{p.major}.{p.minor}", native_bf16=native,
                   total_memory_gib=round(p.total_memory / 2**30, 1), gpus_visible=torch.cuda.device_count())
        device, auto = torch.device("cuda", 0), "bf16-mixed" if native else "16-mixed"
    from augbench.training import resolve_precision

    rec["precision_auto"] = resolve_precision("auto", device)  # what training picks, asked of training itself
    if rec["precision_auto"] != auto:
        raise SectionError(f"trainer.precision=auto picks {rec['precision_auto']}, but this device calls for {auto}")
    gpu = (f", compute {rec['capability']}, native bf16 {'yes' if rec['native_bf16'] else 'no'}, "
           f"{rec['total_memory_gib']} GiB" if not c.cpu else "")
    rec["summary"] = (f"{c.device_name}{gpu}; torch {rec['torch']}, CUDA {rec['cuda']}, cuDNN {rec['cudnn']}; "
                      f"precision=auto -> {rec['precision_auto']}")


def section_tests(c: Check, rec: dict) -> None:
    log = c.work / "tests.log"
    rc = run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"], log)
    last = ([line.strip("= ") for line in tail(log).splitlines() if line.strip()] or [""])[-1]
    rec.update(returncode=rc, summary=f"{last} (exit {rc})", **pytest_counts(last))
    if rc == 5:  # pytest collected nothing
        rec["note"] = "no test of the suite carries the gpu marker"
    elif rc != 0:
        raise SectionError(f"pytest -m gpu exited {rc}; log {log}:\n{tail(log)}")
    if c.cpu:
        rec["note"] = "on the CPU the gpu tests are skipped or deselected: nothing was tested on a GPU"


def section_backbones(c: Check, rec: dict) -> None:
    root = c.fake_data("full")
    rec.update(train_images_per_epoch=c.images_per_epoch, models={},
               note="images/s end to end: epochs x training images / (the run's wall_seconds less its evaluation "
                    "suite's seconds): training, validation and the final test; process start, data loading and "
                    "the suite excluded")
    for m in c.models:
        out = c.work / "backbones" / m
        rec["models"][m] = attempt(c, c.train_cmd(m, root, out, "trainer.max_epochs=2"), out)
        print(f"{'':20}{m}: {rec['models'][m]['summary']}", flush=True)
    raise_if_any_failed(rec["models"])
    if not c.cpu and "resnet18" in rec["models"]:  # what exact resume costs: deterministic mode, no cudnn.benchmark
        out = c.work / "backbones" / "resnet18-deterministic"
        det = run_figures(c, c.train(c.train_cmd("resnet18", root, out, "trainer.max_epochs=2",
                                                 "trainer.deterministic=true"), out))
        det["slowdown_vs_default"] = round(det["seconds_per_epoch"] / rec["models"]["resnet18"]["seconds_per_epoch"], 2)
        rec["resnet18_deterministic"] = det
    rec["summary"] = "; ".join(f"{m} {x['images_per_second']:,.0f} img/s" for m, x in rec["models"].items())


def attempt(c: Check, cmd: list[str], out: Path) -> dict:
    """One run's figures, or its failure recorded: one run failing (out of memory, say) stops no other."""
    try:
        return run_figures(c, c.train(cmd, out))
    except Exception as e:  # noqa: BLE001
        error = describe(e)
        return {"status": "failed", "error": error, "summary": "FAILED " + first_line(error)}


def raise_if_any_failed(runs: dict) -> None:
    if failed := [name for name, r in runs.items() if r["status"] != "completed"]:
        raise SectionError(f"{', '.join(failed)} failed; {failed[0]}: " + runs[failed[0]]["error"])


def run_figures(c: Check, metrics: dict) -> dict:
    epochs, wall = metrics.get("epochs") or 0, metrics.get("wall_seconds") or 0
    suite = (metrics.get("eval") or {}).get("seconds") or 0  # the evaluation suite runs after the test pass
    train = max(wall - suite, 1e-9)
    per_epoch, ips = round(train / max(epochs, 1), 2), round(epochs * c.images_per_epoch / train, 1)
    return {"status": metrics["status"], "epochs": epochs, "wall_seconds": wall, "eval_seconds": suite,
            "seconds_per_epoch": per_epoch, "images_per_second": ips,
            **{k: metrics.get(k) for k in ("precision", "device", "test_acc1")},
            "summary": f"{per_epoch} s/epoch, {ips:,.0f} img/s, {metrics.get('precision')} on {metrics.get('device')}"}


def section_resume(c: Check, rec: dict) -> None:
    import torch
    root, work = c.fake_data("small"), c.work / "resume"
    a, b = work / "uninterrupted", work / "killed"
    args = ("trainer.max_epochs=3", "trainer.deterministic=true")
    limits = {"trainer.limit_train_batches": 4} if c.cpu else {}
    cmd = lambda out: c.train_cmd("lenet", root, out, *args, **limits)  # noqa: E731
    ref = c.train(cmd(a), a)
    shutil.rmtree(b, ignore_errors=True)
    b.mkdir(parents=True)
    with open(work / "killed.log", "w") as f:
        proc = subprocess.Popen(cmd(b), cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + RUN_TIMEOUT
        while proc.poll() is None and not (b / "last.ckpt").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.kill()  # SIGKILL, as a preempted machine: no cleanup
        rc = proc.wait()
    rec["killed"] = rc == -9
    try:
        rec["killed_after_epoch"] = torch.load(b / "last.ckpt", map_location="cpu", weights_only=False)["epoch"]
        rec["status_after_kill"] = json.loads((b / "metrics.json").read_text())["status"]
    except Exception:  # noqa: BLE001 - killed in the middle of a write: a detail, not a failure
        pass
    if not rec["killed"]:
        raise SectionError(f"the run ended (exit {rc}) before it was killed:\n{tail(work / 'killed.log')}")
    got = c.train(cmd(b), b, fresh=False, log=".relaunch")  # the same command again: it resumes from last.ckpt
    sa, sb = (torch.load(x / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"] for x in (a, b))
    diff = next((k for k in ("history", "test_acc1") if ref.get(k) != got.get(k)), None)
    diff = diff or next((f"state_dict.{k}" for k in sorted(sa.keys() | sb.keys())
                         if k not in sa or k not in sb or not torch.equal(sa[k], sb[k])), None)
    rec.update(tensors_compared=len(sa), first_difference=diff, equal=diff is None)
    if diff:
        raise SectionError(f"the resumed run differs from the uninterrupted one at {diff}")
    rec["summary"] = (f"killed after the checkpoint of epoch {rec.get('killed_after_epoch')} (from 0), relaunched: "
                      f"bit-equal to the uninterrupted run ({len(sa)} tensors, history, test_acc1)")


COMPILED = "resnet18:backbone,resnet18:step,densenet:step"  # model:model.compile_scope, of the compile section


def section_compile(c: Check, rec: dict) -> None:
    if c.cpu:
        raise Skip("CUDA graphs (reduce-overhead) need CUDA, and compiling ResNet-18 takes minutes on a few cores")
    root = c.fake_data("full")
    eager = c.results.get("backbones", {}).get("models", {})
    rec.update(models={}, note="reduce-overhead (CUDA graphs), 2 epochs; the first epoch's time includes compiling")
    for model, scope in c.compiled:
        name, out = f"{model} {scope}", c.work / "compile" / f"{model}-{scope}"
        cmd = c.train_cmd(model, root, out, "trainer.max_epochs=2", "model.compile=true",
                          "model.compile_mode=reduce-overhead", f"model.compile_scope={scope}")
        r = attempt(c, cmd, out)
        if r["status"] == "completed" and eager.get(model, {}).get("status") == "completed":
            r["eager_seconds_per_epoch"] = eager[model]["seconds_per_epoch"]
            r["speedup_vs_eager"] = round(eager[model]["seconds_per_epoch"] / max(r["seconds_per_epoch"], 1e-9), 2)
            r["summary"] += f", {r['speedup_vs_eager']}x the eager run"
        rec["models"][name] = r
        print(f"{'':20}{name}: {r['summary']}", flush=True)
    raise_if_any_failed(rec["models"])
    rec["summary"] = "; ".join(f"{m} {x['seconds_per_epoch']} s/epoch" for m, x in rec["models"].items())


def section_bench(c: Check, rec: dict) -> None:
    if c.cpu:
        raise Skip("the benchmark takes minutes on the CPU; run `python -m augbench.bench` for its CPU figures")
    log = c.work / "bench.log"
    rc = run([sys.executable, "-m", "augbench.bench", "--device", "cuda", "--out", str(c.out), *c.bench_args], log)
    rec.update(returncode=rc, args=c.bench_args, tail=tail(log, 1500),
               summary=f"exit {rc}, wrote {c.out / 'bench_cuda.{json,md}'} ({shlex.join(c.bench_args) or 'defaults'})")
    if rc != 0:
        raise SectionError(f"augbench.bench exited {rc}; log {log}:\n{tail(log)}")


SECTION_FUNCTIONS = {name: globals()[f"section_{name}"] for name in SECTIONS}  # section_device, ...


# --- the report and the runner -----------------------------------------------------------------------

def describe(e: Exception) -> str:
    return (str(e) if isinstance(e, SectionError) else f"{type(e).__name__}: {e}")[:4000]


def first_line(text: str | None) -> str:
    return ((text or "").strip().splitlines() or [""])[0][:200]


def markdown(doc: dict) -> str:
    lines = [f"# augbench gpu-check: {doc['device']}", "",
             f"{doc['mode']}; {doc['date_utc']}; commit `{doc['git_commit']}`; `{doc['command']}`", "",
             "| section | status | seconds | result |", "|---|---|---|---|"]
    row = lambda name, r: (f"| {name} | {r['status']} | {r.get('seconds', '')} | "  # noqa: E731
                           f"{r.get('summary', '').replace('|', '/')} |")
    for name, r in doc["sections"].items():
        lines += [row(name, r)] + [row(f"{name}: {m}", x) for m, x in r.get("models", {}).items()]
    lines += [f"\nbackbones: 2 epochs with CutMix on fake CIFAR; {r['note']}" for r in doc["sections"].values()
              if "models" in r]
    for name, r in doc["sections"].items():
        if r.get("error"):
            lines += ["", f"## {name}: error", "", "```", r["error"].strip(), "```"]
    return "\n".join(lines) + "\n"


def write_report(c: Check, doc: dict) -> Path:
    from augbench.runs import atomic_write
    c.out.mkdir(parents=True, exist_ok=True)
    base = c.out / f"gpu_check_{slug(c.device_name)}"
    data, md = json.dumps(doc, indent=2, default=str).encode(), markdown(doc).encode()
    atomic_write(base.with_suffix(".json"), lambda f: f.write(data))
    atomic_write(base.with_suffix(".md"), lambda f: f.write(md))
    return base


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):  # no git, or not a git checkout
        return None


def compiled_runs(spec: str) -> list[tuple[str, str]]:
    """``model:scope,...`` (the compile section's runs) as pairs; ValueError names a bad entry."""
    runs = []
    for entry in filter(None, spec.split(",")):
        model, _, scope = entry.partition(":")
        if model not in MODELS or scope not in ("backbone", "step"):
            raise ValueError(f"--compiled entry {entry!r} is invalid: must be model:scope with a model of "
                             f"{', '.join(MODELS)} and a scope of backbone, step")
        runs.append((model, scope))
    return runs


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m augbench.gpucheck", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(REPO / "benchmarks"), help="where gpu_check_<device>.{json,md} go "
                   "(default: benchmarks/ of the checkout)")
    p.add_argument("--work", help="scratch folder: fake data, runs, logs (default: a new temporary folder)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--models", default=",".join(MODELS), help="backbones of the backbones section")
    p.add_argument("--compiled", default=COMPILED, help="runs of the compile section, model:model.compile_scope "
                   f"(default: {COMPILED})")
    p.add_argument("--device", default="cuda", choices=["cuda"])
    p.add_argument("--bench-args", default=BENCH_ARGS, help="options of the bench section's `python -m augbench.bench "
                   f"--device cuda` (default: {BENCH_ARGS!r}; '' for the benchmark's own defaults)")
    p.add_argument("--allow-cpu", action="store_true", help="run on the CPU with tiny sizes (tests the check itself)")
    args = p.parse_args(argv)
    if unknown := [s for s in args.sections.split(",") if s not in SECTIONS]:
        p.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    try:
        compiled_runs(args.compiled)
    except ValueError as e:
        p.error(str(e))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch  # after the arguments: --help and argument errors stay instant
    if not args.allow_cpu and not torch.cuda.is_available():
        print(NO_GPU)
        return 0
    temp_work, args.work = args.work is None, args.work or tempfile.mkdtemp(prefix="augbench-gpucheck-")
    c = Check(args, "cpu" if args.allow_cpu else torch.cuda.get_device_name(0))
    wanted = [s for s in SECTIONS if s in args.sections.split(",")]
    command = shlex.join(["python", "-m", "augbench.gpucheck", *(sys.argv[1:] if argv is None else argv)])
    doc = {"check": "augbench gpu-check", "device": c.device_name,
           "mode": "CPU with tiny sizes (--allow-cpu: a test of the check, no figures)" if c.cpu else "cuda",
           "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
           "git_commit": git_commit(), "command": command, "ok": None, "sections": c.results}
    print(f"augbench gpu-check on {c.device_name}: {', '.join(wanted)}; work folder {c.work}", flush=True)
    for name in wanted:
        rec, start = c.results.setdefault(name, {"status": "running"}), time.monotonic()
        try:
            SECTION_FUNCTIONS[name](c, rec)
            rec["status"] = "ok"
        except Skip as e:
            rec.update(status="skipped", summary=str(e))
        except Exception as e:  # noqa: BLE001 - any failure of one section is recorded; the check goes on
            rec.update(status="failed", error=describe(e))
            rec["summary"] = first_line(rec["error"])
        rec["seconds"] = round(time.monotonic() - start, 1)
        print(f"[{rec['status']:>7}] {name:<9} {rec['seconds']:7.1f} s  {rec.get('summary', '')}", flush=True)
        doc["ok"] = all(r["status"] != "failed" for r in c.results.values())
        base = write_report(c, doc)  # after every section: an interrupted check keeps what it measured
    failed = [n for n, r in c.results.items() if r["status"] == "failed"]
    if temp_work and not failed:
        shutil.rmtree(c.work, ignore_errors=True)
    print(f"wrote {base}.json and {base}.md")
    print(f"gpu-check FAILED: {', '.join(failed)} (logs in {c.work})" if failed else "gpu-check: no section failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

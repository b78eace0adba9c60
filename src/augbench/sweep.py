"""Sweep glue: what to launch, which GPU a job takes, and the summary at the end.

One failing job never takes a multirun down; the sweep ends by listing what did not complete.
This module imports no torch or Lightning at import time: Hydra loads it (through the sweeper
plugin) before every command, and a bad value must be refused in about a second.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from augbench.config import validate
from augbench.errors import ConfigError, DatasetError, RunExistsError, RunLockedError
from augbench.runlock import live_owner
from augbench.runs import completed_run, describe_status, read_metrics, write_metrics
from augbench.slurm import watch_requeue_signal

log = logging.getLogger("augbench")

# mistakes in how a run was asked for: reported as one line, and they stop a sweep at once
USER_ERRORS = (ConfigError, DatasetError, RunExistsError)
# what the command line reports in one line (a locked folder stops a single run, not a sweep)
CLI_ERRORS = (*USER_ERRORS, RunLockedError)

# runs this process's sweep left to other processes that were training them: (folder, owner)
LEFT_TO_OTHERS: list[tuple[str, str]] = []


def _multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_job(cfg: DictConfig) -> dict | None:
    """Train one job. In a multirun a failure is recorded in the job's folder and the sweep goes on;
    config errors, missing or corrupt data and folder clashes still stop the sweep at once: every later
    job would hit them too. A run folder that another live process is training is left to it."""
    validate(cfg)  # before torch is imported: a bad value costs a second, not ten
    out, multirun = Path(cfg.output_dir), _multirun()
    if not multirun and (owner := live_owner(out, cfg.run_lock.stale_after_s)):  # before the slow imports
        raise RunLockedError(f"{out} is in use: being trained by {owner.describe()}. "
                             "Wait for it to finish, or stop that process", owner.describe())
    from augbench.training import train

    if not multirun:
        return train(cfg)
    watch_requeue_signal()  # under SLURM: a time-limit requeue is told apart from a Ctrl-C
    try:
        with gpu_slot(cfg) as gpu:
            return train(cfg, gpu=gpu)
    except RunLockedError as e:  # another process took it after the sweep looked: theirs to finish
        log.warning("%s", e)
        return {"status": "running_elsewhere", "folder": str(out), "owner": e.owner or str(e)}
    except (*USER_ERRORS, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - any failure of one job
        log.error("job %s failed: %s: %s", out, type(e).__name__, e)
        record_early_failure(out, cfg, e)
        return None


def record_early_failure(out: Path, cfg: DictConfig, e: BaseException) -> None:
    """A job that failed before its run wrote metrics.json still leaves ``status: failed`` there, so
    the sweep summary counts it; a finished or already recorded run is left as it is."""
    status = (read_metrics(out) or {}).get("status")
    if status in ("completed", "failed"):
        return
    out.mkdir(parents=True, exist_ok=True)
    write_metrics(out, {"status": "failed", "error": f"{type(e).__name__}: {e}",
                        "config": OmegaConf.to_container(cfg, resolve=True)})


@contextmanager
def gpu_slot(cfg: DictConfig):
    """The GPU index this job trains on, held for the whole job (None: leave it to Lightning).

    Jobs running side by side on one machine take a free slot (``runs_per_gpu`` per GPU) under a
    file lock and give it back when they end, so busy GPUs are skipped and none gets more runs than
    asked. Under SLURM the scheduler hands out GPUs, and a CPU run needs none."""
    import torch

    if cfg.trainer.accelerator == "cpu" or "SLURM_JOB_ID" in os.environ or not torch.cuda.is_available():
        yield None
        return
    from augbench.gpuslots import acquire_gpu_slot

    with acquire_gpu_slot(torch.cuda.device_count(), cfg.runs_per_gpu, cfg.gpu_slot_dir) as slot:
        log.info("%s: GPU %s (slot %d)", cfg.output_dir, slot.gpu_id, slot.slot)
        yield slot.index


# --- before launching: compose, check, skip -----------------------------------------------------

_RANGE = re.compile(r"^(?P<key>\+{0,2}[\w.]+)=(?P<a>\d+)-(?P<b>\d+)$")


def is_range(arg: str) -> bool:
    return _RANGE.match(arg) is not None


def expand_ranges(arguments: list[str], is_int_key) -> list[str]:
    """``seed=0-4`` → ``seed=range(0,5)``: an inclusive integer range, for keys whose value is an integer.

    ``is_int_key(key)`` says whether a key holds an integer. A reversed range stops the sweep in one line;
    anything else is left for the config checks to judge (``seed=a-b`` is not an integer)."""
    expanded = []
    for arg in arguments:
        m = _RANGE.match(arg)
        if m and is_int_key(m["key"].lstrip("+")):
            a, b = int(m["a"]), int(m["b"])
            if a > b:
                sys.exit(f"augbench: {arg} is an empty range: write A-B with A <= B, e.g. {m['key']}={b}-{a}")
            arg = f"{m['key']}=range({a},{b + 1})"
        expanded.append(arg)
    return expanded


class JobComposer:
    """The config each job of a sweep receives, composed once per combination of config groups.

    Hydra composes a job's config from scratch (about 0.1 s); a 200-run grid has 40 combinations of
    data/model/aug and 200 seeds. Composing each combination once and applying the value overrides
    (``seed=3``, ``aug.prob=0.5``) on top, as Hydra itself applies them after composing, gives the
    same config in a fraction of the time."""

    def __init__(self, config_loader, master_config: DictConfig):
        self.loader, self.master = config_loader, master_config
        self.parser = OverridesParser.create()
        self.cache: dict[tuple, DictConfig] = {}

    def _is_value_override(self, o) -> bool:
        return (not o.is_hydra_override() and not isinstance(o.value(), dict)
                and not self.loader.repository.group_exists(o.key_or_group))

    def compose(self, overrides: list[str]) -> tuple[DictConfig, Path]:
        """(the job's config without ``hydra``, with ``output_dir`` set; the job's folder)."""
        from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname

        parsed = self.parser.parse_overrides(list(overrides))
        is_value = [self._is_value_override(o) for o in parsed]
        values = [o for o, v in zip(parsed, is_value) if v]
        groups = tuple(o.input_line for o, v in zip(parsed, is_value) if not v)
        if groups not in self.cache:
            self.cache[groups] = self.loader.load_sweep_config(master_config=self.master,
                                                               sweep_overrides=list(groups))
        cfg = copy.deepcopy(self.cache[groups])
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        with open_dict(cfg.hydra):
            cfg.hydra.overrides.task = list(overrides)
            job = cfg.hydra.job.config.override_dirname
            cfg.hydra.job.override_dirname = get_overrides_dirname(
                overrides=parsed, kv_sep=job.kv_sep, item_sep=job.item_sep, exclude_keys=job.exclude_keys)
        folder = Path(cfg.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir)
        with open_dict(cfg):
            del cfg["hydra"]  # what the job itself receives
            cfg.output_dir = str(folder)
        return cfg, folder


def pending_jobs(batch, config_loader, master_config: DictConfig) -> list:
    """The jobs of a sweep batch that still have to run.

    Composes and checks every job's config first, so that a bad value anywhere in the sweep stops
    it before the first job starts; leaves out jobs whose fixed folder already holds a completed
    run of the same config (a relaunched grid launches only what is unfinished), and jobs whose folder
    another live process is training (the same grid started on two machines divides the work)."""
    composer = JobComposer(config_loader, master_config)
    todo, done = [], 0
    for overrides in batch:
        cfg, folder = composer.compose(overrides)
        try:
            validate(cfg)
            finished = completed_run(folder, OmegaConf.to_container(cfg, resolve=True))
        except (ConfigError, RunExistsError) as e:
            sys.exit(f"augbench: {' '.join(overrides)}: {e}")  # one line, nothing launched
        if finished:
            done += 1
        elif owner := live_owner(folder, cfg.run_lock.stale_after_s):
            LEFT_TO_OTHERS.append((str(folder), owner.describe()))
        else:
            todo.append(overrides)
    elsewhere = len(batch) - len(todo) - done
    if done or elsewhere:
        busy = f", {elsewhere} being trained by another process" if elsewhere else ""
        print(f"augbench: {done} of {len(batch)} runs already completed{busy}, skipped; launching {len(todo)}",
              flush=True)
    return todo


def note_results(results) -> None:
    """Record the jobs that found their folder taken by another process once they started."""
    for r in results:
        value = getattr(r, "_return_value", None)
        if isinstance(value, dict) and value.get("status") == "running_elsewhere":
            LEFT_TO_OTHERS.append((value["folder"], value["owner"]))


class SweepSummary(Callback):
    """At the end of a multirun: list the jobs that did not complete and exit non-zero if any; name
    the runs left to other processes."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        stale_after = OmegaConf.select(config, "run_lock.stale_after_s", default=600)
        left = {Path(f).resolve(): owner for f, owner in LEFT_TO_OTHERS}
        runs = sorted(p.parent for p in sweep_dir.rglob("metrics.json"))
        bad, elsewhere, collapsed = [], [], []
        for r in runs:
            m = read_metrics(r) or {}
            if m.get("status") in ("completed", "fast_dev_run"):
                if m.get("collapsed"):
                    collapsed.append(f"  {_rel(r, sweep_dir)}: {m.get('collapse_reason')}")
                continue
            if r.resolve() in left or live_owner(r, stale_after):  # another process is on it
                elsewhere.append(r)
            else:
                bad.append((r, m))
        if left:
            lines = [f"  {_rel(Path(f), sweep_dir)}: {_state(Path(f))} (taken by {owner})" for f, owner in left.items()]
            print(f"augbench: {len(left)} runs were left to another process that was training them:\n"
                  + "\n".join(lines), flush=True)
        if collapsed:  # completed, so not a failure; but its numbers are not the regime's
            print(f"augbench: {len(collapsed)} completed runs collapsed (never left chance); the report leaves them "
                  "out of its means unless --keep-collapsed:\n" + "\n".join(collapsed), flush=True)
        if not bad:
            if elsewhere:
                print(f"augbench: sweep finished: {len(runs) - len(elsewhere)} of {len(runs)} runs in {sweep_dir} "
                      f"completed, none failed; {len(elsewhere)} still running elsewhere", flush=True)
            else:
                print(f"augbench: sweep finished: all {len(runs)} runs in {sweep_dir} completed", flush=True)
            return
        lines = [f"  {_rel(r, sweep_dir)}: {describe_status(m)}" for r, m in bad]
        print(f"{len(bad)} of {len(runs)} runs in {sweep_dir} did not complete:\n" + "\n".join(lines),
              file=sys.stderr)
        sys.exit(1)


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _state(folder: Path) -> str:
    m = read_metrics(folder) or {}
    return "completed there" if m.get("status") == "completed" else "still running there"

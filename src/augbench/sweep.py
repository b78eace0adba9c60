"""Sweep glue: one failing job never takes a multirun down, and the sweep ends by listing failures."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from augbench.config import ConfigError, validate
from augbench.data import DatasetError
from augbench.runs import read_metrics
from augbench.training import RunExistsError, completed_run, train

log = logging.getLogger("augbench")

# mistakes in how a run was asked for: reported as one line, and they stop a sweep at once
USER_ERRORS = (ConfigError, DatasetError, RunExistsError)


def run_job(cfg: DictConfig) -> dict | None:
    """Train one job. In a multirun a failure is recorded in the job's folder and the sweep goes on;
    config errors, missing or corrupt data and folder clashes still stop the sweep at once: every later
    job would hit them too."""
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    if not multirun:
        return train(cfg)
    try:
        return train(cfg, gpu=_gpu_for_job(HydraConfig.get().job.num))
    except (*USER_ERRORS, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - any failure of one job
        log.error("job %s failed: %s: %s", cfg.output_dir, type(e).__name__, e)
        return None


def pending_jobs(batch, config_loader, master_config: DictConfig) -> list:
    """The jobs of a sweep batch that still have to run.

    Composes and checks every job's config first, so that a bad value anywhere in the sweep stops
    it before the first job starts, and leaves out jobs whose fixed folder already holds a completed
    run of the same config: a relaunched grid launches only what is unfinished."""
    todo, done = [], 0
    for overrides in batch:
        cfg = config_loader.load_sweep_config(master_config=master_config, sweep_overrides=list(overrides))
        folder = Path(cfg.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir)
        with open_dict(cfg):
            del cfg["hydra"]  # what the job itself receives
            cfg.output_dir = str(folder)
        try:
            validate(cfg)
            finished = completed_run(folder, OmegaConf.to_container(cfg, resolve=True))
        except (ConfigError, RunExistsError) as e:
            sys.exit(f"augbench: {' '.join(overrides)}: {e}")  # one line, nothing launched
        if finished:
            done += 1
        else:
            todo.append(overrides)
    if done:
        print(f"augbench: {done} of {len(batch)} runs already completed, skipped; launching {len(todo)}",
              flush=True)
    return todo


def _gpu_for_job(job_num: int) -> int | None:
    """Several jobs on a machine with several GPUs (joblib launcher): spread them by job number."""
    import torch

    n = torch.cuda.device_count()
    return job_num % n if n > 1 else None


class SweepSummary(Callback):
    """At the end of a multirun: list the jobs that did not complete and exit non-zero if any."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        runs = sorted(p.parent for p in sweep_dir.rglob("metrics.json"))
        bad = [(r, read_metrics(r) or {}) for r in runs]
        bad = [(r, m) for r, m in bad if m.get("status") not in ("completed", "fast_dev_run")]
        if not bad:
            print(f"augbench: sweep finished: all {len(runs)} runs in {sweep_dir} completed", flush=True)
            return
        lines = [f"  {r.relative_to(sweep_dir)}: {m.get('status', '?')}: {str(m.get('error', '')).splitlines()[:1]}"
                 for r, m in bad]
        print(f"{len(bad)} of {len(runs)} runs in {sweep_dir} did not complete:\n" + "\n".join(lines),
              file=sys.stderr)
        sys.exit(1)

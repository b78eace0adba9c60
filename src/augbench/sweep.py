"""Sweep glue: one failing job never takes a multirun down, and the sweep ends by listing failures."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from augbench.config import ConfigError
from augbench.data import DatasetError
from augbench.runs import read_metrics
from augbench.training import RunExistsError, train

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
            log.info("sweep finished: %d runs completed in %s", len(runs), sweep_dir)
            return
        lines = [f"  {r.relative_to(sweep_dir)}: {m.get('status', '?')}: {str(m.get('error', '')).splitlines()[:1]}"
                 for r, m in bad]
        print(f"{len(bad)} of {len(runs)} runs in {sweep_dir} did not complete:\n" + "\n".join(lines),
              file=sys.stderr)
        sys.exit(1)

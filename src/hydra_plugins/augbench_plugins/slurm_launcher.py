"""Hydra's submitit SLURM launcher, except that a job which ends without a result (``scancel``, out of
memory, a lost node, out of requeues) is recorded in its run folder and the sweep's summary instead of
ending the sweep with a traceback (``hydra/launcher=slurm``).

Hydra imports this module before every command: it imports nothing heavy.
"""

from __future__ import annotations

import sys
from unittest import mock

from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from omegaconf import OmegaConf

from augbench.slurm import record_lost_job, signal_delay, slurm_state

# conf/hydra/launcher/slurm.yaml: signal_delay_s follows the time limit unless set
OmegaConf.register_new_resolver("augbench.signal_delay", signal_delay, replace=True)


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    def launch(self, job_overrides, initial_job_idx):
        import submitit

        submit = submitit.AutoExecutor.map_array

        def map_array(executor, fn, *iterables):
            try:
                submitted = submit(executor, fn, *iterables)
            except submitit.core.utils.FailedJobError as e:  # sbatch refused the array: one line, no traceback
                lines = [line.strip() for line in str(e).splitlines() if "error" in line.lower()]
                sys.exit(f"augbench: SLURM refused the jobs ({(lines or [str(e)])[-1]}); check hydra.launcher."
                         "partition, gpus_per_node (or gres), cpus_per_task and mem_gb against your cluster")
            # the parent waits on job.results(), which raises for a job without a result
            return [_Settled(job, overrides, self) for job, overrides in zip(submitted, iterables[0])]

        with mock.patch.object(submitit.AutoExecutor, "map_array", map_array):
            return super().launch(job_overrides, initial_job_idx)


class _Settled:
    """A submitted job whose ``results()`` always returns: the job's own, or a record of how it ended."""

    def __init__(self, job, overrides, launcher: SlurmLauncher):
        self.job, self.overrides, self.launcher = job, list(overrides), launcher

    def results(self):
        from submitit.core.utils import FailedJobError, UncompletedJobError

        try:
            return self.job.results()
        except UncompletedJobError as e:  # FailedJobError too: the job raised, its traceback in the message
            reason = None
            if isinstance(e, FailedJobError):
                reason = next((line.strip() for line in reversed(str(e).splitlines()) if line.strip()), None)
            from augbench.sweep import JobComposer

            composer = JobComposer(self.launcher.hydra_context.config_loader, self.launcher.config)
            cfg, folder = composer.compose(self.overrides)
            state = slurm_state(self.job)
            stderr = getattr(getattr(self.job, "paths", None), "stderr", None)
            metrics = record_lost_job(folder, OmegaConf.to_container(cfg, resolve=True), str(self.job.job_id),
                                      state, str(stderr) if stderr else None, reason)
            value = {"status": metrics["status"], "slurm_state": state, "folder": str(folder)}
            return [JobReturn(overrides=self.overrides, status=JobStatus.COMPLETED, _return_value=value)]

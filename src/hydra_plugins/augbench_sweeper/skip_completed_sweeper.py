"""Hydra's basic sweeper, minus the jobs that already completed (``hydra/sweeper=skip_completed``)."""

from __future__ import annotations

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

from augbench.sweep import pending_jobs


class SkipCompletedSweeper(BasicSweeper):
    """Checks every job's config before any starts, and never launches a job whose folder holds a
    completed run: relaunching a finished grid takes the time of composing its configs, not of
    starting 200 jobs (or of queueing them on a cluster)."""

    def setup(self, *, hydra_context, task_function, config) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        launch = self.launcher.launch
        # nothing left to run: launchers such as submitit cannot launch an empty batch
        self.launcher.launch = lambda batch, initial_job_idx: launch(batch, initial_job_idx) if batch else []

    def get_job_batch(self):
        return pending_jobs(super().get_job_batch(), self.hydra_context.config_loader, self.config)

    def validate_batch_is_legal(self, batch) -> None:
        """Nothing left to do: ``pending_jobs`` has composed and checked every job of the batch."""

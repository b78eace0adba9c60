"""Hydra's basic sweeper, minus the jobs that already completed (``hydra/sweeper=skip_completed``).

Hydra imports this module before every command, sweep or not: it imports nothing heavy."""

from __future__ import annotations

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import OmegaConf

from augbench.sweep import expand_ranges, is_range, note_results, pending_jobs


class SkipCompletedSweeper(BasicSweeper):
    """Checks every job's config before any starts, and never launches a job whose folder holds a
    completed run or is being trained by another process: relaunching a finished grid takes the time
    of composing its configs, not of starting 200 jobs (or of queueing them on a cluster). Integer
    keys also sweep inclusive ranges: ``seed=0-4``."""

    def setup(self, *, hydra_context, task_function, config) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        launch = self.launcher.launch

        def launch_pending(batch, initial_job_idx):
            if not batch:  # nothing left to run: launchers such as submitit cannot launch an empty batch
                return []
            results = launch(batch, initial_job_idx)
            note_results(results)
            return results

        self.launcher.launch = launch_pending

    def sweep(self, arguments):
        self._arguments = list(arguments)
        return super().sweep(expand_ranges(self._arguments, self._is_int_key))

    def _parse_config(self):
        return expand_ranges(super()._parse_config(), self._is_int_key)

    def _is_int_key(self, key: str) -> bool:
        """Whether ``key`` holds an integer in the config the sweep starts from."""
        if not hasattr(self, "_base"):
            loader = self.hydra_context.config_loader
            overrides = OmegaConf.to_container(self.config.hydra.overrides.hydra)
            # plus the command line's single-valued overrides (e.g. aug=cutout brings aug.length)
            parsed = OverridesParser.create().parse_overrides(getattr(self, "_arguments", []))
            overrides += [o.input_line for o in parsed if not o.is_sweep_override() and not is_range(o.input_line)]
            self._base = loader.load_configuration(self.config.hydra.job.config_name, overrides,
                                                   run_mode=RunMode.MULTIRUN)
        value = OmegaConf.select(self._base, key, default=None)
        return isinstance(value, int) and not isinstance(value, bool)

    def get_job_batch(self):
        return pending_jobs(super().get_job_batch(), self.hydra_context.config_loader, self.config)

    def validate_batch_is_legal(self, batch) -> None:
        """Nothing left to do: ``pending_jobs`` has composed and checked every job of the batch."""

"""Checks on a composed config, run before any data is touched.

Hydra already rejects unknown groups (listing the options) and misspelled keys (struct mode);
these checks catch wrong types and out-of-range values, each in one line naming the full key,
the value and what is allowed.
"""

from __future__ import annotations

import typing

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from augbench.data import SPECS
from augbench.models import MODELS


class ConfigError(ValueError):
    """A config value is wrong; the message names the key."""


def _precisions() -> set[str]:
    from lightning.pytorch.trainer.connectors.accelerator_connector import _PRECISION_INPUT

    return {str(v) for v in typing.get_args(_PRECISION_INPUT)} | {"auto"}


def _get(cfg, key):
    return OmegaConf.select(cfg, key, default=None)


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first invalid value."""

    def need(key: str, ok, allowed: str, hint: str = "") -> None:
        value = _get(cfg, key)
        if not ok(value):
            raise ConfigError(f"{key}={value!r} is invalid: must be {allowed}{hint}")

    seed_hint = ". To sweep seeds use --multirun seed=range(5) (or seed=0,1,2,3,4)"
    need("seed", lambda v: _int(v) and v >= 0, "an integer >= 0", seed_hint)
    need("data.name", lambda v: v in SPECS, f"one of {', '.join(SPECS)}")
    need("model.name", lambda v: v in MODELS, f"one of {', '.join(sorted(MODELS))}")
    modes = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
    need("model.compile_mode", lambda v: v in modes, "null or one of " + ", ".join(m for m in modes if m))
    need("data.val_fraction", lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)")
    need("data.batch_size", lambda v: _int(v) and v > 0, "an integer > 0")
    need("data.eval_batch_size", lambda v: _int(v) and v > 0, "an integer > 0")
    need("optim.lr", lambda v: _number(v) and v > 0, "a number > 0")
    need("optim.momentum", lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)")
    need("optim.weight_decay", lambda v: _number(v) and v >= 0, "a number >= 0")
    need("optim.gamma", lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]")
    need("optim.milestones",
         lambda v: isinstance(v, (list, ListConfig)) and all(_int(m) and m > 0 for m in v)
         and all(a < b for a, b in zip(v, list(v)[1:])),
         "a strictly increasing list of positive epoch numbers, e.g. [60,120,160]")
    need("trainer.max_epochs", lambda v: _int(v) and v > 0, "an integer > 0")
    precisions = _precisions()
    need("trainer.precision", lambda v: str(v) in precisions, "one of " + ", ".join(sorted(precisions)))
    need("trainer.accelerator", lambda v: v in ("auto", "cpu", "gpu", "cuda", "mps"), "auto, cpu, gpu, cuda or mps")
    accelerator = _get(cfg, "trainer.accelerator")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={accelerator!r} but no CUDA GPU is visible on this machine; "
                          "use trainer.accelerator=auto (or cpu), or run where a GPU is available")
    need("trainer.devices", lambda v: v in (1, "1", "auto"),
         "1: each run uses one device; sweeps parallelise with hydra/launcher=joblib or submitit_slurm")

    # augmentation knobs: only those the chosen regime has
    size = SPECS[cfg.data.name].size
    aug = cfg.aug
    checks = {
        "alpha": (lambda v: _number(v) and v > 0, "a number > 0"),
        "prob": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
        "length": (lambda v: _int(v) and 0 < v <= size, f"an integer in (0, {size}] (the image size)"),
        "n_holes": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
        "padding": (lambda v: _int(v) and 0 <= v < size, f"an integer in [0, {size})"),
        "per_sample": (lambda v: isinstance(v, bool), "true or false"),
    }
    for knob, (ok, allowed) in checks.items():
        if knob in aug:
            need(f"aug.{knob}", ok, allowed)

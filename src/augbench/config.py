"""Checks on a composed config, run before any data is touched and before torch is imported.

Hydra already rejects unknown groups (listing the options) and misspelled keys (struct mode);
these checks catch wrong types and out-of-range values, each in one line naming the full key,
the value and what is allowed. This module needs omegaconf only, so a bad value is refused in
about a second instead of the ten it takes to import Lightning.
"""

from __future__ import annotations

from omegaconf import DictConfig, ListConfig, OmegaConf

from augbench.catalog import EVAL_MEASURES, FEATURE_MIX_POINTS, MODEL_NAMES, OOD_SETS, SPECS
from augbench.errors import ConfigError

# Mixed precision keeps the augmented batch and λ in float32 (autocast casts inside the network only);
# "bf16-true"/"16-true" would augment in half precision and round λ differently in images and loss.
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed")


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

    seed_hint = ". To sweep seeds use --multirun seed=0-4 (or seed=range(5), or seed=0,1,2,3,4)"
    need("seed", lambda v: _int(v) and v >= 0, "an integer >= 0", seed_hint)
    need("data.name", lambda v: v in SPECS, f"one of {', '.join(SPECS)}")
    need("model.name", lambda v: v in MODEL_NAMES, f"one of {', '.join(MODEL_NAMES)}")
    modes = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
    need("model.compile_mode", lambda v: v in modes, "null or one of " + ", ".join(m for m in modes if m))
    need("model.compile_scope", lambda v: v in ("backbone", "step"),
         "backbone (torch.compile the network) or step (forward, loss, backward and update in one graph)")
    if (_get(cfg, "model.compile") and _get(cfg, "model.compile_scope") == "step"
            and _get(cfg, "trainer.precision") == "16-mixed"):
        raise ConfigError("model.compile_scope=step is invalid with trainer.precision=16-mixed: float16 needs "
                          "a GradScaler, whose skipped steps are not part of the compiled step; use "
                          "bf16-mixed, 32-true or model.compile_scope=backbone")
    need("data.val_fraction", lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)")
    need("data.batch_size", lambda v: _int(v) and v > 0, "an integer > 0")
    need("data.eval_batch_size", lambda v: _int(v) and v > 0, "an integer > 0")
    need("optim.lr", lambda v: _number(v) and v > 0, "a number > 0")
    need("optim.momentum", lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)")
    need("optim.weight_decay", lambda v: _number(v) and v >= 0, "a number >= 0")
    need("optim.gamma", lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]")
    need("optim.label_smoothing", lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)")
    need("optim.warmup_epochs", lambda v: _int(v) and 0 <= v <= (_get(cfg, "trainer.max_epochs") or 0),
         "an integer in [0, trainer.max_epochs] (0: no warmup, the study's protocol)")
    need("data.label_noise", lambda v: _number(v) and 0 <= v <= 1,
         "a number in [0, 1]: the fraction of training labels replaced by a uniformly drawn label")
    need("optim.milestones",
         lambda v: isinstance(v, (list, ListConfig)) and all(_int(m) and m > 0 for m in v)
         and all(a < b for a, b in zip(v, list(v)[1:])),
         "a strictly increasing list of positive epoch numbers, e.g. [60,120,160]")
    need("trainer.max_epochs", lambda v: _int(v) and v > 0, "an integer > 0")
    need("trainer.checkpoint_every_n_epochs", lambda v: _int(v) and v >= 1,
         "an integer >= 1 (last.ckpt every N epochs, and always at the last one)")
    need("trainer.steps_per_batch", lambda v: _int(v) and v >= 1,
         "an integer >= 1 (optimiser steps per pass of Lightning's batch loop; the numbers do not change)")
    need("trainer.precision", lambda v: v in PRECISIONS, "one of " + ", ".join(PRECISIONS))
    need("trainer.accelerator", lambda v: v in ("auto", "cpu", "gpu", "cuda"), "auto, cpu, gpu or cuda")
    need("trainer.devices", lambda v: v == 1 and not isinstance(v, bool),
         "1: each run trains on one device (several would start DDP with no sampler, every rank writing "
         "to the same folder); sweeps run several at once with hydra/launcher=gpus or slurm")
    need("trainer.deterministic", lambda v: isinstance(v, bool), "true or false")
    need("trainer.benchmark", lambda v: v is None or isinstance(v, bool), "null, true or false")
    if _get(cfg, "trainer.deterministic") and _get(cfg, "trainer.benchmark"):
        raise ConfigError("trainer.benchmark=true is invalid with trainer.deterministic=true: cudnn.benchmark "
                          "picks kernels by timing them, so results differ run to run; leave trainer.benchmark=null")
    # the Classifier takes the optimiser step itself (manual optimisation), which Lightning runs
    # without its gradient clipping and accumulation
    need("trainer.gradient_clip_val", lambda v: v is None or v == 0, "unset: the study clips no gradients, and "
         "augbench takes the optimiser step itself, where the Trainer's clipping does not apply")
    need("trainer.accumulate_grad_batches", lambda v: v is None or v == 1, "unset (1): to train on larger "
         "batches set data.batch_size (and scale optim.lr); every step is one batch")
    need("runs_per_gpu", lambda v: _int(v) and v >= 1, "an integer >= 1")
    need("run_lock.stale_after_s", lambda v: _number(v) and v > 0, "a number of seconds > 0")
    need("run_lock.heartbeat_s", lambda v: _number(v) and 0 < v < _get(cfg, "run_lock.stale_after_s"),
         "a number of seconds > 0 and below run_lock.stale_after_s")

    size = SPECS[cfg.data.name].size
    _validate_eval(need, size)

    # augmentation knobs: only those the chosen regime has
    aug = cfg.aug
    points = FEATURE_MIX_POINTS[cfg.model.name]
    checks = {
        "alpha": (lambda v: _number(v) and v > 0, "a number > 0"),
        "prob": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
        "length": (lambda v: _int(v) and 0 < v <= size, f"an integer in (0, {size}] (the image size)"),
        "n_holes": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
        "padding": (lambda v: _int(v) and 0 <= v < size, f"an integer in [0, {size})"),
        "per_sample": (lambda v: isinstance(v, bool), "true or false"),
        # random_erasing
        "area_min": (lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]"),
        "area_max": (lambda v: _number(v) and _number(aug.get("area_min", 0)) and aug.get("area_min", 0) <= v <= 1,
                     "a number in [aug.area_min, 1]"),
        "ratio_min": (lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1] (aspect h/w spans [ratio_min, 1/ratio_min])"),
        "attempts": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
        "fill": (lambda v: v in ("zero", "random"), "zero or random"),
        # hide_and_seek
        "grid_sizes": (lambda v: isinstance(v, (list, ListConfig)) and len(v) > 0
                       and all(_int(s) and 0 <= s <= size for s in v),
                       f"a non-empty list of cell sides, integers in [0, {size}] (0 = no hiding)"),
        "hide_prob": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
        # gridmask
        "d1": (lambda v: _int(v) and 1 <= v <= size, f"an integer in [1, {size}]"),
        "d2": (lambda v: _int(v) and _int(aug.get("d1")) and v > aug.get("d1"), "an integer > aug.d1 (d ~ randint[d1, d2))"),
        "ratio": (lambda v: _number(v) and 0 < v < 1, "a number in (0, 1): the kept fraction l/d of the unit"),
        "rotate": (lambda v: _int(v) and v >= 0, "an integer >= 0: the grid turns by randint[0, rotate) degrees "
                   "(0 or 1: never; the official ImageNet setting is 360)"),
        "mode": (lambda v: v in (0, 1) and not isinstance(v, bool), "0 (drop the stripes) or 1 (drop the squares)"),
        "ramp_epochs": (lambda v: v is None or (_int(v) and v >= 1), "null (trainer.max_epochs) or an integer >= 1"),
        # ricap, mixup_cutmix
        "beta": (lambda v: _number(v) and v > 0, "a number > 0"),
        "mixup_alpha": (lambda v: _number(v) and v > 0, "a number > 0"),
        "cutmix_alpha": (lambda v: _number(v) and v > 0, "a number > 0"),
        "switch_prob": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
        # cutmix ablations (CutMix paper, Table 8)
        "center": (lambda v: v in ("uniform", "gaussian"), "uniform or gaussian"),
        "sigma": (lambda v: _number(v) and v > 0, "a number > 0 (the gaussian centre's std as a fraction of the side)"),
        "fixed_lam": (lambda v: v is None or (_number(v) and 0 < v < 1), "null (λ ~ Beta(alpha, alpha)) or a number in (0, 1)"),
        "label_mode": (lambda v: v in ("area", "one_hot", "complete"), "area, one_hot or complete"),
        "schedule": (lambda v: isinstance(v, bool), "true or false"),
        "layer": (lambda v: _int(v) and 0 <= v <= points,
                  f"an integer in [0, {points}] for model={cfg.model.name} (0: the input; 1-{points}: a feature map)"),
    }
    for knob, (ok, allowed) in checks.items():
        if knob in aug:
            need(f"aug.{knob}", ok, allowed)


def _list_of(v, ok) -> bool:
    return isinstance(v, (list, ListConfig)) and all(ok(x) for x in v)


def _validate_eval(need, size: int) -> None:
    """The evaluation suite's knobs (conf/eval)."""
    need("eval.measures", lambda v: _list_of(v, lambda m: m in EVAL_MEASURES),
         f"a list drawn from {', '.join(EVAL_MEASURES)} (eval=accuracy: none)")
    need("eval.batch_size", lambda v: _int(v) and v > 0, "an integer > 0")
    need("eval.fgsm_eps", lambda v: _list_of(v, lambda e: _number(e) and 0 <= e <= 255) and len(v) > 0,
         "a non-empty list of perturbation sizes in pixel units /255, numbers in [0, 255]")
    need("eval.occlusion_sizes", lambda v: _list_of(v, lambda s: _int(s) and 0 <= s <= size) and len(v) > 0,
         f"a non-empty list of hole sides, integers in [0, {size}]")
    need("eval.in_between_pairs", lambda v: _int(v) and v > 0, "an integer > 0")
    need("eval.in_between_lams", lambda v: _list_of(v, lambda x: _number(x) and 0 <= x <= 1) and len(v) > 0,
         "a non-empty list of numbers in [0, 1]")
    need("eval.ood_sets", lambda v: _list_of(v, lambda s: s in OOD_SETS), f"a list drawn from {', '.join(OOD_SETS)}")
    need("eval.ood_noise_images", lambda v: _int(v) and v > 0, "an integer > 0")
    need("eval.corruptions", lambda v: v is None or (_list_of(v, lambda s: isinstance(s, str)) and len(v) > 0),
         "null (every implemented corruption) or a non-empty list of corruption names")
    need("eval.corruption_images", lambda v: v is None or (_int(v) and v > 0), "null (the whole test set) or an integer > 0")
    need("eval.seed", lambda v: _int(v) and v >= 0, "an integer >= 0")


def check_accelerator(cfg: DictConfig) -> None:
    """A GPU asked for where none is visible (imports torch: called once training is under way)."""
    import torch

    accelerator = _get(cfg, "trainer.accelerator")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={accelerator!r} but no CUDA GPU is visible on this machine; "
                          "use trainer.accelerator=auto (or cpu), or run where a GPU is available")

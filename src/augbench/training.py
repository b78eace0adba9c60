"""``train(cfg)``: one run from a composed config, top to bottom.

The Hydra entry point (``train.py``) is a thin wrapper; tests call ``train`` directly.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from augbench.callbacks import GalleryLogger
from augbench.config import validate
from augbench.module import Classifier
from augbench.runs import AtomicCheckpointIO, read_metrics, resume_checkpoint, write_metrics

log = logging.getLogger("augbench")
# the run folder always holds metrics.json before the first checkpoint: that is expected, not a problem
warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
# raised inside Lightning by newer torch at every run; nothing a user can act on
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
# an advertisement printed by every Trainer: 200 copies of it bury a sweep's log
logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
    lambda record: not record.getMessage().startswith("💡 Tip"))


class RunExistsError(RuntimeError):
    """A completed run with a different config already owns the output folder."""


def resolve_precision(precision: str, on_gpu: bool) -> str:
    if str(precision) != "auto":
        return str(precision)
    if on_gpu:
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


# keys that change how a run is shown or placed, not what it computes
COSMETIC = {"output_dir", "progress_refresh_rate", "trainer.enable_progress_bar", "trainer.enable_model_summary",
            "trainer.log_every_n_steps", "trainer.devices"}


def _same_config(a: dict, b: dict) -> bool:
    strip = lambda c: {k: v for k, v in _flatten(c).items() if k not in COSMETIC}  # noqa: E731
    return strip(a) == strip(b)


def completed_run(out: Path, config: dict) -> dict | None:
    """The metrics of the completed run in ``out`` when it ran this config; None when there is none.

    A completed run of another config raises RunExistsError: results are never overwritten."""
    previous = read_metrics(out)
    if not previous or previous.get("status") != "completed":
        return None
    if _same_config(previous.get("config", {}), config):
        return previous
    raise RunExistsError(f"{out} holds a completed run with a different config; it is never overwritten. "
                         "Choose another folder (hydra.run.dir=...) or move that run away")


def train(cfg: DictConfig, gpu: int | None = None) -> dict:
    """Train, test on the final-epoch weights, write metrics.json; return the metrics.

    ``gpu`` pins the run to one GPU of several (sweeps pass the job's share)."""
    validate(cfg)  # bad configs fail here, in seconds, before any data is read
    out = Path(cfg.output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"cannot create the output folder {out} ({e.strerror or e}); point hydra.run.dir "
                      "(or hydra.sweep.dir) at a writable location") from e
    config = OmegaConf.to_container(cfg, resolve=True)

    if previous := completed_run(out, config):
        log.info("%s already completed (test_acc1=%.4f); skipping", out, previous["test_acc1"])
        return previous

    L.seed_everything(cfg.seed, workers=True)  # python, numpy, torch; seed=0 is a real seed
    datamodule = instantiate(cfg.data)
    datamodule.load()  # a missing or corrupt dataset fails here, before training
    spec = datamodule.spec

    on_gpu = cfg.trainer.accelerator in ("gpu", "cuda") or (
        cfg.trainer.accelerator == "auto" and torch.cuda.is_available())
    precision = resolve_precision(cfg.trainer.precision, on_gpu)
    device = torch.cuda.get_device_name(gpu or 0) if on_gpu else "cpu"
    log.info("device: %s, precision: %s", device, precision)

    model = Classifier(cfg.model.name, spec.channels, spec.num_classes, channels_last=on_gpu,
                       **OmegaConf.to_container(cfg.optim))  # plain types: checkpoints load with weights_only
    if cfg.model.compile:
        model.net = torch.compile(model.net, mode=cfg.model.compile_mode)

    callbacks = [instantiate(c) for c in cfg.aug.callbacks]  # order matters: crop/flip before cut/mix
    callbacks += [
        GalleryLogger(),
        # saved at the end of every training epoch, after the NaN check, atomically
        ModelCheckpoint(dirpath=out, filename="last", save_top_k=1, save_on_train_epoch_end=True,
                        enable_version_counter=False),
    ]
    if cfg.trainer.enable_progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=cfg.progress_refresh_rate))  # a redraw per step costs time
    logger = TensorBoardLogger(out, name="tb", version="", default_hp_metric=False)
    overrides = {}
    if not datamodule.eval_names:
        overrides["limit_val_batches"] = 0
    if on_gpu and gpu is not None:
        overrides["devices"] = [gpu]
    if cfg.trainer.benchmark is None:
        overrides["benchmark"] = on_gpu
    trainer: L.Trainer = instantiate(cfg.trainer, precision=precision, callbacks=callbacks, logger=logger,
                                     plugins=[AtomicCheckpointIO()], default_root_dir=str(out), **overrides)

    debug = bool(cfg.trainer.fast_dev_run)
    write_metrics(out, {"status": "running", "config": config})
    start = time.time()
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_checkpoint(out))
        # the study reports the final epoch: test the weights we ended with, never a "best" epoch
        test = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    except BaseException as e:
        # Lightning turns Ctrl-C into SystemExit after a graceful shutdown; last.ckpt stays resumable
        status = "interrupted" if isinstance(e, (KeyboardInterrupt, SystemExit)) else "failed"
        write_metrics(out, {"status": status, "error": f"{type(e).__name__}: {e}", "config": config})
        raise

    final = model.history[-1] if model.history else {}
    metrics = {
        # fast_dev_run results are not results: a relaunch trains for real
        "status": "fast_dev_run" if debug else "completed",
        "experiment": cfg.experiment_name,
        "data": spec.name, "model": cfg.model.name, "aug": cfg.aug.name, "seed": cfg.seed,
        "test_acc1": test["test/acc1"], "test_acc5": test["test/acc5"], "test_loss": test["test/loss"],
        "val_acc1": final.get("val_acc1"), "val_acc5": final.get("val_acc5"),
        "epochs": trainer.current_epoch,
        "wall_seconds": round(time.time() - start, 2),
        "precision": precision,
        "device": device,
        "history": {k: [row.get(k) for row in model.history] for k in model.history[0]} if model.history else {},
        "config": config,
    }
    write_metrics(out, metrics)
    hparams = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in _flatten(config).items()
               if "callbacks" not in k}
    logger.log_hyperparams(hparams, {f"hp/{k}": metrics[k] for k in ("test_acc1", "test_acc5")}
                           | ({"hp/val_acc1": metrics["val_acc1"]} if metrics["val_acc1"] is not None else {}))
    logger.finalize("success")
    log.info("%s: test_acc1=%.4f test_acc5=%.4f in %.0f s", out, metrics["test_acc1"], metrics["test_acc5"],
             metrics["wall_seconds"])
    return metrics


def _flatten(d: dict, prefix: str = "") -> dict:
    flat = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            flat |= _flatten(v, key + ".")
        else:
            flat[key] = v
    return flat

"""``train(cfg)``: one run from a composed config, top to bottom.

The Hydra entry point (``train.py``) is a thin wrapper; tests call ``train`` directly.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import SingleDeviceStrategy
from omegaconf import DictConfig, OmegaConf

from augbench.callbacks import GalleryLogger
from augbench.checkpoints import AtomicCheckpointIO
from augbench.config import check_accelerator, validate
from augbench.errors import ConfigError
from augbench.data import steps_of
from augbench.module import Classifier, device_name
from augbench.runlock import RunLock
from augbench.monitors import LabelNoiseMonitor
from augbench.runs import RunRecord, atomic_write, collapse_reason, completed_run, flatten, resume_checkpoint
from augbench.slurm import stopped_by_slurm

log = logging.getLogger("augbench")
# the run folder always holds metrics.json before the first checkpoint: that is expected, not a problem
warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
# raised inside Lightning by newer torch at every run; nothing a user can act on
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
# augbench logs once an epoch, never per step: Lightning's advice on the per-step logging interval
# (given whenever an epoch has fewer batches than log_every_n_steps) does not apply
warnings.filterwarnings("ignore", message=r"The number of training batches \(\d+\) is smaller than the logging interval")
# an advertisement printed by every Trainer: 200 copies of it bury a sweep's log
logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
    lambda record: not record.getMessage().startswith("💡 Tip"))


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16-mixed where the device computes bf16 natively (compute capability >= 8.0),
    16-mixed on older GPUs, 32-true on the CPU. The pinned device is asked, not cuda:0, and not
    ``torch.cuda.is_bf16_supported()``, which counts the slow emulation of V100s and T4s."""
    if str(precision) != "auto":
        return str(precision)
    if device.type == "cuda":
        return "bf16-mixed" if torch.cuda.get_device_capability(device) >= (8, 0) else "16-mixed"
    return "32-true"


def run_device(cfg: DictConfig, gpu: int | None = None) -> torch.device:
    """The one device this run trains on: GPU ``gpu`` (or 0) when a GPU is used, else the CPU."""
    on_gpu = cfg.trainer.accelerator in ("gpu", "cuda") or (
        cfg.trainer.accelerator == "auto" and torch.cuda.is_available())
    return torch.device("cuda", gpu or 0) if on_gpu else torch.device("cpu")


def build_classifier(cfg: DictConfig, spec, device: torch.device) -> Classifier:
    model = Classifier(cfg.model.name, spec.channels, spec.num_classes, channels_last=device.type == "cuda",
                       **OmegaConf.to_container(cfg.optim))  # plain types: checkpoints load with weights_only
    if cfg.model.compile and cfg.model.compile_scope == "step":
        # forward, loss, backward and update as one graph, built at the first training step
        model.compile_step = {"mode": cfg.model.compile_mode}
    elif cfg.model.compile:
        # in place: the state-dict keys stay those of the eager model (no "_orig_mod."), so a run can
        # be resumed with model.compile switched either way
        model.net.compile(mode=cfg.model.compile_mode)
    return model


class EpochRecord(Callback):
    """Saves the attempt's time so far in metrics.json at every epoch end, next to the checkpoint."""

    def __init__(self, record: RunRecord):
        self.record = record

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.record.write("running")


AUGBENCH_TRAINER_KEYS = ("checkpoint_every_n_epochs", "steps_per_batch")  # trainer.* keys that are augbench's, not the Trainer's


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt`` at the end of every N-th training epoch and always at the last one, whose weights
    the evaluation suite and ``python -m augbench.evaluate`` read. A resumed run replays the epochs since
    its checkpoint and ends bit-identical whatever N is: data order and augmentation draws depend on
    (seed, epoch) only."""

    def __init__(self, out: Path, every_n_epochs: int = 1):
        super().__init__(dirpath=out, filename="last", save_top_k=1, save_on_train_epoch_end=True,
                         enable_version_counter=False, every_n_epochs=every_n_epochs)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        every = self._every_n_epochs
        if trainer.current_epoch + 1 >= trainer.max_epochs:
            self._every_n_epochs = 1
        try:
            super().on_train_epoch_end(trainer, pl_module)
        finally:
            self._every_n_epochs = every


class StepProgressBar(TQDMProgressBar):
    """Lightning's progress bar counting optimiser steps, not the batches Lightning hands over: with
    ``trainer.steps_per_batch`` N each holds up to N steps. Redrawn every ``refresh_rate`` steps."""

    def on_train_epoch_start(self, trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self._steps = 0

    @property
    def total_train_batches(self):
        batches = super().total_train_batches
        dm = self.trainer.datamodule
        return dm.train_steps(batches) if hasattr(dm, "train_steps") and batches != float("inf") else batches

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        before, self._steps = self._steps, self._steps + len(steps_of(batch))
        bar = self.train_progress_bar
        if bar is None or not self.is_enabled:
            return
        if self._steps // self.refresh_rate > before // self.refresh_rate or self._steps == bar.total:
            if not bar.disable:
                bar.n = self._steps
                bar.refresh()
            bar.set_postfix(self.get_metrics(trainer, pl_module))


class KeepOnDevice(SingleDeviceStrategy):
    """Lightning's teardown after ``fit`` moves the model to the CPU and ``test`` moves it back. For
    a compiled model that means new parameter storage, so CUDA graphs are recorded again; keep it put."""

    def teardown(self) -> None:
        self.precision_plugin.teardown()
        self.accelerator.teardown()
        self.checkpoint_io.teardown()


def trainer_settings(cfg: DictConfig, device: torch.device) -> dict:
    """What the Trainer gets beyond ``cfg.trainer``: the one device, cudnn.benchmark and the inference mode."""
    settings = {}
    if device.type == "cuda":
        settings["devices"] = [device.index]
    if cfg.trainer.benchmark is None:
        # benchmark picks conv kernels by timing them: faster, but not reproducible run to run,
        # so never under trainer.deterministic=true (exact resume needs it off)
        settings["benchmark"] = device.type == "cuda" and not cfg.trainer.deterministic
    if cfg.model.compile:
        # validation under inference_mode before the first training step breaks a later CUDA-graph
        # compile (inference tensors cannot be saved for backward); no_grad serves as well
        settings["inference_mode"] = False
        settings["strategy"] = KeepOnDevice(device=device)
        settings.pop("devices", None)  # the strategy holds the device
    return settings


LABEL_NOISE_FILE = "label_noise.json"


def save_label_noise(out: Path, noise: dict) -> None:
    """Which training images got a random label, saved with the run (indices into the training file)."""
    drawn = noise["drawn_file_index"].tolist()
    record = {"rate": noise["rate"], "effective_rate": noise["effective_rate"], "n_train": noise["n_train"],
              "drawn_file_index": drawn,
              "label": noise["targets"][noise["drawn"]].tolist(), "true_label": noise["true"][noise["drawn"]].tolist()}
    atomic_write(out / LABEL_NOISE_FILE, lambda fh: fh.write(json.dumps(record).encode()))


def log_eval(logger: TensorBoardLogger, results: dict, step: int) -> None:
    """The suite's numbers as TensorBoard scalars, eval/<measure>/<key>."""
    scalars = {k: v for k, v in results.items() if k != "calibration_bins"}
    flat = {k: v for k, v in flatten(scalars, "eval/", sep="/").items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if flat:
        logger.log_metrics(flat, step=step)


def train(cfg: DictConfig, gpu: int | None = None) -> dict:
    """Train, test on the final-epoch weights, write metrics.json; return the metrics.

    ``gpu`` pins the run to one GPU of several (a sweep passes the GPU slot its job holds). The run
    folder is locked for the whole run: a second process asking for it gets RunLockedError."""
    validate(cfg)  # bad configs fail here, before any data is read
    check_accelerator(cfg)
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
    with RunLock(out, stale_after_s=cfg.run_lock.stale_after_s, heartbeat_s=cfg.run_lock.heartbeat_s):
        if previous := completed_run(out, config):  # finished by another process while we waited
            log.info("%s already completed (test_acc1=%.4f); skipping", out, previous["test_acc1"])
            return previous
        return _train_locked(cfg, out, config, gpu)


def _train_locked(cfg: DictConfig, out: Path, config: dict, gpu: int | None) -> dict:
    log.info("%s: training (process %d)", out, os.getpid())
    L.seed_everything(cfg.seed, workers=True)  # python, numpy, torch; seed=0 is a real seed
    datamodule = instantiate(cfg.data)
    # limit_train_batches and fast_dev_run's batch count stay counts of optimiser steps whatever
    # steps_per_batch is: grouped, the loader applies them and the Trainer does not
    limit = int(cfg.trainer.fast_dev_run) if cfg.trainer.fast_dev_run else cfg.trainer.limit_train_batches
    grouped = datamodule.group_steps(cfg.trainer.steps_per_batch, limit)
    datamodule.load()  # a missing or corrupt dataset fails here, before training
    spec = datamodule.spec
    suite = instantiate(cfg.eval)  # what is measured on the final weights beyond accuracy (conf/eval)
    if datamodule.noise is not None:
        save_label_noise(out, datamodule.noise)

    device = run_device(cfg, gpu)
    precision = resolve_precision(cfg.trainer.precision, device)
    log.info("device: %s, precision: %s", device_name(device), precision)
    if cfg.model.compile and cfg.model.compile_scope == "step" and precision == "16-mixed":
        raise ConfigError(f"model.compile_scope=step is invalid here: trainer.precision={cfg.trainer.precision} "
                          f"trains {device_name(device)} in 16-mixed, whose GradScaler the compiled step cannot "
                          "take; set trainer.precision=32-true or model.compile_scope=backbone")

    model = build_classifier(cfg, spec, device)

    ckpt = resume_checkpoint(out)
    record = RunRecord(out, config, resuming=ckpt is not None)
    callbacks = [instantiate(c) for c in cfg.aug.callbacks]  # order matters: crop/flip before cut/mix
    callbacks += [
        GalleryLogger(),
        *([LabelNoiseMonitor()] if datamodule.noise is not None else []),
        EpochRecord(record),
        # after the NaN check, atomically, every N epochs and at the last one
        LastCheckpoint(out, cfg.trainer.checkpoint_every_n_epochs),
    ]
    if cfg.trainer.enable_progress_bar:
        callbacks.append(StepProgressBar(refresh_rate=cfg.progress_refresh_rate))  # a redraw per step costs time
    logger = TensorBoardLogger(out, name="tb", version="", default_hp_metric=False)
    overrides = trainer_settings(cfg, device)
    if not datamodule.eval_names:
        overrides["limit_val_batches"] = 0
    if grouped:
        overrides["limit_train_batches"] = None
    trainer_cfg = OmegaConf.masked_copy(cfg.trainer, [k for k in cfg.trainer if k not in AUGBENCH_TRAINER_KEYS])
    trainer: L.Trainer = instantiate(trainer_cfg, precision=precision, callbacks=callbacks, logger=logger,
                                     plugins=[AtomicCheckpointIO()], default_root_dir=str(out), **overrides)

    debug = bool(cfg.trainer.fast_dev_run)
    record.write("running")
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt)
        # the study reports the final epoch: test the weights we ended with, never a "best" epoch
        test = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    except BaseException as e:
        # Lightning turns Ctrl-C into SystemExit after a graceful shutdown; last.ckpt stays resumable.
        # SLURM's time-limit signal (submitit requeues the job) and a preemption end the same way: "requeued"
        by_slurm = stopped_by_slurm(e)
        status = by_slurm or ("interrupted" if isinstance(e, (KeyboardInterrupt, SystemExit)) else "failed")
        extra = {"slurm_state": "TIMEOUT"} if by_slurm == "failed" else {}  # time limit, no requeue left
        record.write(status, ended=True, error=f"{type(e).__name__}: {e}", **extra)
        raise

    final = model.history[-1] if model.history else {}
    collapsed = collapse_reason(final.get("train_loss"), test["test/acc1"], spec.num_classes, datamodule.label_noise)
    if collapsed:
        log.warning("%s collapsed: %s. The report leaves such runs out of its means (see optim.warmup_epochs)",
                    out, collapsed)
    fields = {
        "experiment": cfg.experiment_name,
        "data": spec.name, "model": cfg.model.name, "aug": cfg.aug.name, "seed": cfg.seed,
        "test_acc1": test["test/acc1"], "test_acc5": test["test/acc5"], "test_loss": test["test/loss"],
        "val_acc1": final.get("val_acc1"), "val_acc5": final.get("val_acc5"),
        "epochs": trainer.current_epoch,
        "precision": precision,
        "device": device_name(device),
        "collapsed": collapsed is not None, "collapse_reason": collapsed,
        "history": {k: [row.get(k) for row in model.history] for k in model.history[0]} if model.history else {},
    }
    if datamodule.noise is not None:
        fields["label_noise"] = {k: datamodule.noise[k] for k in ("rate", "effective_rate", "n_drawn", "n_corrupted",
                                                                   "n_train")} | {"indices_file": LABEL_NOISE_FILE}
    if tests := [v for v in fields["history"].get("test_acc1", []) if v is not None]:
        fields["best_test_acc1"] = max(tests)  # curves only: the study reports the final epoch
    # fast_dev_run results are not results: a relaunch trains for real
    status = "fast_dev_run" if debug else "completed"
    metrics = record.write(status, ended=True, **fields)  # the training result is safe before evaluation starts
    try:
        if not debug:
            fields["eval"] = suite.run(model, datamodule, out, device, precision)
    except Exception as e:  # the run stays completed; `python -m augbench.evaluate` can redo the suite
        log.error("%s: the evaluation suite failed (%s: %s); the trained run is kept", out, type(e).__name__, e)
        fields["eval_error"] = f"{type(e).__name__}: {e}"
    metrics = record.write(status, ended=True, **fields)
    log_eval(logger, fields.get("eval", {}), trainer.global_step)
    hparams = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flatten(config).items()
               if "callbacks" not in k}
    logger.log_hyperparams(hparams, {f"hp/{k}": metrics[k] for k in ("test_acc1", "test_acc5")}
                           | ({"hp/val_acc1": metrics["val_acc1"]} if metrics["val_acc1"] is not None else {}))
    logger.finalize("success")
    log.info("%s: test_acc1=%.4f test_acc5=%.4f in %.0f s", out, metrics["test_acc1"], metrics["test_acc5"],
             metrics["wall_seconds"])
    return metrics


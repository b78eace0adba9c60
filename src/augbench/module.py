"""The LightningModule: a backbone, the study's optimiser, and clean top-1/top-5 metrics."""

from __future__ import annotations

import copy
import logging

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from augbench.data import steps_of
from augbench.models import build_model


def sgd_flags(device_type: str) -> dict:
    """One fused kernel for the update on a GPU, multi-tensor (foreach) kernels elsewhere."""
    fused = device_type == "cuda"
    return {"fused": fused, "foreach": not fused}


def match_param_layout(opt: torch.optim.Optimizer) -> None:
    """Give each state tensor its parameter's memory layout. A checkpoint saved on the CPU holds NCHW
    momentum buffers; on a GPU the parameters are channels_last, and the fused CUDA update refuses
    tensors whose strides differ (``check_fast_path_restrictions``). Values are unchanged."""
    for group in opt.param_groups:
        for p in group["params"]:
            for k, v in opt.state.get(p, {}).items():
                if torch.is_tensor(v) and v.shape == p.shape and v.stride() != p.stride():
                    opt.state[p][k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


def make_sgd(params, device_type: str, *, lr: float, momentum: float, nesterov: bool,
             weight_decay: float) -> torch.optim.SGD:
    """The study's optimiser (weight decay on every parameter), with the kernels suited to the device.

    The benchmark's plain loop uses this too, so both time the same update."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                           **sgd_flags(device_type))


log = logging.getLogger("augbench")


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def loss_and_accuracy(logits, batch: dict, smoothing: float):
    """The training loss of a hard or mixed batch and its (weighted) top-1 accuracy, both 0-d.

    A mixed batch carries K partners per image: ``targets`` (N, K) and ``weights`` (N, K) summing to 1;
    loss = Σ_k w_k·CE(y_k), label smoothing applied to every partner."""
    if "targets" in batch:
        targets, weights = batch["targets"], batch["weights"]
        logp = F.log_softmax(logits, 1)
        losses = -logp.gather(1, targets)  # (N, K): CE against each partner, as F.cross_entropy computes it
        if smoothing:
            losses = (1 - smoothing) * losses - smoothing * logp.mean(1, keepdim=True)
        loss = (weights * losses).sum(1).mean()
        acc = (weights * (logits.argmax(1, keepdim=True) == targets).float()).sum(1)
    else:
        y = batch["target"]
        loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
        acc = (logits.argmax(1) == y).float()
    return loss, acc.mean()


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or inf."""


class Classifier(L.LightningModule):
    """Trains on hard or mixed batches; a mixed batch carries K partners per image, ``targets`` (N, K)
    and ``weights`` (N, K): loss = Σ_k w_k·CE(y_k) (label smoothing applied to every partner), and train
    accuracy is weighted the same way.

    The optimiser step is taken in ``training_step`` (Lightning's manual optimisation), in the order
    Lightning's automatic loop takes it: zero the gradients, backward outside autocast, (unscale and)
    step, then the schedulers. The automatic loop's closure, its per-step optimiser hooks and the precision
    plugin's wrappers cost about 0.1 ms of host time a step (``python -m augbench.bench --overhead``),
    and augbench uses none of them. A training batch may be a list of batches (``trainer.steps_per_batch``):
    one optimiser step each, in order, exactly as if Lightning had handed them over one at a time.
    With ``compile_step`` set (``model.compile_scope=step``) each step is :class:`augbench.wholestep.WholeStep`:
    forward, loss, backward and update as one compiled graph, the same bookkeeping around it."""

    def __init__(self, model: str, in_channels: int, num_classes: int, lr: float = 0.1,
                 momentum: float = 0.9, nesterov: bool = True, weight_decay: float = 5e-4,
                 milestones=(60, 120, 160), gamma: float = 0.1, label_smoothing: float = 0.0,
                 warmup_epochs: int = 0, channels_last: bool = False,
                 check_finite_every_n_steps: int = 50):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.net = build_model(model, in_channels, num_classes)
        self.channels_last = channels_last
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        # no input checks in the metrics: each one would be a host sync per step (NaN has its own watch)
        mean = lambda: MeanMetric(nan_strategy="disable")  # noqa: E731
        acc = lambda k: MulticlassAccuracy(num_classes, top_k=k, average="micro", validate_args=False)  # noqa: E731
        # the epoch's summed training loss and accuracy, two in-place adds a step: a torchmetrics
        # MeanMetric costs about ten module-attribute writes per update, host time on every step
        self.register_buffer("train_sums", torch.zeros(2), persistent=False)
        self._train_steps = 0
        self._epoch_lr = lr
        splits = ("val", "test")
        self.acc1 = torch.nn.ModuleDict({s: acc(1) for s in splits})
        self.acc5 = torch.nn.ModuleDict({s: acc(min(5, num_classes)) for s in splits})
        self.eval_loss = torch.nn.ModuleDict({s: mean() for s in splits})
        # every step's loss of the epoch, kept on the device (one copy a step; reading it every step would
        # sync): when the summed loss turns non-finite, the first non-finite entry names the step
        self.register_buffer("step_losses", torch.zeros(1024), persistent=False)
        # one row per epoch: train and eval metrics as floats, saved in the checkpoint for resumes
        self.history: list[dict] = []
        self._eval_row: dict = {}
        # model.compile_scope=step: torch.compile's settings for the whole training step (None: eager steps)
        self.compile_step: dict | None = None
        self._whole_step = None

    def __setattr__(self, name, value):
        # Lightning names the running hook here about forty times a step; nn.Module's __setattr__
        # checks parameters, buffers and submodules each time, a plain attribute needs none of that
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, x, feature_mix: dict | None = None):
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if feature_mix is None:
            return self.net(x)
        # feature-level CutMix: the partner's box pasted into the feature map at the chosen point
        mask, j = feature_mix["mask"], feature_mix["partner"]
        return self.net(x, mix=lambda f: torch.where(mask, f[j], f), mix_at=feature_mix["layer"])

    def training_step(self, batch, batch_idx):
        steps = steps_of(batch)  # one batch, or a group of them (trainer.steps_per_batch): a step each, in order
        last_batch = batch_idx + 1 == self.trainer.num_training_batches
        for i, b in enumerate(steps):
            last = last_batch and i + 1 == len(steps)
            if self.compile_step is not None:  # model.compile_scope=step: forward to update in one graph
                loss = self._compiled_step(b, last)
            else:
                loss = self.training_loss(b, self._train_steps)  # the step's index in the epoch
                self._optimise(loss, last)
        return loss.detach()

    def _optimise(self, loss, last: bool):
        """One optimiser step; ``last``: the epoch's last, after which epoch-interval schedulers step."""
        wrapped = self.optimizers()  # Lightning's wrapper: its two step hooks advance trainer.global_step
        opt, scaler = wrapped.optimizer, getattr(self.trainer.precision_plugin, "scaler", None)  # scaler: 16-mixed
        opt.zero_grad()
        with torch.autocast(self.device.type, enabled=False):  # as Lightning's closure: backward outside autocast
            (loss if scaler is None else scaler.scale(loss)).backward()
        wrapped._on_before_step()
        if scaler is None:
            opt.step()
        else:  # skips the step when a gradient is not finite, and adapts the scale
            scaler.step(opt)
            scaler.update()
        wrapped._on_after_step()
        self._after_step(opt, last)

    def _compiled_step(self, batch, last: bool):
        wrapped = self.optimizers()
        if self._whole_step is None or self._whole_step.stale():
            from augbench.wholestep import WholeStep  # wholestep builds on this module

            self._whole_step = WholeStep(self, wrapped.optimizer, str(self.trainer.precision), **self.compile_step)
        wrapped._on_before_step()
        loss, acc = self._whole_step(batch)
        wrapped._on_after_step()
        self.record_step(loss, acc, self._train_steps)
        self._after_step(wrapped.optimizer, last)
        return loss

    def _after_step(self, opt, last: bool):
        if last:  # the rate this epoch trained with, for the history
            self._epoch_lr = opt.param_groups[0]["lr"]
        for config in self.trainer.lr_scheduler_configs:
            if config.interval == "step" or last:
                config.scheduler.step()

    def training_loss(self, batch, batch_idx):
        """The batch's loss (mixed or hard labels); adds to the epoch's training loss and accuracy."""
        logits = self(batch["image"], batch.get("feature_mix"))
        loss, acc = loss_and_accuracy(logits, batch, self.hparams.label_smoothing)
        self.record_step(loss.detach(), acc, batch_idx)
        return loss

    def record_step(self, loss, acc, batch_idx):
        """Adds a step's loss and accuracy to the epoch's sums, and watches the loss for NaN/inf."""
        self.train_sums.add_(torch.stack((loss, acc)))
        self._train_steps += 1
        self._watch_finite(loss, batch_idx)

    def _watch_finite(self, loss, batch_idx):
        step = self._train_steps - 1  # this step's index in the epoch (counted after training_loss's add)
        if step == len(self.step_losses):  # a longer epoch than any before: twice the room (no sync)
            self.step_losses = torch.cat((self.step_losses, torch.zeros_like(self.step_losses)))
        self.step_losses[step].copy_(loss)
        n = self.hparams.check_finite_every_n_steps
        if n and (batch_idx + 1) % n == 0:
            self._raise_if_bad()

    def _raise_if_bad(self):
        # the losses are >= 0, so their running sum is finite exactly when every step's loss was, unless
        # finite losses overflowed it: then no entry is non-finite and nothing is raised
        if bool(torch.isfinite(self.train_sums[0])):
            return
        bad = torch.nonzero(~torch.isfinite(self.step_losses[: self._train_steps]))
        if len(bad):
            step = int(bad[0, 0])
            raise NonFiniteLossError(
                f"training loss became NaN/inf at epoch {self.current_epoch}, step {step} of that epoch; "
                "the last good checkpoint is kept. Lower optim.lr, or use trainer.precision=32-true"
            )

    def on_train_epoch_end(self):
        # runs before ModelCheckpoint saves, so non-finite weights never reach last.ckpt
        self._raise_if_bad()
        loss, acc = self.train_sums / max(self._train_steps, 1)
        row = {"train/loss": loss, "train/acc1": acc}
        row["train/lr"] = self._epoch_lr  # the rate of the epoch's last step, not the next epoch's
        self.log_dict(row)
        self.train_sums.zero_()
        self._train_steps = 0
        row |= self._eval_row
        self.history.append({"epoch": self.current_epoch} | {k.replace("/", "_"): float(v) for k, v in row.items()})
        self._eval_row = {}

    def _where(self) -> str:
        """The device model and precision this run trains with, as recorded in its checkpoints."""
        return f"{device_name(self.trainer.strategy.root_device)}, {self.trainer.precision}"

    def on_save_checkpoint(self, checkpoint):
        checkpoint["augbench_history"] = self.history
        checkpoint["augbench_device"] = self._where()

    def on_load_checkpoint(self, checkpoint):
        self.history = list(checkpoint.get("augbench_history", []))
        _carry_over_step_count(checkpoint)
        if self._trainer is None:  # loaded for evaluation (load_from_checkpoint), not resumed
            return
        before, now = checkpoint.get("augbench_device"), self._where()
        if before is not None and before != now:
            log.warning("resuming a run that trained on %s on %s: it goes on from its checkpoint, but its "
                        "numbers will differ from those of an uninterrupted run", before, now)

    def on_train_start(self):
        # a resumed optimizer takes its fused/foreach flags from the checkpoint, i.e. from the device
        # the run was saved on; the update kernels (and GradScaler's fused path) must match this one
        for opt in self.trainer.optimizers:
            for group in opt.param_groups:
                group.update(sgd_flags(self.device.type))
            match_param_layout(opt)

    def _eval_step(self, batch, split):
        logits = self(batch["image"])
        y = batch["target"]
        self.eval_loss[split].update(F.cross_entropy(logits, y))
        self.acc1[split].update(logits, y)
        self.acc5[split].update(logits, y)

    def _log_eval(self, split):
        row = {f"{split}/loss": self.eval_loss[split].compute(), f"{split}/acc1": self.acc1[split].compute(),
               f"{split}/acc5": self.acc5[split].compute()}
        self.log_dict(row)
        for m in (self.eval_loss[split], self.acc1[split], self.acc5[split]):
            m.reset()
        return row

    def _eval_splits(self):
        dm = self.trainer.datamodule
        return dm.eval_names if dm is not None else ["val"]

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self._eval_step(batch, self._eval_splits()[dataloader_idx])

    def on_validation_epoch_end(self):
        for split in self._eval_splits():
            if self.trainer.sanity_checking:  # a sanity check's batches must not leak into epoch 0
                for m in (self.eval_loss[split], self.acc1[split], self.acc5[split]):
                    m.reset()
            else:
                self._eval_row |= self._log_eval(split)

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def on_test_epoch_end(self):
        self._log_eval("test")

    def configure_optimizers(self):
        hp = self.hparams
        opt = make_sgd(self.parameters(), self.device.type, lr=hp.lr, momentum=hp.momentum,
                       nesterov=hp.nesterov, weight_decay=hp.weight_decay)
        if not hp.warmup_epochs:  # the study's protocol, stepped once an epoch
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(hp.milestones), gamma=hp.gamma)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        # linear warmup over the first warmup_epochs, step by step, then the same step decay
        batches = self.trainer.estimated_stepping_batches // self.trainer.max_epochs
        dm = self.trainer.datamodule  # grouped batches (trainer.steps_per_batch) hold several steps each
        per_epoch = max(1, dm.train_steps(batches) if hasattr(dm, "train_steps") else batches)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_factor(hp.warmup_epochs, per_epoch,
                                                                      list(hp.milestones), hp.gamma))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _carry_over_step_count(checkpoint: dict) -> None:
    """A checkpoint written while Lightning took the optimiser step (automatic optimisation, augbench
    before it took the step itself) counts the steps in the automatic loop's progress: carry them over
    to the manual loop's, which Lightning restores next, so that ``trainer.global_step`` goes on."""
    loops = checkpoint.get("loops", {}).get("fit_loop", {})
    automatic = loops.get("epoch_loop.automatic_optimization.optim_progress", {}).get("optimizer", {}).get("step")
    manual = loops.get("epoch_loop.manual_optimization.optim_step_progress")
    if automatic and manual and not manual["total"]["completed"] and automatic["total"]["completed"]:
        loops["epoch_loop.manual_optimization.optim_step_progress"] = copy.deepcopy(automatic)


def warmup_factor(warmup_epochs: int, steps_per_epoch: int, milestones: list[int], gamma: float):
    """The lr multiplier at optimiser step ``step``: (step + 1)/(warmup steps) during the warmup, times
    gamma for every milestone epoch reached (the same decay as MultiStepLR)."""
    warmup = warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        epoch = step // steps_per_epoch
        return min(1.0, (step + 1) / warmup) * gamma ** sum(epoch >= m for m in milestones)

    return factor

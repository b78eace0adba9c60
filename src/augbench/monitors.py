"""Per-epoch measurements beyond the loss: how a run fits corrupted training labels."""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import Callback

from augbench.data import DeviceLoader


class LabelNoiseMonitor(Callback):
    """With ``data.label_noise``: at every epoch end, the training accuracy on the un-augmented
    training images, apart for the clean subset and the corrupted one (the mixup paper's memorisation
    measure). Goes into the epoch's history row as ``train_clean_acc1`` (clean images, their label),
    ``train_noisy_acc1`` (corrupted images, the wrong label they were trained on: memorised) and
    ``train_noisy_true_acc1`` (corrupted images, their true label)."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        dm = trainer.datamodule
        images, targets = dm.tensors["train"]
        device = pl_module.device
        corrupted = dm.noise["corrupted"].to(device)
        true = dm.noise["true"].to(device)
        loader = DeviceLoader(images, targets, dm.eval_batch_size, dm.spec.mean, dm.spec.std,
                              pin_memory=dm.pin_memory)
        was_training = pl_module.training
        pl_module.eval()
        preds = []
        with torch.no_grad(), trainer.precision_plugin.forward_context():
            for batch in loader:
                preds.append(pl_module(batch["image"].to(device, non_blocking=True)).argmax(1))
        pl_module.train(was_training)
        pred = torch.cat(preds)
        given = targets.to(device)

        def rate(hit, mask):
            n = mask.sum()
            return (hit & mask).sum().float() / n if n else torch.tensor(float("nan"))

        row = {"train_clean/acc1": rate(pred == given, ~corrupted),
               "train_noisy/acc1": rate(pred == given, corrupted),
               "train_noisy_true/acc1": rate(pred == true, corrupted)}
        pl_module.log_dict(row)
        pl_module._eval_row |= row

"""The first augmented batch of a run, in TensorBoard."""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import Callback

from augbench.data import steps_of


class GalleryLogger(Callback):
    """Sends the first augmented training batch of a fresh run to TensorBoard's Images tab."""

    def __init__(self, n_images: int = 32):
        self.n_images = n_images

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch != 0 or batch_idx != 0 or trainer.logger is None:
            return
        from torchvision.utils import make_grid  # only needed once per run

        batch = steps_of(batch)[0]
        spec = trainer.datamodule.spec
        mean = torch.tensor(spec.mean, device=batch["image"].device).view(1, -1, 1, 1)
        std = torch.tensor(spec.std, device=batch["image"].device).view(1, -1, 1, 1)
        images = (batch["image"][: self.n_images].float() * std + mean).clamp(0, 1)
        trainer.logger.experiment.add_image("augmented_batch", make_grid(images.cpu(), nrow=8), 0)
        text = describe_batch(batch, self.n_images)
        trainer.logger.experiment.add_text("augmented_batch_labels", text, 0)


def describe_batch(batch: dict, n: int) -> str:
    """One line per image: its label, and for mixed batches every partner's label and weight."""
    if "targets" not in batch:
        return "  \n".join(f"{i}: y={a}" for i, a in enumerate(batch["target"][:n].tolist()))
    targets, weights = batch["targets"][:n].tolist(), batch["weights"][:n].tolist()
    return "  \n".join(f"{i}: " + ", ".join(f"y={y} w={w:.2f}" for y, w in zip(ys, ws) if w > 0)
                       for i, (ys, ws) in enumerate(zip(targets, weights)))

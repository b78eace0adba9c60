"""Run one small training in this process and, if asked, SIGKILL it at a chosen point.

    python tests/kill_driver.py OUT DATA_ROOT [epoch|last_epoch|checkpoint|test|none] [OVERRIDE ...]
"""

import io
import os
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TINY, make_cfg  # noqa: E402

from augbench import module, training  # noqa: E402

# 3 epochs of 4 steps, with cutmix so that the augmentation generators matter
OVERRIDES = TINY + ["model=lenet", "aug=cutmix", "trainer.max_epochs=3", "trainer.limit_train_batches=4",
                    "trainer.deterministic=true", "optim.milestones=[2]"]


def die():
    os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finally blocks: as a preempted machine


def arm(point: str) -> None:
    if point in ("epoch", "last_epoch"):  # in the middle of the second (or the third and last) epoch
        loss = module.Classifier.training_loss  # called once per optimiser step, i = the step in the epoch
        epoch = 1 if point == "epoch" else 2

        def training_loss(self, batch, i):
            if self.current_epoch == epoch and i == 2:
                die()
            return loss(self, batch, i)

        module.Classifier.training_loss = training_loss
    elif point == "checkpoint":  # half of the second checkpoint written to disk
        save, calls = torch.save, []

        def torch_save(obj, f, *args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                buf = io.BytesIO()
                save(obj, buf)
                f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                f.flush()
                die()
            return save(obj, f, *args, **kwargs)

        torch.save = torch_save
    elif point == "test":
        module.Classifier.test_step = lambda self, batch, i: die()


if __name__ == "__main__":
    out, root = Path(sys.argv[1]), Path(sys.argv[2])
    if len(sys.argv) > 3 and sys.argv[3] != "none":
        arm(sys.argv[3])
    training.train(make_cfg(out, OVERRIDES + sys.argv[4:], root))

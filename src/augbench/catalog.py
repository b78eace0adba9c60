"""What augbench offers, as plain data: datasets and backbone names.

Config checks read this module; it imports neither torch nor Lightning, so a bad value is
rejected in the time it takes to start Python, not to load a deep-learning stack.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    channels: int
    size: int
    num_classes: int
    mean: tuple[float, ...]  # of the dataset's own training images, in [0, 1]
    std: tuple[float, ...]
    url: str


SPECS = {
    "cifar10": DatasetSpec(
        "cifar10", 3, 32, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    ),
    "cifar100": DatasetSpec(
        "cifar100", 3, 32, 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    ),
    # statistics of the 28x28 images zero-padded to 32x32, which is what the models see
    "fashion_mnist": DatasetSpec(
        "fashion_mnist", 1, 32, 10, (0.2190,), (0.3318,),
        "https://github.com/zalandoresearch/fashion-mnist",
    ),
}

# the backbones registered in augbench.models (a test keeps the two in step)
MODEL_NAMES = ("densenet", "lenet", "resnet18", "vgg")
# feature-level CutMix: the last point where each backbone can mix a feature map (0 = the input)
FEATURE_MIX_POINTS = {"densenet": 4, "lenet": 2, "resnet18": 4, "vgg": 4}

# the evaluation suite's measures (augbench.evaluation.suite) and its out-of-distribution sets
EVAL_MEASURES = ("calibration", "fgsm", "occlusion", "in_between", "ood", "corruption")
OOD_SETS = ("other_cifar", "cifar10", "cifar100", "fashion_mnist", "uniform", "gaussian")

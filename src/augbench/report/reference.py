"""Published numbers the report sets ours against: the study's Table 1 and the mixup paper's Table 2."""

from __future__ import annotations

DATASETS = ("cifar10", "cifar100")
MODELS = ("resnet18", "lenet", "densenet", "vgg")
AUGS = ("baseline", "baseline_plus", "cutout", "mixup", "cutmix")

# The study's Table 1 (REFERENCE.md): final test accuracy in %, (mean, the study's "95%"
# figure, which is 1.96 * sample std), columns in AUGS order.
STUDY_ROWS = {
    ("cifar10", "resnet18"): [(88.97, 0.73), (94.99, 0.24), (95.90, 0.28), (95.77, 0.46), (96.20, 0.48)],
    ("cifar10", "lenet"): [(63.63, 3.15), (75.15, 1.45), (71.60, 1.28), (74.95, 0.48), (70.01, 0.47)],
    ("cifar10", "densenet"): [(91.23, 0.28), (94.48, 0.22), (95.21, 0.30), (95.07, 0.19), (95.79, 0.23)],
    ("cifar10", "vgg"): [(87.64, 0.30), (92.26, 0.51), (92.87, 0.31), (92.43, 0.45), (93.26, 0.43)],
    ("cifar100", "resnet18"): [(63.26, 0.78), (77.50, 0.88), (77.63, 0.81), (79.03, 0.41), (79.77, 0.58)],
    ("cifar100", "lenet"): [(24.33, 1.30), (41.32, 0.81), (37.30, 1.18), (40.68, 0.95), (35.55, 0.19)],
    ("cifar100", "densenet"): [(70.13, 0.53), (75.94, 0.98), (76.88, 0.51), (77.23, 0.58), (77.79, 0.38)],
    ("cifar100", "vgg"): [(61.30, 0.71), (71.12, 0.66), (69.93, 0.16), (71.99, 0.38), (73.78, 0.86)],
}
STUDY = {(d, m, a): v for (d, m), row in STUDY_ROWS.items() for a, v in zip(AUGS, row)}

# The mixup paper (Zhang et al., ICLR 2018), Table 2: test error (%) best / last epoch under
# corrupted labels, PreAct ResNet-18 on CIFAR-10, 200 epochs. {noise rate: [(regime, best, last)]}.
MIXUP_TABLE2_SETUP = "PreAct ResNet-18, CIFAR-10, 200 epochs"
MIXUP_TABLE2 = {
    0.2: [("ERM", 12.7, 16.6), ("mixup α=8", 5.9, 6.4)],
    0.5: [("ERM", 18.8, 44.6), ("mixup α=32", 11.3, 12.7)],
    0.8: [("ERM", 36.5, 73.9), ("mixup α=32", 25.3, 30.9)],
}

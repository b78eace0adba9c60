"""Section 2: batched augmentation against per-image PIL/tensor code and per-batch reference code, on the CPU."""

from __future__ import annotations

import statistics

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

from augbench import augment
from augbench.bench.common import CIFAR, REGIMES, _interleaved, _log
from augbench.data import DeviceLoader


# The baselines are written here, in the style of each method's reference code (not copied).

_rng = np.random.default_rng(0)


def ref_cutout(img: torch.Tensor, length: int = 16) -> torch.Tensor:
    """Per image, after Normalize, like the Cutout paper's transform: a numpy-drawn centre, a mask."""
    _, h, w = img.shape
    cy, cx = _rng.integers(h), _rng.integers(w)
    mask = torch.ones(h, w)
    mask[max(cy - length // 2, 0): cy + length // 2, max(cx - length // 2, 0): cx + length // 2] = 0
    return img * mask


def _box(h: int, w: int, lam: float):
    """CutMix's box: centre uniform, sides W·√(1-λ) by H·√(1-λ), clipped at the border."""
    cut = np.sqrt(1.0 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = _rng.integers(h), _rng.integers(w)
    return slice(max(cy - ch // 2, 0), min(cy + ch // 2, h)), slice(max(cx - cw // 2, 0), min(cx + cw // 2, w))


def ref_mixup(x, y, alpha=1.0):
    """Per batch, like the mixup reference code: numpy λ, torch permutation."""
    lam = _rng.beta(alpha, alpha)
    j = torch.randperm(len(x))
    return lam * x + (1 - lam) * x[j], y[j], lam


def ref_cutmix(x, y, alpha=1.0, prob=1.0):
    """Per batch, like the CutMix reference code; writes in place, as it does, into a fresh batch."""
    if _rng.random() >= prob:
        return x, y, 1.0
    lam = _rng.beta(alpha, alpha)
    j = torch.randperm(len(x))
    rows, cols = _box(x.shape[2], x.shape[3], lam)
    x[:, :, rows, cols] = x[j, :, rows, cols]
    return x, y[j], 1 - (rows.stop - rows.start) * (cols.stop - cols.start) / (x.shape[2] * x.shape[3])


def per_image_mix(x, y, paste: bool, alpha=1.0):
    """Per image, like Dataset-wrapper implementations: each image mixed with a random partner, own λ."""
    out, lams, partners = [], [], []
    for i in range(len(x)):
        j, lam = int(_rng.integers(len(x))), _rng.beta(alpha, alpha)
        if paste:
            rows, cols = _box(x.shape[2], x.shape[3], lam)
            img = x[i].clone()
            img[:, rows, cols] = x[j, :, rows, cols]
            lam = 1 - (rows.stop - rows.start) * (cols.stop - cols.start) / (x.shape[2] * x.shape[3])
        else:
            img = lam * x[i] + (1 - lam) * x[j]
        out.append(img)
        lams.append(lam)
        partners.append(y[j])
    return torch.stack(out), torch.stack(partners), torch.tensor(lams)


def bench_augment(args, host) -> list[dict]:
    """images/s of augbench's batched augmentation and of the conventional per-image code, on the CPU
    (run on one thread, see ``_one_thread``; the baseline is single-threaded anyway)."""
    n, bs = args.aug_images, args.batch_size
    x8, y = host[0][:n].contiguous(), host[1][:n].contiguous()
    hwc = x8.permute(0, 2, 3, 1).contiguous().numpy()  # CIFAR10.data's layout
    labels = y.tolist()
    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(CIFAR.mean, CIFAR.std)])
    cpu = torch.device("cpu")
    rows = []

    def row(name, ours, theirs, how, regime=False):
        times = _interleaved({"ours": ours, "theirs": theirs}, args.aug_windows)
        a, b = (statistics.median(n / t for t in times[k]) for k in ("ours", "theirs"))
        rows.append({"name": name, "regime": regime, "augbench_images_per_s": a, "baseline_images_per_s": b,
                     "speedup": a / b, "baseline": how})
        _log(f"aug {name}: augbench {a:.0f} img/s, baseline {b:.0f} img/s, x{a / b:.1f}")

    # whole regimes: stored uint8 images in, augmented normalised batch out
    for regime, make in REGIMES.items():
        augs = make()
        for a in augs:
            a.prepare(CIFAR.mean, CIFAR.std, cpu)
        loader = DeviceLoader(x8, y, bs, CIFAR.mean, CIFAR.std)

        def ours(augs=augs, loader=loader):
            for batch in loader:
                for a in augs:
                    a.apply(batch)

        def theirs(regime=regime):
            for i in range(0, n - bs + 1, bs):
                # what CIFAR10.__getitem__ and default_collate do, one image at a time
                imgs = [tf(Image.fromarray(hwc[k])) for k in range(i, i + bs)]
                if regime == "cutout":
                    imgs = [ref_cutout(im) for im in imgs]
                xb, yb = torch.stack(imgs), torch.tensor(labels[i: i + bs])
                if regime == "mixup":
                    ref_mixup(xb, yb)
                elif regime == "cutmix":
                    ref_cutmix(xb, yb)

        how = {"baseline_plus": "per image: PIL RandomCrop+Flip, ToTensor, Normalize; stack",
               "cutout": "as baseline_plus, then per-image Cutout tensor op",
               "mixup": "as baseline_plus, then per-batch mixup (reference style)",
               "cutmix": "as baseline_plus, then per-batch CutMix (reference style)"}[regime]
        row(regime, ours, theirs, how + "; one process", regime=True)

    # the mixing ops alone, on a normalised float batch
    xf = next(iter(DeviceLoader(x8, y, bs, CIFAR.mean, CIFAR.std)))["image"]
    yb, g, reps = y[:bs], torch.Generator().manual_seed(0), max(1, n // bs)
    xc = xf.clone()  # the CutMix reference writes in place: give it its own batch, keep xf intact

    def repeat(fn):
        return lambda: [fn() for _ in range(reps)]

    ops = [
        ("cutout op", lambda: augment.cutout(xf, n_holes=1, length=16, generator=g),
         lambda: torch.stack([ref_cutout(im) for im in xf]), "per-image tensor loop (Cutout paper style)"),
        ("mixup op", lambda: augment.mixup(xf, yb, alpha=1.0, generator=g),
         lambda: ref_mixup(xf, yb), "per batch, numpy λ + torch permutation (reference style)"),
        ("mixup op, λ per image", lambda: augment.mixup(xf, yb, alpha=1.0, generator=g, per_sample=True),
         lambda: per_image_mix(xf, yb, paste=False), "per-image loop (Dataset-wrapper style)"),
        ("cutmix op", lambda: augment.cutmix(xf, yb, alpha=1.0, prob=1.0, generator=g),
         lambda: ref_cutmix(xc, yb), "per batch, numpy box + slicing, in place (reference style)"),
        ("cutmix op, box per image",
         lambda: augment.cutmix(xf, yb, alpha=1.0, prob=1.0, generator=g, per_sample=True),
         lambda: per_image_mix(xf, yb, paste=True), "per-image loop (Dataset-wrapper style)"),
    ]
    for name, ours, theirs, how in ops:
        row(name, repeat(ours), repeat(theirs), how)
    return rows



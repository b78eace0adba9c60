"""The augmentation gallery: the same training images under every regime of conf/aug.

    python -m augbench.gallery --data fashion_mnist --out gallery.png

Each regime runs through the very callbacks training uses (with their default knobs), on one batch.
Mixed images are captioned with every partner's label and weight, like the study's figures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from augbench.data import SPECS, DeviceLoader, default_root, load, prepare  # noqa: E402
from augbench.runs import atomic_write  # noqa: E402

CLASSES = {
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    "fashion_mnist": ("T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                      "boot"),
}


AUG_CONF = Path(__file__).resolve().parents[2] / "conf" / "aug"  # the checkout's config group
STUDY = ("baseline", "baseline_plus", "cutout", "mixup", "cutmix")


def regimes(seed: int) -> dict[str, list]:
    """{regime: its callbacks with their default knobs}: every option of conf/aug, the study's five first."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    names = sorted((p.stem for p in AUG_CONF.glob("*.yaml")),
                   key=lambda n: (STUDY.index(n) if n in STUDY else len(STUDY), n))
    out = {}
    for name in names:
        cfg = OmegaConf.create({"seed": seed, "aug": OmegaConf.load(AUG_CONF / f"{name}.yaml")})
        out[name] = [instantiate(c) for c in cfg.aug.callbacks]
    return out


def augmented_batches(images: torch.Tensor, targets: torch.Tensor, data: str, seed: int = 0) -> dict[str, dict]:
    """{regime: batch dict} for one uint8 batch, each regime applied as in training."""
    spec = SPECS[data]
    clean = next(iter(DeviceLoader(images, targets, len(images), spec.mean, spec.std)))
    out = {}
    for name, callbacks in regimes(seed).items():
        batch = {k: v.clone() for k, v in clean.items()}
        for cb in callbacks:
            cb.prepare(spec.mean, spec.std, images.device)
            cb.apply(batch)
        out[name] = batch
    return out


def caption(batch: dict, i: int, names) -> str:
    """The image's label, or every partner's label with its weight."""
    label = lambda k: names[k] if names else str(k)  # noqa: E731
    if "targets" not in batch:
        return label(int(batch["target"][i]))
    parts = [(int(y), float(w)) for y, w in zip(batch["targets"][i], batch["weights"][i]) if float(w) > 0]
    if len(parts) == 1:
        return label(parts[0][0])
    return "\n".join(f"{label(y)} {w:.2f}" for y, w in parts)


def render(batches: dict[str, dict], data: str, out: Path) -> Path:
    spec = SPECS[data]
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    n = len(next(iter(batches.values()))["target"])
    lines = [b["targets"].shape[1] if "targets" in b else 1 for b in batches.values()]  # caption lines per row
    fig, axes = plt.subplots(len(batches), n, figsize=(1.6 * n, sum(1.75 + 0.15 * k for k in lines)), squeeze=False,
                             gridspec_kw={"height_ratios": [1.75 + 0.15 * k for k in lines]})
    for row, (name, batch) in enumerate(batches.items()):
        images = (batch["image"].cpu() * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()
        for i in range(n):
            ax = axes[row, i]
            ax.imshow(images[i].squeeze(-1) if spec.channels == 1 else images[i],
                      cmap="gray" if spec.channels == 1 else None, vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(caption(batch, i, CLASSES.get(data)), fontsize=7)
        axes[row, 0].set_ylabel(name, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: fig.savefig(f, format="png", dpi=110))  # never a half-written image
    plt.close(fig)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=sorted(SPECS), default=None,
                   help="dataset (default: cifar10 when ./data has it, else fashion_mnist)")
    p.add_argument("--root", default=None, help="dataset folder (default: as data.root in training)")
    p.add_argument("--no-verify", action="store_true", help="skip the md5 check (files you made yourself)")
    p.add_argument("--n", type=int, default=8, help="images per regime")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("gallery.png"))
    args = p.parse_args(argv)

    data = args.data or ("cifar10" if Path("data/cifar-10-batches-py").is_dir() else "fashion_mnist")
    root = Path(args.root or default_root(data))
    prepare(SPECS[data], root, download=True)
    train_x, train_y, _, _ = load(SPECS[data], root, verify=not args.no_verify)
    pick = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(args.seed))[: args.n]
    batches = augmented_batches(train_x[pick], train_y[pick], data, args.seed)
    print(f"wrote {render(batches, data, args.out)} ({data}, {args.n} images x {len(batches)} regimes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""White-box one-step FGSM (the CutMix paper's robustness check), top-1 under attack.

x_adv = clamp(x + ε·sign(∇ CE), 0, 1) in [0, 1] pixels. The gradient is taken w.r.t. the
normalised input z = (x − mean)/std; since ∂/∂x = (∂/∂z)/std with std > 0, its sign is the pixel
gradient's sign, so the step is exactly ε in pixel units (ε/std in normalised units) and the clamp
keeps a valid image. For integer ε the result stays on the 8-bit grid (k/255 ± ε/255).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from augbench.evaluation.common import (
    Model, Stats, batch_slices, eval_mode, model_device, normalise, to_unit,
)


@contextlib.contextmanager
def input_grad_only(model: Model) -> Iterator[None]:
    """Weights out of the autograd graph during the attack (no weight gradients computed or
    accumulated); each parameter's ``requires_grad`` restored afterwards."""
    params = list(model.parameters()) if isinstance(model, torch.nn.Module) else []
    before = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, before):
            p.requires_grad_(flag)


def gradient_sign(model: Model, x_unit: torch.Tensor, labels: torch.Tensor, mean: Stats,
                  std: Stats) -> torch.Tensor:
    """sign(∂ CE / ∂ normalised input), one batch."""
    with torch.enable_grad():
        z = normalise(x_unit, mean, std).detach().requires_grad_(True)
        # summed, not averaged: a 1/N factor could underflow small gradients to a zero sign
        loss = F.cross_entropy(model(z).float(), labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, z)
    return grad.sign()


def step(x_unit: torch.Tensor, sign: torch.Tensor, eps_pixels: float) -> torch.Tensor:
    return (x_unit + (eps_pixels / 255.0) * sign).clamp_(0.0, 1.0)


def eps_key(eps_pixels: float) -> str:
    return f"{eps_pixels:g}/255"


def _attacked_batches(model: Model, images_u8: torch.Tensor, labels: torch.Tensor, mean: Stats,
                      std: Stats, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(x_unit, labels, gradient sign) per batch, on the model's device, model in eval mode."""
    device = model_device(model, images_u8.device)
    with eval_mode(model), input_grad_only(model):
        for sl in batch_slices(len(images_u8), batch_size):
            x = to_unit(images_u8[sl].to(device, non_blocking=True))
            y = labels[sl].to(device, non_blocking=True)
            yield x, y, gradient_sign(model, x, y, mean, std)


def fgsm(model: Model, images_u8: torch.Tensor, labels: torch.Tensor, mean: Stats, std: Stats,
         eps_pixels: Sequence[float] = (1, 2, 4, 8), batch_size: int = 1000) -> dict[str, float]:
    """``{"1/255": top1, ...}``: top-1 (fraction) on FGSM images, one gradient per batch shared by
    every ε. ε = 0 reproduces clean accuracy exactly. Runs in the caller's precision (fp32 unless
    an autocast is active); not usable inside ``torch.inference_mode``."""
    correct = [0] * len(eps_pixels)
    for x, y, sign in _attacked_batches(model, images_u8, labels, mean, std, batch_size):
        with torch.no_grad():
            for i, eps in enumerate(eps_pixels):
                correct[i] += (model(normalise(step(x, sign, eps), mean, std)).argmax(1) == y).sum()
    n = max(len(images_u8), 1)
    return {eps_key(eps): float(c) / n for eps, c in zip(eps_pixels, correct)}


def fgsm_examples(model: Model, images_u8: torch.Tensor, labels: torch.Tensor, mean: Stats, std: Stats,
                  eps_pixels: float, batch_size: int = 1000) -> torch.Tensor:
    """The FGSM images themselves, float32 in [0, 1] on the model's device (for checks and figures)."""
    return torch.cat([step(x, sign, eps_pixels)
                      for x, _, sign in _attacked_batches(model, images_u8, labels, mean, std, batch_size)])

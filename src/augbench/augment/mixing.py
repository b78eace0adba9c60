"""Mixing: images blended or pasted across the batch, labels weighted by each partner's share.

A mixed batch carries K partners per image: ``targets`` (N, K) long and ``weights`` (N, K) float32
whose rows sum to 1; the loss is Σ_k w_k·CE(logits, y_k).

Each method is a draw (the generator's calls, plus a probability gate) and a pure part that builds
masks, partners and weights from the draws (static shapes, no host syncs: it compiles under
``torch.compile(fullgraph=True)``); the public function is the two in a row. λ comes back as an (N,)
float32 tensor, a broadcast view when it is one per batch."""

from __future__ import annotations

import math

import torch

from augbench.augment.common import (bands, beta_from_noise, beta_noise, cached, centres, check_alpha, check_prob,
                                     column, floor_uniform, is_number, outer, positions, require,
                                     uniform_and_beta_noise)


def two_partners(y: torch.Tensor, y_b: torch.Tensor, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A two-image mix as K = 2 partners: targets (y, y_b), weights (λ, 1−λ)."""
    return torch.stack([y, y_b], 1), torch.stack([lam, 1 - lam], 1)


# --------------------------------------------------------------------------- mixup
def mixup_draw(n: int, *, alpha: float, per_sample: bool = False, generator, device) -> dict:
    """λ's random numbers (one per batch, or per image), then one permutation ``j``."""
    check_alpha(alpha)
    noise = beta_noise(alpha, n if per_sample else 1, generator, device)
    return {"noise": noise, "j": torch.randperm(n, generator=generator, device=device)}


def mixup_apply(x: torch.Tensor, y: torch.Tensor, *, alpha: float, noise, j: torch.Tensor):
    """x̃ = λ·x + (1 − λ)·x[j] for the draws of :func:`mixup_draw`; returns (x̃, y[j], λ (N,))."""
    n = x.shape[0]
    lam = beta_from_noise(alpha, noise)
    lam_x = lam.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return torch.addcmul(lam_x * x, 1 - lam_x, x[j]), y[j], lam.expand(n)


def mixup(
    x: torch.Tensor, y: torch.Tensor, *, alpha: float, generator, per_sample: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """mixup: x̃ = λ·x + (1-λ)·x[j]; returns (x̃, y[j], λ) with λ float32 (N,).

    Loss: λ·CE(out, y) + (1-λ)·CE(out, y_b). One λ per batch unless per_sample.
    """
    draw = mixup_draw(x.shape[0], alpha=alpha, per_sample=per_sample, generator=generator, device=x.device)
    return mixup_apply(x, y, alpha=alpha, **draw)


# -------------------------------------------------------------------------- cutmix
CUTMIX_CENTERS = ("uniform", "gaussian")
CUTMIX_LABEL_MODES = ("area", "one_hot", "complete")


def check_cutmix(alpha, prob, center, sigma, fixed_lam, label_mode) -> None:
    check_alpha(alpha)
    check_prob(prob)
    require(center in CUTMIX_CENTERS, "center", center, "one of " + ", ".join(CUTMIX_CENTERS))
    require(is_number(sigma) and sigma > 0, "sigma", sigma, "a number > 0 (a fraction of the side)")
    require(fixed_lam is None or (is_number(fixed_lam) and 0 < fixed_lam < 1), "fixed_lam", fixed_lam,
            "null or a number in (0, 1)")
    require(label_mode in CUTMIX_LABEL_MODES, "label_mode", label_mode, "one of " + ", ".join(CUTMIX_LABEL_MODES))


def cutmix_draw(n: int, h: int, w: int, *, alpha: float, prob: float, per_sample: bool = False,
                center: str = "uniform", fixed_lam: float | None = None, generator, device) -> dict:
    """CutMix's draws, in the order of the original code: the gate's uniform, λ's random numbers (none
    for a fixed λ), the permutation ``j``, the box centres (x then y).

    ``gate`` (M,) bool, or None when ``prob`` >= 1 (every batch passes: U < 1 always holds; the
    uniform is still drawn, so the stream is the same); ``noise`` for λ; ``centre`` (2, M) long
    (uniform) or ``z`` (2, M) normals (center="gaussian"). On the CPU the stream is the original
    code's draw for draw: rand(M), Beta(α) (for α = 1 one more rand(M), fused into one call with the
    gate's), randperm(N), randint(W, M), randint(H, M) (one call when H = W)."""
    m = n if per_sample else 1
    if fixed_lam is None:
        u, noise = uniform_and_beta_noise(alpha, m, generator, device)
    else:
        u, noise = torch.rand(m, generator=generator, device=device), None
    draw = {"gate": u < prob if prob < 1.0 else None, "noise": noise,
            "j": torch.randperm(n, generator=generator, device=device)}
    if center == "uniform":
        draw["centre"] = centres((w, h), (m,), generator, device)
    else:
        draw["z"] = torch.randn(2, m, generator=generator, device=device)
    return draw


def cutmix_plan_from(draw: dict, y: torch.Tensor, h: int, w: int, *, alpha: float, sigma: float = 0.25,
                     fixed_lam: float | None = None, label_mode: str = "area"):
    """The mask (M, 1, h, w) bool, partner j (N,), y_b and λ (N,) of :func:`cutmix_plan` for given draws."""
    n, dev = y.shape[0], y.device
    gate, j = draw["gate"], draw["j"]
    if "z" in draw:  # round(c + sigma·side·z), clipped into [0, side − 1]
        centre = (draw["z"] * column((sigma * w, sigma * h), dev) + column((w / 2, h / 2), dev)).round()
        centre = torch.clamp(centre, column((0, 0), dev), column((w - 1, h - 1), dev))
    else:
        centre = draw["centre"]
    if fixed_lam is None:  # [c − ⌊side·√(1−λ)⌋//2, c + ⌊side·√(1−λ)⌋//2) = band of half-width ⌊side·√(1−λ)/2⌋
        half = torch.floor(torch.sqrt(1.0 - beta_from_noise(alpha, draw["noise"])) * column((w / 2, h / 2), dev))
    else:  # [c − side//2, c − side//2 + side): centred on c + (side odd)/2
        side_w, side_h = round(w * math.sqrt(1.0 - fixed_lam)), round(h * math.sqrt(1.0 - fixed_lam))
        half = column((side_w / 2, side_h / 2), dev)
        if side_w % 2 or side_h % 2:
            centre = centre + column((side_w % 2 / 2, side_h % 2 / 2), dev)
    cols, rows = bands(centre, half, (w, h))  # (M, W), (M, H)
    if gate is not None:
        rows = rows & gate[:, None]  # gated off: an empty box, so λ = 1 below
    box = outer(rows, cols)  # (M, H, W)
    if label_mode == "complete":  # 0.5 for every image that passed the gate, whatever its box
        lam = torch.full((box.shape[0],), 0.5, device=dev) if gate is None else gate * -0.5 + 1.0
    else:
        lam = 1.0 - box.sum((1, 2), dtype=torch.float32) / (h * w)  # the clipped box's share
        if label_mode == "one_hot":
            lam = (lam >= 0.5).float()
    y_b = y[j] if gate is None else torch.where(gate.expand(n), y[j], y)
    return box[:, None], j, y_b, lam.expand(n)


def cutmix_plan(
    y: torch.Tensor, h: int, w: int, *, alpha: float, prob: float, generator, per_sample: bool = False,
    center: str = "uniform", sigma: float = 0.25, fixed_lam: float | None = None, label_mode: str = "area",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """CutMix's draws for a batch of N maps of size h×w: (mask (M, 1, h, w) bool, partner j (N,), y_b, λ).

    ``cutmix`` applies it to the images; feature-level CutMix applies it to a feature map (its own h×w),
    so at the input both draw the same.

    λ is recomputed from the clipped box (1 - area/(H·W)), so it is the true share of
    the own image. The batch (each image, if per_sample) is mixed with probability
    ``prob``, gated once; unmixed images come back unchanged with y_b = y and λ = 1.

    The CutMix paper's Table 8 ablations (the defaults reproduce plain CutMix draw for draw):

    - ``center="gaussian"``: the box centre is ``round(c + sigma·side·z)``, z ~ N(0, 1), c = side/2
      (the image centre; the default box at c is symmetric), clipped into [0, side − 1], drawn per
      axis as ``randn(2, M)`` (row 0 → x, row 1 → y) in place of the two uniform ``randint``.
      ``sigma`` is a fraction of the side; the paper gives none, 0.25 (8 px at 32 px) is our choice:
      ±2σ spans the image, about 4.6% of centres per axis land on the clipped border.
    - ``fixed_lam=λ``: no Beta draw; a box of side ``round(W·√(1−λ))`` × ``round(H·√(1−λ))``
      occupying [c − side//2, c − side//2 + side), clipped (Fixed-size: 16×16 at 32 px, λ = 0.75).
      λ is still recomputed from the clipped box.
    - ``label_mode``: the returned λ is the weight of ``y`` (1 − λ that of ``y_b``). "area": the
      clipped-box share, as above. "one_hot": 1 if the own image holds at least half the pixels
      (ties → own image), else 0. "complete": 0.5 for every image that passed the gate, whatever
      its box (even an empty one); gated-off images keep λ = 1.
    """
    check_cutmix(alpha, prob, center, sigma, fixed_lam, label_mode)
    draw = cutmix_draw(y.shape[0], h, w, alpha=alpha, prob=prob, per_sample=per_sample, center=center,
                       fixed_lam=fixed_lam, generator=generator, device=y.device)
    return cutmix_plan_from(draw, y, h, w, alpha=alpha, sigma=sigma, fixed_lam=fixed_lam, label_mode=label_mode)


def paste(x: torch.Tensor, mask: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """x with the pixels of ``mask`` taken from x[j]: CutMix's image, a fresh tensor."""
    return torch.where(mask, x[j], x)


def cutmix(
    x: torch.Tensor, y: torch.Tensor, *, alpha: float, prob: float, generator, per_sample: bool = False,
    center: str = "uniform", sigma: float = 0.25, fixed_lam: float | None = None, label_mode: str = "area",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CutMix: paste the same box of x[j] into x; returns (x̃, y_b, λ), λ float32 (N,). The draws and
    the box are :func:`cutmix_plan`'s, for the image's size."""
    _, _, h, w = x.shape
    mask, j, y_b, lam = cutmix_plan(y, h, w, alpha=alpha, prob=prob, generator=generator, per_sample=per_sample,
                                    center=center, sigma=sigma, fixed_lam=fixed_lam, label_mode=label_mode)
    return paste(x, mask, j), y_b, lam


# ---------------------------------------------------------------------- mixup ⟷ cutmix
def mixup_cutmix_draw(n: int, h: int, w: int, *, mixup_alpha: float, cutmix_alpha: float, prob: float,
                      switch_prob: float, generator, device) -> dict:
    """``u = rand(2)`` (gate ``u[0] < prob``, None when prob >= 1; switch ``u[1] < switch_prob``), then
    mixup's draws, then CutMix's (gate 1). With mixup's α = 1 its λ is one more uniform, drawn in the
    same call as ``u`` (on the CPU the same stream)."""
    if mixup_alpha == 1.0:
        u = torch.rand(3, generator=generator, device=device)
        mix = {"noise": u[2:], "j": torch.randperm(n, generator=generator, device=device)}
    else:
        u = torch.rand(2, generator=generator, device=device)
        mix = mixup_draw(n, alpha=mixup_alpha, generator=generator, device=device)
    return {"gate": u[0] < prob if prob < 1.0 else None, "use_cut": u[1] < switch_prob, "mixup": mix,
            "cutmix": cutmix_draw(n, h, w, alpha=cutmix_alpha, prob=1.0, generator=generator, device=device)}


def mixup_cutmix_apply(x: torch.Tensor, y: torch.Tensor, *, mixup_alpha: float, cutmix_alpha: float, gate,
                       use_cut: torch.Tensor, mixup: dict, cutmix: dict):
    """Both candidates from their draws, picked on the device (see :func:`mixup_cutmix`)."""
    _, _, h, w = x.shape
    x_mu, yb_mu, lam_mu = mixup_apply(x, y, alpha=mixup_alpha, **mixup)
    mask, j, yb_cm, lam_cm = cutmix_plan_from(cutmix, y, h, w, alpha=cutmix_alpha)
    x_out = torch.where(use_cut, paste(x, mask, j), x_mu)
    y_b, lam = torch.where(use_cut, yb_cm, yb_mu), torch.where(use_cut, lam_cm, lam_mu)
    if gate is not None:  # not mixed: (x, y, 1)
        x_out, y_b, lam = torch.where(gate, x_out, x), torch.where(gate, y_b, y), lam.masked_fill(~gate, 1.0)
    return x_out, y_b, lam


def mixup_cutmix(
    x: torch.Tensor, y: torch.Tensor, *, mixup_alpha: float, cutmix_alpha: float, prob: float,
    switch_prob: float, generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """timm's Mixup switch (timm/data/mixup.py, mode="batch", correct_lam=True) without host syncs.

    Per batch: mixed with probability ``prob``; if mixed, CutMix (α = ``cutmix_alpha``, λ recomputed
    from the clipped box) with probability ``switch_prob``, else mixup (α = ``mixup_alpha``). Returns
    (x̃, y_b, λ) like :func:`mixup`; an unmixed batch comes back as (x, y, 1).

    Construction (what makes it sync-free): two uniforms are drawn first, ``u = rand(2)``; gate
    ``u[0] < prob``, switch ``u[1] < switch_prob``. Then both candidates are computed from the same
    generator, in this order: ``mixup(x, y, alpha=mixup_alpha)`` and ``cutmix(x, y, alpha=cutmix_alpha,
    prob=1)`` (the gate is applied here, once), and the result is picked with ``torch.where`` on the
    device booleans. Every draw has a fixed shape, so the generator advances the same amount
    whichever branch is taken. Unlike timm, the partner is a random permutation, not ``x.flip(0)``.
    """
    check_alpha(mixup_alpha, "mixup_alpha")
    check_alpha(cutmix_alpha, "cutmix_alpha")
    check_prob(prob, "prob")
    check_prob(switch_prob, "switch_prob")
    n, _, h, w = x.shape
    draw = mixup_cutmix_draw(n, h, w, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, prob=prob,
                             switch_prob=switch_prob, generator=generator, device=x.device)
    return mixup_cutmix_apply(x, y, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, **draw)


# --------------------------------------------------------------------------- RICAP
def ricap_noise(n: int, *, beta: float, generator, device) -> dict:
    """RICAP's random numbers in three calls: the boundary point's Beta noise, and ``u`` (4, N + 2)
    float64 uniforms: columns [:N] sort keys of the four permutations, the last two (x, y) each
    patch's crop origin."""
    check_alpha(beta, "beta")
    return {"noise": beta_noise(beta, 2, generator, device),
            "u": torch.rand(4, n + 2, generator=generator, device=device, dtype=torch.float64)}


@cached
def _patch_index(device) -> torch.Tensor:
    """Patch k = 2·row + column reads width (bw, W − bw)[column] and height (bh, H − bh)[row]."""
    return torch.tensor([[0, 1, 0, 1], [0, 0, 1, 1]], device=device)


def patch_sizes(bwh: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(2, 4) long: widths (row 0) and heights (row 1) of the top-left, top-right, bottom-left and
    bottom-right patches, for the boundary point ``bwh`` = (bw, bh)."""
    pair = torch.stack([bwh, column((w, h), bwh.device, torch.long)[:, 0] - bwh], 1)  # (2, 2): (b, side − b) per axis
    return pair.gather(1, _patch_index(bwh.device))


def ricap_from_noise(n: int, h: int, w: int, *, beta: float, noise, u: torch.Tensor) -> dict[str, torch.Tensor]:
    """:func:`ricap_draw`'s values from :func:`ricap_noise`'s numbers (pure)."""
    bwh = torch.round(beta_from_noise(beta, noise) * column((w, h), u.device)[:, 0]).long()  # (2,): bw, bh
    sizes = patch_sizes(bwh, h, w)
    perm = u[:, :n].argsort(dim=1)  # four independent uniform permutations (float64 keys: ties ~1e-12)
    # uniform on {0..side − size_k}, shared by the batch
    origin = floor_uniform(u[:, n:].t(), column((w + 1, h + 1), u.device) - sizes).long()
    return {"bw": bwh[0], "bh": bwh[1], "perm": perm, "ox": origin[0], "oy": origin[1]}


def ricap_draw(n: int, h: int, w: int, *, beta: float, generator, device) -> dict[str, torch.Tensor]:
    """RICAP's draws for one batch, all on the device (jackryo/ricap, trainers.py):

    - ``bw``, ``bh``: the boundary point, ``round(W·Beta(β,β))`` and ``round(H·Beta(β,β))`` as the
      official ``int(np.round(...))`` (torch.round also rounds half to even); 0-dim long.
    - ``perm`` (4, N): one uniform permutation of the batch per patch (the argsort of uniform keys).
    - ``ox``, ``oy`` (4,): each patch's crop origin, uniform integers in [0, W − w_k] and
      [0, H − h_k] inclusive (``np.random.randint(0, W - w_k + 1)``), shared by the whole batch.

    Patches k = 0..3 have sizes (w_k, h_k) = (bw, bh), (W−bw, bh), (bw, H−bh), (W−bw, H−bh).
    """
    return ricap_from_noise(n, h, w, beta=beta, **ricap_noise(n, beta=beta, generator=generator, device=device))


def ricap_patch(
    x: torch.Tensor, y: torch.Tensor, *, bw, bh, perm, ox, oy
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Patch four crops into each image for given draws (see :func:`ricap_draw`).

    Output pixel (r, c) lies in patch k = 2·[r ≥ bh] + [c ≥ bw]; it is pixel
    (oy_k + r − r0_k, ox_k + c − c0_k) of image ``perm[k, i]``, (r0_k, c0_k) being the patch's corner:
    flattened, ``(oy_k·W + ox_k) + ((r − r0)·W + (c − c0))``, a per-patch base plus a per-pixel term.
    One gather over the whole batch. Returns (x̃, targets (N, 4) long, weights (N, 4) float32), with
    ``targets[:, k] = y[perm[k]]`` and ``weights[:, k] = area_k / (H·W)``.
    """
    n, c, h, w = x.shape
    bwh = torch.stack([bw, bh])
    pos = positions(max(h, w), x.device)
    past = (pos >= bwh[:, None]).long()  # (2, L): column right of bw / row below bh
    local = pos - bwh[:, None] * past  # position inside its patch
    k = torch.add(past[0, :w], past[1, :h, None], alpha=2)  # (H, W)
    pixel = torch.add(ox, oy, alpha=w)[k] + torch.add(local[0, :w], local[1, :h, None], alpha=w)  # (H, W)
    source = perm.t()[:, k]  # (N, H, W): image index per output pixel
    x_out = x.reshape(n, c, h * w)[source, :, pixel].permute(0, 3, 1, 2).contiguous()  # advanced dims first
    area = patch_sizes(bwh, h, w).prod(0)  # (4,)
    return x_out, y[perm].t(), (area / (h * w)).float().expand(n, 4)


def ricap(
    x: torch.Tensor, y: torch.Tensor, *, beta: float, generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RICAP (Takahashi et al. 2018): four crops patched around one boundary point per batch.

    Returns (x̃, targets (N, 4) long, weights (N, 4) float32 rows summing to 1); the loss is
    Σ_k w_k·CE(y_k) with w_k the area share of patch k."""
    n, _, h, w = x.shape
    return ricap_patch(x, y, **ricap_draw(n, h, w, beta=beta, generator=generator, device=x.device))

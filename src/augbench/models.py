"""CIFAR-sized backbones of the study (3x3 stems, no ImageNet max-pool) and a registry.

Each builder takes ``in_channels`` and ``num_classes`` from the dataset, so every model runs on
CIFAR-10/100 (3x32x32) and on Fashion-MNIST padded to 1x32x32.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    def wrap(fn):
        MODELS[name] = fn
        return fn

    return wrap


def build_model(name: str, in_channels: int = 3, num_classes: int = 10, **options) -> nn.Module:
    """``options``: the builder's own (every backbone: ``batch_counters``, ``one_weight_cast``)."""
    if name not in MODELS:
        valid = ", ".join(sorted(MODELS))
        raise ValueError(f"model.name={name!r} is not a known model; choose one of: {valid}")
    return MODELS[name](in_channels=in_channels, num_classes=num_classes, **options)


# --- fewer kernels per training step, no number changed -------------------------------------------
# On a GPU every backbone of the study is host-bound: a step costs what its kernels cost to launch
# (21-32 µs each on an H200 machine, benchmarks/projection_h200.md). Two forward changes cut
# kernels without changing a number (same parameters and state-dict keys, outputs equal; tested):
# - the batch-norm step counters are advanced by one multi-tensor op per forward, not one op each;
# - under a lower-precision autocast every conv weight (and bias) is cast by one op (a concatenation,
#   a cast and views) instead of one cast per convolution, and the same in the backward pass.


class CountedBN(nn.BatchNorm2d):
    """BatchNorm2d whose step counter ``num_batches_tracked`` is advanced by its network, all at once
    (when ``counted_outside``); momentum is set, so the counter never enters the computation."""

    counted_outside = False

    def forward(self, x):
        if not self.counted_outside:
            return super().forward(x)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training,
                            self.momentum, self.eps)


class CastConv(nn.Conv2d):
    """Conv2d that uses ``cast_params`` (weight, bias; set by its network for one forward) in place of its own."""

    cast_params = None

    def forward(self, x):
        w, b = (self.weight, self.bias) if self.cast_params is None else self.cast_params
        return self._conv_forward(x, w, b)


def _flat(w: torch.Tensor) -> torch.Tensor:
    """``w`` as a 1-d view in its memory order (NCHW or channels_last)."""
    return w.reshape(-1) if w.dim() != 4 or w.is_contiguous() else w.permute(0, 2, 3, 1).reshape(-1)


def _unflat(flat: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A view of ``flat`` with the shape and strides of ``like`` (the inverse of ``_flat``)."""
    if like.dim() != 4 or like.is_contiguous():
        return flat.view(like.shape)
    o, i, h, w = like.shape
    return flat.view(o, h, w, i).permute(0, 3, 1, 2)


class FewerKernels(nn.Module):
    """Base of the study's backbones: call ``_fewer_kernels_init`` at the end of ``__init__`` and run the
    forward inside ``with self._fewer_kernels(x):``. ``batch_counters=False, one_weight_cast=False``
    gives the plain forward (the reference of the equality tests and of ``benchmarks/densenet.md``)."""

    def _fewer_kernels_init(self, batch_counters: bool = True, one_weight_cast: bool = True) -> None:
        self.batch_counters, self.one_weight_cast = batch_counters, one_weight_cast
        self._bns = [m for m in self.modules() if isinstance(m, CountedBN)]
        self._convs = [m for m in self.modules() if isinstance(m, CastConv)]
        for m in self._bns:
            m.counted_outside = batch_counters
        for m in self._convs:  # an instance attribute from the start: a compiled step's guards never see it appear
            m.cast_params = None

    def _cast_dtype(self, x) -> torch.dtype | None:
        """The autocast dtype the convolutions would cast their fp32 weights to, else None."""
        device = x.device.type
        if (not (self._convs and self.one_weight_cast and torch.is_autocast_enabled(device))
                or torch.compiler.is_compiling()):
            return None  # (the compiler fuses the casts itself)
        dtype = torch.get_autocast_dtype(device)
        return dtype if dtype != torch.float32 and self._convs[0].weight.dtype == torch.float32 else None

    @contextlib.contextmanager
    def _fewer_kernels(self, x):
        if self.batch_counters and self.training and self._bns:
            torch._foreach_add_([m.num_batches_tracked for m in self._bns], 1)
        dtype = self._cast_dtype(x)
        if dtype is not None:  # one cast for every conv weight and bias, as the views the convs then use
            tensors = [t for m in self._convs for t in (m.weight, m.bias) if t is not None]
            flat = torch.cat([_flat(t) for t in tensors]).to(dtype)
            views = iter([_unflat(piece, t) for piece, t in zip(flat.split([t.numel() for t in tensors]), tensors)])
            for m in self._convs:
                m.cast_params = (next(views), None if m.bias is None else next(views))
        try:
            yield
        finally:
            if dtype is not None:
                for m in self._convs:
                    m.cast_params = None


# --- ResNet-18 -------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = CastConv(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = CountedBN(planes)
        self.conv2 = CastConv(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = CountedBN(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(CastConv(in_planes, planes, 1, stride, bias=False), CountedBN(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(FewerKernels):
    def __init__(self, blocks=(2, 2, 2, 2), in_channels: int = 3, num_classes: int = 10, **fewer_kernels):
        super().__init__()
        self.conv1 = CastConv(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = CountedBN(64)
        layers, in_planes = [], 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks)):
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(BasicBlock(in_planes, planes, stride))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(512, num_classes)
        self._fewer_kernels_init(**fewer_kernels)

    # feature-level CutMix mixes at one of these points: 0 the input, 1 after the stem, 2/3/4 after stages 1/2/3
    # (each stage is two blocks; the first block of stages 2-4 halves the resolution)
    STRIDES = (1, 1, 1, 2, 4)

    def feature_size(self, point: int, size: int) -> int:
        return size // self.STRIDES[point]

    def forward(self, x, mix=None, mix_at: int = 0):
        """``mix`` (a function of a feature map) is applied at point ``mix_at``; None: a plain forward."""
        if mix is not None and mix_at == 0:
            x = mix(x)
        with self._fewer_kernels(x):
            out = F.relu(self.bn1(self.conv1(x)))
            for k, block in enumerate(self.layers):
                if mix is not None and k % 2 == 0 and mix_at == 1 + k // 2:
                    out = mix(out)
                out = block(out)
        # global average pool: adaptive_avg_pool2d's CUDA backward refuses trainer.deterministic=true
        out = out.mean((2, 3))
        return self.linear(out)


@register("resnet18")
def resnet18(in_channels: int = 3, num_classes: int = 10, **options) -> nn.Module:
    return ResNet((2, 2, 2, 2), in_channels, num_classes, **options)


# --- LeNet-5 ---------------------------------------------------------------------------------


class LeNet(FewerKernels):
    def __init__(self, in_channels: int = 3, num_classes: int = 10, **fewer_kernels):
        super().__init__()
        self.conv1 = CastConv(in_channels, 6, 5)
        self.conv2 = CastConv(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)
        self._fewer_kernels_init(**fewer_kernels)

    # feature-level CutMix points: 0 the input, 1/2 after the first/second conv + pool
    def feature_size(self, point: int, size: int) -> int:
        for _ in range(point):
            size = (size - 4) // 2  # 5×5 conv without padding, then 2×2 pooling
        return size

    def forward(self, x, mix=None, mix_at: int = 0):
        if mix is not None and mix_at == 0:
            x = mix(x)
        with self._fewer_kernels(x):
            out = F.max_pool2d(F.relu(self.conv1(x)), 2)
            if mix is not None and mix_at == 1:
                out = mix(out)
            out = F.max_pool2d(F.relu(self.conv2(out)), 2)
        if mix is not None and mix_at == 2:
            out = mix(out)
        out = F.relu(self.fc1(out.flatten(1)))
        out = F.relu(self.fc2(out))
        return self.fc3(out)


@register("lenet")
def lenet(in_channels: int = 3, num_classes: int = 10, **options) -> nn.Module:
    return LeNet(in_channels, num_classes, **options)


# --- DenseNet-BC (growth 12, blocks 6-12-24-16, compression 0.5) -----------------------------


class Bottleneck(nn.Module):
    def __init__(self, in_planes: int, growth: int):
        super().__init__()
        self.bn1 = CountedBN(in_planes)
        self.conv1 = CastConv(in_planes, 4 * growth, 1, bias=False)
        self.bn2 = CountedBN(4 * growth)
        self.conv2 = CastConv(4 * growth, growth, 3, padding=1, bias=False)

    def bottleneck(self, x):
        return self.conv1(F.relu(self.bn1(x)))

    def forward(self, x):
        out = self.conv2(F.relu(self.bn2(self.bottleneck(x))))
        return torch.cat([out, x], 1)


class Transition(nn.Module):
    def __init__(self, in_planes: int, out_planes: int):
        super().__init__()
        self.bn = CountedBN(in_planes)
        self.conv = CastConv(in_planes, out_planes, 1, bias=False)

    def forward(self, x):
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNet(FewerKernels):
    def __init__(self, blocks=(6, 12, 24, 16), growth: int = 12, reduction: float = 0.5,
                 in_channels: int = 3, num_classes: int = 10, *, batch_counters: bool = True,
                 one_weight_cast: bool = True):
        super().__init__()
        planes = 2 * growth
        self.conv1 = CastConv(in_channels, planes, 3, padding=1, bias=False)
        stages = []
        for i, n in enumerate(blocks):
            for _ in range(n):
                stages.append(Bottleneck(planes, growth))
                planes += growth
            if i < len(blocks) - 1:  # no transition after the last dense block
                out_planes = int(math.floor(planes * reduction))
                stages.append(Transition(planes, out_planes))
                planes = out_planes
        self.features = nn.Sequential(*stages)
        self.bn = CountedBN(planes)
        self.linear = nn.Linear(planes, num_classes)
        self._fewer_kernels_init(batch_counters, one_weight_cast)

    # feature-level CutMix points: 0 the input, 1 after the stem, 2/3/4 after transitions 1/2/3 (each
    # halves the resolution)
    def feature_size(self, point: int, size: int) -> int:
        return size // (1, 1, 2, 4, 8)[point]

    def _mixed_features(self, x, mix, mix_at: int):
        if mix_at == 0:
            x = mix(x)
        out = self.conv1(x)
        if mix_at == 1:
            out = mix(out)
        transitions = 0
        for stage in self.features:
            out = stage(out)
            transitions += isinstance(stage, Transition)
            if isinstance(stage, Transition) and mix_at == 1 + transitions:
                out = mix(out)
        return out

    def forward(self, x, mix=None, mix_at: int = 0):
        with self._fewer_kernels(x):
            if mix is None:
                out = self.features(self.conv1(x))
            else:
                out = self._mixed_features(x, mix, mix_at)
            out = F.relu(self.bn(out))
        return self.linear(out.mean((2, 3)))  # global average pool, deterministic on CUDA (see ResNet)


@register("densenet")
def densenet(in_channels: int = 3, num_classes: int = 10, **options) -> nn.Module:
    return DenseNet(in_channels=in_channels, num_classes=num_classes, **options)


# --- VGG-11 with BatchNorm -------------------------------------------------------------------

VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG(FewerKernels):
    def __init__(self, cfg=VGG11, in_channels: int = 3, num_classes: int = 10, **fewer_kernels):
        super().__init__()
        layers, c = [], in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [CastConv(c, v, 3, padding=1), CountedBN(v), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(512, num_classes)
        # feature-level CutMix points: 0 the input, 1 after the first conv block, 2/3/4 after poolings 1/2/3
        pools = [i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)]
        self._mix_after = {1: 2, 2: pools[0], 3: pools[1], 4: pools[2]}  # index of the layer the mix follows
        self._fewer_kernels_init(**fewer_kernels)

    def feature_size(self, point: int, size: int) -> int:
        return size // (1, 1, 2, 4, 8)[point]

    def forward(self, x, mix=None, mix_at: int = 0):
        if mix is not None and mix_at == 0:
            x = mix(x)
        with self._fewer_kernels(x):
            if mix is None:
                x = self.features(x)
            else:
                for i, layer in enumerate(self.features):
                    x = layer(x)
                    if i == self._mix_after.get(mix_at):
                        x = mix(x)
        return self.classifier(x.flatten(1))


@register("vgg")
def vgg(in_channels: int = 3, num_classes: int = 10, **options) -> nn.Module:
    return VGG(VGG11, in_channels, num_classes, **options)

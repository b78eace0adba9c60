"""Kernels a training step would launch on a GPU, counted on the CPU.

A ``TorchDispatchMode`` sees every aten op below autograd (forward, backward and optimiser ops alike,
composite ops already decomposed), once per call from Python or from the autograd engine, never the
ops that a kernel calls internally. Each op is weighed with the rule below; the weights stand for
what PyTorch's CUDA backend launches for that op. Counting on the CPU cannot see CUDA-only choices
(cuDNN's algorithm, whether an elementwise op needs a second kernel), so the figure is an estimate
by a stated rule, stable from run to run: the tracked figure of ``benchmarks/kernels.json``.

The rule (``kernels_of``):

- **free (0 kernels)**: ops that only make a new view or read metadata: every op whose schema
  returns an alias of an input without writing to it (``view``, ``t``, ``transpose``, ``permute``,
  ``expand``, ``squeeze``, ``unsqueeze``, ``slice``, ``select``, ``split``, ``unbind``, ``alias``,
  ``detach``, ``as_strided``, ...), plus ``_unsafe_view``, ``_reshape_alias``, the ``sym_*``
  size queries and the allocations (``empty``, ``empty_like``, ``empty_strided``, ``new_empty``,
  ``resize_``, ``set_``), which the caching allocator serves without a kernel, and the profiler's
  ``record_function`` marks that ``optimizer.step`` dispatches;
- **1 kernel**: every other op (elementwise, reductions, casts, copies, random draws, GEMMs);
- **several kernels** (``MULTI``): ops that PyTorch's CUDA code implements with several launches:
  batch norm (forward in training: statistics, running-stat update, normalisation = 3; backward:
  reduction + elementwise = 2), ``convolution`` (+1 for a bias), ``convolution_backward`` (1 per
  gradient asked for in ``output_mask``, 2 for the weight: cuDNN's weight gradient commonly runs
  split-K with a reduction), ``nll_loss_backward`` (zero fill + scatter = 2), ``randperm``
  (keys + radix sort + gather = 3), ``nonzero`` (count + select + the copy of the count to the host = 3,
  and a host sync), ``cat`` (one launch per 128 inputs), and indexing with a boolean mask (a ``nonzero``
  first, so +3 and a host sync);
- **multi-tensor ops** (``_foreach_*``, ``_fused_sgd_``): CUDA's ``multi_tensor_apply`` launches one
  kernel per group of tensors, a group holding at most 110/64/48/36/30 tensors for 1/2/3/4/5 tensor
  lists (the 4 KB kernel-argument limit) and at most 320 chunks of 65,536 elements; the count
  simulates that grouping on the actual tensor lists (with CUDA ≥ 12.1 larger argument lists may
  hold more tensors, so this is an upper bound);
- ``lift_fresh`` (a tensor made from Python data) counts 1: on a GPU that is a host-to-device copy.

Host syncs (ops whose result size or value the host must wait for: ``nonzero``, boolean-mask
indexing, ``_local_scalar_dense`` i.e. ``.item()``, ``equal``, ``is_nonzero``, ``masked_select``,
``unique``) are listed separately.

Bytes per op (``bytes_of``): the bytes of every tensor argument plus every tensor result, each at
its distinct elements (a broadcast dimension of stride 0 counts once), for ops of at least one
kernel; an in-place op counts its tensor once read and once written. That is the traffic of a
kernel that reads each input and writes each output once, a lower bound for ops that re-read.
FLOPs per op come from ``torch.utils.flop_counter``'s formulas (matmuls and convolutions, forward
and backward), the ones ``FlopCounterMode`` uses.

The GPU step's settings are mimicked where the CPU allows (``count_step``): channels_last, bf16
autocast (CPU autocast inserts the same kind of casts as CUDA's before convolutions and matmuls; its
op lists differ a little), fused SGD (``_fused_sgd_`` runs on the CPU; its kernels are counted with
CUDA's grouping), the callbacks of ``conf/aug`` applied as the Trainer applies them.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter, defaultdict

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

from augbench.data import SPECS

aten = torch.ops.aten

FREE = {"_unsafe_view", "_reshape_alias", "sym_size", "sym_stride", "sym_numel", "sym_storage_offset",
        "is_same_size", "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided",
        "resize_", "set_", "_has_compatible_shallow_copy_type", "lift_fresh_copy_",
        "_record_function_enter", "_record_function_enter_new", "_record_function_exit"}  # profiler marks
# op -> kernels it launches on CUDA (a number, or a function of the call's args and kwargs)
MULTI = {
    "native_batch_norm": 3, "_native_batch_norm_legit": 3, "_native_batch_norm_legit_functional": 3,
    "cudnn_batch_norm": 3, "native_batch_norm_backward": 2, "cudnn_batch_norm_backward": 2,
    "convolution": lambda a, kw: 1 + (len(a) > 2 and a[2] is not None),
    "convolution_backward": lambda a, kw: sum(w for w, on in zip((1, 2, 1), a[-1]) if on),
    "nll_loss_backward": 2, "randperm": 3, "nonzero": 3,
    "cat": lambda a, kw: max(1, math.ceil(len(a[0]) / 128)),
}
SYNCS = {"nonzero", "_local_scalar_dense", "equal", "is_nonzero", "masked_select", "unique", "_unique2",
         "unique_dim", "unique_consecutive", "item"}
# CUDA multi_tensor_apply: tensors per launch for 1..5 tensor lists, chunks per launch, chunk size
MTA_TENSORS, MTA_BLOCKS, MTA_CHUNK = (110, 64, 48, 36, 30), 320, 65_536


def op_name(func) -> str:
    return func.overloadpacket.__name__


def _tensor_lists(args) -> list[list[torch.Tensor]]:
    return [list(a) for a in args if isinstance(a, (list, tuple)) and a and isinstance(a[0], torch.Tensor)]


def multi_tensor_launches(lists: list[list[torch.Tensor]]) -> int:
    """Launches of CUDA's multi_tensor_apply over ``lists`` (all the same length), as its loop groups them."""
    if not lists or not lists[0]:
        return 0
    max_tensors = MTA_TENSORS[min(len(lists), len(MTA_TENSORS)) - 1]
    sizes = [t.numel() for t in lists[0] if t.numel()]
    launches, tensors, blocks = 0, 0, 0
    for i, numel in enumerate(sizes):
        tensors += 1
        chunks = math.ceil(numel / MTA_CHUNK)
        for c in range(chunks):
            blocks += 1
            last_chunk = c == chunks - 1
            if (tensors == max_tensors and last_chunk) or blocks == MTA_BLOCKS or (i == len(sizes) - 1 and last_chunk):
                launches += 1
                blocks = 0
                tensors = 0 if last_chunk else 1  # a tensor cut mid-way opens the next group
    return launches


def _has_bool_index(args) -> bool:
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else ()) or ())


def kernels_of(func, args, kwargs, out=None) -> int:
    """Kernels ``func(*args, **kwargs)`` launches on a GPU, by the rule of this module's docstring."""
    name = op_name(func)
    if name in FREE or (func.is_view and not name.endswith("_")):
        return 0
    if name.startswith("_foreach_") or name.startswith("_fused_"):
        lists = _tensor_lists(args)
        if not name.endswith("_") and lists:  # out-of-place: the results are one more list
            lists.append(lists[0])
        return multi_tensor_launches(lists)
    if name == "index" and _has_bool_index(args):
        return 1 + MULTI["nonzero"]
    k = MULTI.get(name, 1)
    return int(k(args, kwargs or {})) if callable(k) else k


def is_sync(func, args) -> bool:
    name = op_name(func)
    return name in SYNCS or (name in ("index", "index_put", "index_put_") and _has_bool_index(args))


def _distinct_bytes(t: torch.Tensor) -> int:
    """Bytes of the distinct elements of ``t``: a broadcast (stride-0) dimension counts once."""
    if t.layout != torch.strided:
        return 0
    return math.prod(s for s, st in zip(t.shape, t.stride()) if st != 0) * t.element_size()


def bytes_of(args, kwargs, out) -> int:
    """Bytes read and written by one op: every tensor argument and every tensor result, once each."""
    flat, _ = tree_flatten((args, kwargs or {}, out))
    return sum(_distinct_bytes(t) for t in flat if isinstance(t, torch.Tensor))


def flops_of(func, args, kwargs, out) -> int:
    formula = flop_registry.get(func.overloadpacket)
    return int(formula(*args, **(kwargs or {}), out_val=out)) if formula else 0


class KernelCounter(TorchDispatchMode):
    """Counts, per phase, the kernels (by op), the free ops, the host syncs, the bytes and the FLOPs
    of everything dispatched below autograd while it is active. ``with counter.phase("name"):`` files
    the ops that follow under that phase (default ``"step"``)."""

    def __init__(self):
        super().__init__()
        self.current = "step"
        self.kernels: dict[str, Counter] = defaultdict(Counter)
        self.free: dict[str, Counter] = defaultdict(Counter)
        self.syncs: dict[str, Counter] = defaultdict(Counter)
        self.bytes: Counter = Counter()
        self.flops: Counter = Counter()
        self.op_bytes: dict[str, Counter] = defaultdict(Counter)

    @contextlib.contextmanager
    def phase(self, name: str):
        before, self.current = self.current, name
        try:
            yield self
        finally:
            self.current = before

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        k, name = kernels_of(func, args, kwargs, out), op_name(func)
        if k:
            self.kernels[self.current][name] += k
            moved = bytes_of(args, kwargs, out)
            self.bytes[self.current] += moved
            self.op_bytes[self.current][name] += moved
            self.flops[self.current] += flops_of(func, args, kwargs, out)
        else:
            self.free[self.current][name] += 1
        if is_sync(func, args):
            self.syncs[self.current][name] += 1
        return out

    def merge(self, other: KernelCounter) -> None:
        """Adds ``other``'s counts, phase by phase."""
        for mine, theirs in ((self.kernels, other.kernels), (self.free, other.free), (self.syncs, other.syncs),
                             (self.op_bytes, other.op_bytes)):
            for phase, counts in theirs.items():
                mine[phase].update(counts)
        self.bytes.update(other.bytes)
        self.flops.update(other.flops)

    def total(self) -> Counter:
        """Kernels by op over all phases."""
        return sum(self.kernels.values(), Counter())

    def summary(self) -> dict:
        phases = list(dict.fromkeys([*self.kernels, *self.free, *self.bytes]))
        return {p: {"kernels": self.kernels[p].total(), "bytes": self.bytes[p], "flops": self.flops[p],
                    "free_ops": self.free[p].total(), "host_syncs": self.syncs[p].total(),
                    "by_op": dict(self.kernels[p].most_common())} for p in phases}


def count_kernels(fn, *args, **kwargs) -> Counter:
    """{op: kernels} that ``fn(*args, **kwargs)`` launches on a GPU by this module's rule (view ops
    left out); ``.total()`` is the kernel count. Deterministic for a deterministic ``fn``."""
    with KernelCounter() as counter:
        fn(*args, **kwargs)
    return counter.total()


# --- a training step, phase by phase -------------------------------------------------------------

GPU_STEP = dict(precision="bf16-mixed", channels_last=True, fused=True)  # what training uses on a recent GPU
CIFAR_SPEC = SPECS["cifar10"]


def synthetic_host(images: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A resident uint8 CIFAR-shaped training set (kernel counts do not depend on pixel values)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (images, 3, 32, 32), dtype=torch.uint8, generator=g),
            torch.randint(0, 10, (images,), generator=g))


class StepCounter:
    """augbench's training step of ``model`` on the CPU with the GPU's settings, built once and counted
    (or timed) under one regime after another: ``count(callbacks)`` swaps the regime's callbacks in and
    counts one step by phase (see ``count_step``)."""

    def __init__(self, model: str, *, batch_size: int = 128, steps: int = 32, net: torch.nn.Module | None = None,
                 seed: int = 0, **settings):
        from augbench.bench.pipelines import augbench_step

        self.counter, self.augs, self.i, self.batch_size, self.trained = KernelCounter(), [], 1, batch_size, {}
        torch.manual_seed(seed)
        # one epoch long enough for every step this counter will take: no epoch boundary inside
        self.step = augbench_step(model, synthetic_host((steps + 1) * batch_size, seed), CIFAR_SPEC, torch.device("cpu"),
                                  self.augs, batch_size, net=net, phase=self._phase, **(GPU_STEP | settings))
        self.step(0)  # momentum buffers exist from here on, as in every later step

    def _phase(self, name):
        return self.counter.phase(name)

    def use(self, callbacks: list) -> None:
        """Swap ``callbacks`` in, after one uncounted apply on a batch of the same shape (what a callback
        builds once and caches is not a per-step cost)."""
        g = torch.Generator().manual_seed(1)
        batch = {"image": torch.randn(self.batch_size, 3, 32, 32, generator=g),
                 "target": torch.randint(0, 10, (self.batch_size,), generator=g)}
        for cb in callbacks:
            cb.prepare(CIFAR_SPEC.mean, CIFAR_SPEC.std, torch.device("cpu"))
            cb.apply(batch)
        self.augs[:] = callbacks  # the step reads this very list

    def run(self) -> None:
        """One uncounted step under the current callbacks."""
        self.step(self.i)
        self.i += 1

    def count(self, callbacks: list) -> KernelCounter:
        """One step under ``callbacks``, counted. The training part (loss, forward, backward, optimiser)
        launches the same kernels for every batch of the same keys, shapes and dtypes, whatever the
        pixels and labels: it is counted once per such batch signature and reused."""
        self.use(callbacks)
        self.counter = KernelCounter()
        with self.counter:
            batch = self.step.make_batch()
        key = signature(batch)
        if key not in self.trained:
            trained = KernelCounter()
            self.counter, prepared = trained, self.counter
            with trained:
                self.step.train(batch, self.i)
            self.trained[key], self.counter = trained, prepared
        self.i += 1
        self.counter.merge(self.trained[key])
        return self.counter


def signature(batch: dict) -> tuple:
    """What the training part of a step depends on: the batch's keys, shapes and dtypes (and any
    non-tensor values, such as feature-level CutMix's layer)."""
    return tuple(sorted((k, signature(v) if isinstance(v, dict) else
                         (tuple(v.shape), str(v.dtype)) if isinstance(v, torch.Tensor) else repr(v))
                        for k, v in batch.items()))


def count_step(model: str, callbacks: list, *, batch_size: int = 128, net: torch.nn.Module | None = None,
               seed: int = 0, **settings) -> KernelCounter:
    """The kernels of one training step of ``model`` under ``callbacks`` (a regime of ``conf/aug``), by
    phase: data (the batch taken from the resident set and normalised), augmentation (each callback's
    ``apply``, as ``on_train_batch_start`` calls it), forward, loss (the rest of ``training_loss``:
    loss, train metrics, the NaN watch), backward, optimizer (zero_grad and step).

    ``settings`` (precision, channels_last, fused) default to ``GPU_STEP``. The second step of an epoch
    is counted, after an uncounted first step (momentum buffers exist then, as in every later step):
    once-per-epoch work (the epoch's permutation, reseeding) and periodic work (the NaN check reads
    the summed loss every 50 steps) are left out."""
    return StepCounter(model, batch_size=batch_size, steps=2, net=net, seed=seed, **settings).count(callbacks)

"""``python -m augbench.bench``: how fast augbench trains, against the conventional CIFAR pipeline.

One run on one device measures and writes ``<out>/bench_<device>.json`` and ``.md``:

1. per backbone, training images/s and seconds per 40,000-image epoch of (a) augbench's pipeline
   (resident uint8 data, batched baseline+ on the device, ``Classifier.training_loss``) and (b) the
   conventional one (torchvision ``CIFAR10`` + PIL transforms in DataLoader workers, fp32 eager,
   plain SGD loop), their ratio, peak memory (on a GPU: allocated, and reserved with the allocator's
   cache) and the projected GPU-hours of the whole grid;
2. on the CPU, batched augmentation against per-image PIL/tensor code and per-batch reference code;
3. a LeNet epoch through the Lightning Trainer against a plain PyTorch loop on the same data;
4. host syncs per training step, counted by patching the tensor-to-Python conversions;
5. the speed levers of augbench's step (channels_last, cudnn.benchmark, autocast, fused SGD,
   torch.compile, torch.compile's reduce-overhead mode), switched on one after another, each measured
   against the row before (a lever that fails is recorded as failed);
6. grid throughput with K runs per device: K processes training at once, their summed images/s
   and the runs finished per hour.

augbench's side trains as training does: the optimiser of ``augbench.module.make_sgd`` (fused SGD on
CUDA, foreach elsewhere) and the precision of ``--precision`` (``auto``: bf16-mixed on GPUs of compute
capability 8.0 and newer, 16-mixed with a gradient scaler on older ones, 32-true on the CPU).

Timings are medians of several windows after warm-up; shared machines are noisy, so read
ratios of interleaved measurements rather than single figures.

With ``--project <gpu>[,<gpu>...]`` (h100, a100, h200) it instead projects the GPU cost of the grid from
what a training step launches, counted on the CPU, and writes ``<out>/projection_<gpu>.{json,md}``;
``--check-kernels`` compares the kernel counts with the committed ``benchmarks/kernels.json`` and exits 1
when a cell grew, ``--update-kernels`` rewrites it; ``--densenet`` measures the attempts to cut
DenseNet's step and writes ``<out>/densenet.{json,md}``.

The package, one module per section: ``common`` (constants, timing, precision), ``pipelines`` (1),
``augment`` (2), ``trainer`` (3), ``syncs`` (4), ``levers`` (5), ``concurrency`` (6), ``markdown`` (the
report), ``cli`` (the command line); and for the projection: ``kernels`` (counting kernels, FLOPs and
bytes with a dispatch mode), ``projection`` (the step model and the CPU measurements), ``projection_md``
(its report), ``tracking`` (benchmarks/kernels.json), ``densenet`` (DenseNet's layers and attempts),
``projcli`` (their command line).
"""

from augbench.bench.augment import bench_augment
from augbench.bench.cli import main, parse_args, run
from augbench.bench.common import (CIFAR, EPOCH_IMAGES, GRID_RUNS, OPTIM, REGIMES, RUN_EPOCHS, _amp, _autocast_dtype,
                                   _peak_memory, _scaler, _sgd)
from augbench.bench.concurrency import bench_concurrency
from augbench.bench.levers import bench_levers
from augbench.bench.markdown import PEAK_CUDA_MD, _peak_cell, _peak_header, render_md
from augbench.bench.pipelines import augbench_step, bench_pipelines, conventional_step, grid_hours
from augbench.bench.syncs import bench_syncs, count_host_syncs
from augbench.bench.trainer import bench_trainer, plain_step

__all__ = ["CIFAR", "EPOCH_IMAGES", "GRID_RUNS", "OPTIM", "PEAK_CUDA_MD", "REGIMES", "RUN_EPOCHS", "augbench_step",
           "bench_augment", "bench_concurrency", "bench_levers", "bench_pipelines", "bench_syncs", "bench_trainer",
           "conventional_step", "count_host_syncs", "grid_hours", "main", "parse_args", "plain_step", "render_md",
           "run"]

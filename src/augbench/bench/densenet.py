"""DenseNet, the grid's dominant cost: kernels and bytes per layer and per block, and every attempt to
cut its step, each measured before and after in the same run (``python -m augbench.bench --densenet``,
which writes ``benchmarks/densenet.{json,md}``).

Attempts (``augbench.models.DenseNet`` as it was, as it is, and variants; same parameters and state-dict keys):

- ``before``: the DenseNet as it was (one op per batch-norm step counter, one weight cast per conv);
- ``batch_counters``: the 120 step counters advanced by one multi-tensor op per forward;
- ``one_weight_cast``: and every conv weight cast to bf16 by one op (concatenate, cast, views);
- ``memory_efficient``: and each layer's concatenation + BN + ReLU + 1x1 conv recomputed in the backward
  pass (``torch.utils.checkpoint``, as memory-efficient DenseNets do) instead of being kept;
- ``shared_buffer``: features written in place into one preallocated buffer per block (no re-copy);
- ``compile``: ``torch.compile`` of the backbone (what ``model.compile=true`` does), in a child process;
- ``whole_step``: forward, loss, backward and SGD update compiled as one graph (``model.compile_scope=step``,
  :mod:`augbench.wholestep`), in a child process.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.checkpoint import checkpoint

from augbench.bench.common import _f, _log
from augbench.bench.kernels import GPU_STEP, KernelCounter, StepCounter
from augbench.bench.projection import (BATCH, PROFILES, _median_interleaved, assumptions, cell, host_rates,
                                       project_step)
from augbench.callbacks import CropFlip
from augbench.models import Bottleneck, DenseNet, Transition

def memory_efficient(net: DenseNet) -> DenseNet:
    """Each layer's BN-ReLU-1x1 conv recomputed in the backward pass (``torch.utils.checkpoint``, as
    memory-efficient DenseNets do) instead of keeping its output and the normalised input."""
    for m in net.features:
        if isinstance(m, Bottleneck):
            def forward(x, m=m):
                out = checkpoint(m.bottleneck, x, use_reentrant=False) if torch.is_grad_enabled() else m.bottleneck(x)
                return torch.cat([m.conv2(torch.relu(m.bn2(out))), x], 1)

            m.forward = forward
    return net


VARIANTS = {
    "before": lambda: DenseNet(batch_counters=False, one_weight_cast=False),
    "batch_counters": lambda: DenseNet(one_weight_cast=False),
    "one_weight_cast": DenseNet,
    "memory_efficient": lambda: memory_efficient(DenseNet()),
}
ADOPTED = "one_weight_cast"  # the defaults of DenseNet


# --- per layer and per block ------------------------------------------------------------------------------


def layer_counts(batch: int = BATCH) -> list[dict]:
    """Kernels and bytes of each stage of DenseNet's features (forward and backward alone, bf16 autocast,
    channels_last, on the input each stage sees in the network), in the default (adopted) model."""
    net = DenseNet().to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False), torch.no_grad():
        h = net.conv1(x)
    rows, block, layer = [], 1, 0
    for m in net.features:
        h = h.detach().requires_grad_(True)
        counter = KernelCounter()
        with counter:
            with counter.phase("forward"), torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
                out = m(h)
            with counter.phase("grad"):  # the incoming gradient: not the stage's work
                grad = torch.ones_like(out)
            with counter.phase("backward"):
                out.backward(grad)
        s = counter.summary()
        layer += 1
        kind = "layer" if isinstance(m, Bottleneck) else "transition"
        rows.append({"block": block, "index": layer, "kind": kind, "in_channels": h.shape[1], "size": h.shape[-1],
                     **{f"{p}_kernels": s[p]["kernels"] for p in ("forward", "backward")},
                     **{f"{p}_bytes": s[p]["bytes"] for p in ("forward", "backward")},
                     "cat_bytes": counter.op_bytes["forward"]["cat"]})
        if isinstance(m, Transition):
            block, layer = block + 1, 0
        h = out.detach()
    return rows


def layer_table_md(rows: list[dict] | None = None) -> list[str]:
    rows = rows if rows is not None else layer_counts()
    lines = ["## DenseNet: kernels and bytes per layer and per block (counted)", "",
             "One layer = BN-ReLU-1x1 conv-BN-ReLU-3x3 conv, then the concatenation of its 12 new channels with "
             "every earlier feature map of the block; forward + backward of each stage alone, batch 128, bf16 "
             "autocast, channels_last, the adopted model. Bytes by the counter's rule (inputs + outputs of "
             "every kernel). A stage alone casts its two conv weights itself (2 kernels forward, 2 backward), which the "
             "whole adopted network does in one op for all convolutions.", "",
             "| block | stages | size | channels in (first–last) | kernels per layer fwd + bwd | kernels | "
             "GB moved | of which concatenation | GB per layer (first → last) |", "|---|---:|---:|---|---:|---:|---:|---:|---|"]
    for b in sorted({r["block"] for r in rows}):
        rs = [r for r in rows if r["block"] == b and r["kind"] == "layer"]
        tr = [r for r in rows if r["block"] == b and r["kind"] == "transition"]
        k = [r["forward_kernels"] + r["backward_kernels"] for r in rs]
        gb = [(r["forward_bytes"] + r["backward_bytes"]) / 1e9 for r in rs]
        lines.append(f"| {b} | {len(rs)} layers | {rs[0]['size']} | {rs[0]['in_channels']}–{rs[-1]['in_channels']} | "
                     f"{min(k)}–{max(k)} | {sum(k)} | {sum(gb):.2f} | {sum(r['cat_bytes'] for r in rs) / 1e9:.2f} | "
                     f"{gb[0]:.3f} → {gb[-1]:.3f} |")
        for t in tr:
            lines.append(f"| {b}→{b + 1} | transition | {t['size']} | {t['in_channels']} | "
                         f"{t['forward_kernels'] + t['backward_kernels']} | {t['forward_kernels'] + t['backward_kernels']} | "
                         f"{(t['forward_bytes'] + t['backward_bytes']) / 1e9:.2f} | | |")
    total_k = sum(r["forward_kernels"] + r["backward_kernels"] for r in rows)
    total_b = sum(r["forward_bytes"] + r["backward_bytes"] for r in rows) / 1e9
    return lines + ["", f"Features in all: {total_k} kernels, {total_b:.2f} GB per step (the stem, the head, "
                        "the loss, the optimiser and the data come on top)."]


# --- the attempts -----------------------------------------------------------------------------------------


def equality(make, batch: int = 8) -> dict:
    """A variant against ``before`` with the same weights: parameters, state-dict keys, and the largest
    differences of outputs, weight gradients and running statistics, in fp32 and under bf16 autocast."""
    torch.manual_seed(0)
    ref, var = VARIANTS["before"](), make()
    var.load_state_dict(ref.state_dict())
    out = {"params": sum(p.numel() for p in var.parameters()), "params_before": sum(p.numel() for p in ref.parameters()),
           "same_state_dict_keys": list(ref.state_dict()) == list(var.state_dict())}
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    for m in (ref, var):
        m.to(memory_format=torch.channels_last)
    for precision, amp in (("fp32", False), ("bf16", True)):
        results = []
        for m in (ref, var):
            m.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp, cache_enabled=False):
                y = m(x)
            y.float().sum().backward()
            results.append((y.detach().float(), [p.grad.float() for p in m.parameters()],
                            [b.float() for b in m.buffers()]))
        (y0, g0, b0), (y1, g1, b1) = results
        out[f"{precision}_output_max_diff"] = (y0 - y1).abs().max().item()
        out[f"{precision}_grad_max_diff"] = max((a - b).abs().max().item() for a, b in zip(g0, g1))
        out[f"{precision}_buffers_max_diff"] = max((a - b).abs().max().item() for a, b in zip(b0, b1))
    out["equal"] = (out["same_state_dict_keys"] and out["params"] == out["params_before"]
                    and all(out[f"{p}_{k}_max_diff"] <= 1e-5 for p in ("fp32", "bf16") for k in ("output", "grad", "buffers")))
    return out


def saved_for_backward(make, batch: int = BATCH) -> int:
    """Bytes of the distinct storages autograd keeps for the backward pass of one forward (bf16 autocast)."""
    seen = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    net = make().to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
        net(x)
    return sum(seen.values())


def shared_buffer_attempt() -> dict:
    """Each layer writes its new channels in place into one preallocated buffer per block and reads the
    block so far as a view of it (no concatenation). Autograd refuses: a layer's batch norm saved its
    input, a view of the buffer, and the next layer's in-place write bumps the buffer's version."""
    torch.manual_seed(0)
    layers = [Bottleneck(24 + 12 * i, 12) for i in range(3)]
    x = torch.randn(4, 24, 8, 8, requires_grad=True)
    buf = torch.zeros(4, 24 + 12 * len(layers), 8, 8)
    buf[:, -24:] = x  # newest channels first, as torch.cat([out, x]) orders them
    start = buf.shape[1] - 24
    try:
        for layer in layers:
            new = layer.conv2(torch.relu(layer.bn2(layer.bottleneck(buf[:, start:]))))
            start -= new.shape[1]
            buf[:, start:start + new.shape[1]] = new
        buf.sum().backward()
    except RuntimeError as e:
        return {"status": "rejected: fails", "error": str(e).splitlines()[0][:240]}
    return {"status": "ran"}


WRAPPER_CALL = re.compile(r"^\s*(?:[\w, ]+ = )?(cpp_fused_\w+|triton_\w+|extern_kernels\.\w+|"
                          r"(?:torch\.ops\.)?aten\.\w+(?:\.\w+)?)\((.*)$")


def wrapper_kernels() -> dict:
    """Kernels launched per call of the code inductor generated in this process (every ``call`` of
    every compiled graph: generated kernels, extern kernels and aten fallbacks; convolution_backward
    by the counter's rule)."""
    from torch._inductor.codecache import PyCodeCache

    counts = {"generated": 0, "extern": 0, "fallback": 0, "graphs": 0}
    for mod in PyCodeCache.modules:
        src = Path(mod.__file__).read_text()
        body = src[src.find("def call("):]
        if not body:
            continue
        counts["graphs"] += 1
        for line in body.splitlines()[1:]:
            if line and not line[0].isspace():
                break
            m = WRAPPER_CALL.match(line)
            if not m or m.group(1).startswith(("aten.empty", "torch.ops.aten.empty")):
                continue
            name = m.group(1)
            if "convolution_backward" in name:
                mask = re.findall(r"\[(True|False), (True|False), (True|False)\]", m.group(2))
                k = sum(w for w, on in zip((1, 2, 1), mask[-1]) if on == "True") if mask else 3
                counts["fallback" if "aten" in name else "extern"] += k
            else:
                counts["generated" if name.startswith(("cpp_", "triton_")) else
                       "extern" if name.startswith("extern") else "fallback"] += 1
    counts["kernels"] = counts["generated"] + counts["extern"] + counts["fallback"]
    return counts


def compiled_child(threads: int, rounds: int, scope: str = "backbone") -> None:
    """In a child process: compile DenseNet as ``model.compile=true`` with ``model.compile_scope=<scope>``
    does, count the kernels of the generated code and time the compiled step (batch 128, GPU settings);
    prints one JSON line. For the whole step, ``eager_rest_kernels`` counts what stays eager beyond the
    data and the augmentation: the epoch's sums, the NaN watch's copy and the rate's fill."""
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    step = StepCounter("densenet", steps=rounds + 4, compile_=True, compile_scope=scope)
    step.use([CropFlip()])
    step.run()
    compiled_s = time.perf_counter() - t0
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        step.run()
        times.append(time.perf_counter() - t)
    out = {"compile_s": compiled_s, "step_s": statistics.median(times), **wrapper_kernels()}
    if scope == "step":
        module, whole = step.step.module, step.step.whole
        with KernelCounter() as counter:
            module.record_step(torch.zeros(()), torch.zeros(()), 0)
            whole.lr.fill_(0.1)
        out["eager_rest_kernels"] = counter.total().total()
    print(json.dumps(out))


def compiled_attempt(timeout: float, threads: int, rounds: int = 2, scope: str = "backbone") -> dict:
    code = f"from augbench.bench.densenet import compiled_child; compiled_child({threads}, {rounds}, {scope!r})"
    t0 = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"not measured: compiling took longer than --compile-timeout {timeout:.0f} s on this CPU"}
    if done.returncode:
        return {"status": "failed: " + (done.stderr.strip().splitlines() or ["?"])[-1][:240]}
    return {"status": "measured", "wall_s": time.perf_counter() - t0, **json.loads(done.stdout.strip().splitlines()[-1])}


def _framework(args, out: Path) -> dict:
    """The framework overhead of the latest projection for the same GPU (or --framework-us, or none)."""
    if args.framework_us is not None:
        return {"framework_us": args.framework_us, "framework_kernels": args.framework_kernels or 0,
                "source": "--framework-us"}
    path = out / f"projection_{args.project or 'h100'}.json"
    if path.is_file():
        fw = json.loads(path.read_text())["framework"]
        return {"framework_us": fw["framework_us"], "framework_kernels": fw["framework_kernels"], "source": path.name}
    return {"framework_us": 0.0, "framework_kernels": 0, "source": "none (no projection yet): 0"}


def _project_compiled(adopted: dict, kernels: int, rate: dict, gpu: str, a: dict, fw: dict) -> dict:
    """A compiled step projected with its own kernel count, and the adopted eager step's FLOPs and bytes
    (the compiler fuses, so it moves no more: an upper bound for the device time)."""
    c = adopted | {"kernels": kernels, "host_s": kernels * rate["host_per_kernel_s"]}
    return project_step(c, PROFILES[gpu], a, fw)


def study(args, out: Path) -> dict:
    """Every attempt on DenseNet's baseline+ step, counted, timed (interleaved) and projected in one run."""
    gpu = args.project or "h100"
    a, fw = assumptions(args), _framework(args, out)
    rows = {}
    for name, make in VARIANTS.items():
        c = StepCounter("densenet", net=make()).count([CropFlip()])
        rows[name] = {**cell(c), "saved_for_backward_bytes": saved_for_backward(make), "equality": equality(make)}
        _log(f"densenet {name}: {rows[name]['kernels']} kernels, equal: {rows[name]['equality']['equal']}")
    # CPU timings, interleaved so that every variant sees the same machine load
    threads = torch.get_num_threads()
    full = {n: StepCounter("densenet", steps=2 * args.rounds + 4, net=make()) for n, make in VARIANTS.items()}
    for s in full.values():
        s.use([CropFlip()])
    for n, t in zip(full, _median_interleaved([s.run for s in full.values()], args.rounds)):
        rows[n]["cpu_step_s"] = t
    rate = host_rates({"baseline_plus": lambda: [CropFlip()]}, args.rounds)["baseline_plus"]
    for n in rows:
        rows[n] |= rate | {"host_s": rows[n]["kernels"] * rate["host_per_kernel_s"]}
        rows[n]["projected"] = project_step(rows[n], PROFILES[gpu], a, fw)
    compiled = compiled_attempt(args.compile_timeout, threads)
    if compiled["status"] == "measured":  # the eager parts of the step (data, aug, loss, optimiser) stay eager
        eager = sum(rows[ADOPTED]["phases"][p]["kernels"] for p in ("data", "augmentation", "loss", "optimizer"))
        compiled["step_kernels"] = eager + compiled["kernels"]
        compiled["projected"] = _project_compiled(rows[ADOPTED], compiled["step_kernels"], rate, gpu, a, fw)
    whole = compiled_attempt(args.compile_timeout, threads, scope="step")
    if whole["status"] == "measured":  # data and augmentation stay eager, and the few ops of eager_rest_kernels
        eager = sum(rows[ADOPTED]["phases"][p]["kernels"] for p in ("data", "augmentation"))
        whole["step_kernels"] = eager + whole["eager_rest_kernels"] + whole["kernels"]
        whole["projected"] = _project_compiled(rows[ADOPTED], whole["step_kernels"], rate, gpu, a, fw)
    result = {"gpu": gpu, "assumptions": a, "framework": fw, "variants": rows, "adopted": ADOPTED,
              "compile": compiled, "whole_step": whole, "shared_buffer": shared_buffer_attempt(),
              "layers": layer_counts()}
    (out / "densenet.json").write_text(json.dumps(result, indent=1) + "\n")
    md = render(result)
    (out / "densenet.md").write_text(md)
    print(md)
    return result


def render(r: dict) -> str:
    v, before = r["variants"], r["variants"]["before"]["projected"]["eager_s"]
    lines = ["# DenseNet: attempts to cut its training step (CPU counts and timings; GPU figures are PROJECTIONS)", "",
             f"DenseNet-BC (growth 12, blocks 6-12-24-16), baseline+ step, batch {BATCH}, settings of the GPU step "
             f"({GPU_STEP['precision']} autocast on the CPU, channels_last, fused SGD). Every variant is counted and "
             "timed in the same run; CPU step times are medians of interleaved steps on a shared 2-core machine "
             "(noisy: compare within a column). Projected step on one "
             f"{PROFILES[r['gpu']].name} with the default assumptions of `--project` and framework overhead "
             f"{r['framework']['framework_us']:.0f} µs ({r['framework']['source']}). Equal = same parameter "
             "count and state-dict keys, outputs, weight gradients and running statistics within 1e-5 of "
             "`before` with the same weights (fp32 and bf16 autocast).", "",
             "| attempt | kernels per step | GB moved | activations kept for backward (MB) | CPU step s (batch 128) | "
             "host ms here (kernels × this CPU's µs/kernel) | projected eager ms | × before | projected graphs ms | "
             "equal | verdict |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    verdicts = {"before": "the DenseNet as it was", "batch_counters": "adopted (default)",
                "one_weight_cast": "adopted (default)",
                "memory_efficient": "rejected: more kernels and bytes, and the recompute updates the batch-norm "
                                    "running statistics a second time (not equal)"}
    for n, row in v.items():
        p, e = row["projected"], row["equality"]
        lines.append(f"| {n} | {row['kernels']} | {row['bytes'] / 1e9:.2f} | {row['saved_for_backward_bytes'] / 2**20:.0f} | "
                     f"{row['cpu_step_s']:.3f} | {row['host_s'] * 1e3:.1f} | {p['eager_s'] * 1e3:.2f} | "
                     f"{before / p['eager_s']:.2f}× | {p['graphs_s'] * 1e3:.2f} | {'yes' if e['equal'] else 'NO'} | "
                     f"{verdicts[n]} |")
    c = r["compile"]
    if c["status"] == "measured":
        lines.append(f"| compile (`model.compile=true`) | {c['step_kernels']} ({c['generated']} generated, {c['extern']} "
                     f"extern, {c['fallback']} fallback in {c['graphs']} graphs; + eager data/aug/loss/optimiser) | "
                     f"(≤ eager) | | {c['step_s']:.3f} | | {c['projected']['eager_s'] * 1e3:.2f} | "
                     f"{before / c['projected']['eager_s']:.2f}× | {c['projected']['graphs_s'] * 1e3:.2f} | "
                     "within float tolerance (compiler) | offered, opt-in: the backbone's forward and backward "
                     "compiled, the loss and the update eager (Inductor's CPU code here; Triton on a GPU fuses "
                     "differently, so a GPU run decides); compile + first step "
                     f"{c['compile_s']:.0f} s here (Inductor caches compiled code on disk: a first, cold compile "
                     "takes minutes on this CPU) |")
    else:
        lines.append(f"| compile (`model.compile=true`) | | | | | | | | | | {c['status']} |")
    w = r.get("whole_step", {"status": "not run"})
    if w["status"] == "measured":
        lines.append(f"| whole step compiled (`model.compile_scope=step`) | {w['step_kernels']} ({w['generated']} "
                     f"generated, {w['extern']} extern, {w['fallback']} fallback in {w['graphs']} graph; + eager "
                     f"data/aug and {w['eager_rest_kernels']} bookkeeping) | (≤ eager) | | {w['step_s']:.3f} | "
                     f"{w['projected']['host_here_s'] * 1e3 - r['framework']['framework_us'] / 1e3:.1f} | "
                     f"{w['projected']['eager_s'] * 1e3:.2f} | {before / w['projected']['eager_s']:.2f}× | "
                     f"{w['projected']['graphs_s'] * 1e3:.2f} | within float tolerance (compiler; tested against "
                     "the eager step) | offered, opt-in: forward, loss, backward and update in one graph, so the "
                     "compiler fuses across them (Inductor's CPU code here; Triton on a GPU fuses differently, so "
                     f"a GPU run decides); compile + first step {w['compile_s']:.0f} s here |")
    else:
        lines.append(f"| whole step compiled (`model.compile_scope=step`) | | | | | | | | | | {w['status']} |")
    sb = r["shared_buffer"]
    lines.append(f"| shared buffer, in-place writes | | | | | | | | | | {sb['status']}: `{sb.get('error', '')}` |")
    adopted = v[r["adopted"]]["projected"]["eager_s"]
    graphs = v[r["adopted"]]["projected"]["graphs_s"]
    lines += ["", f"Adopted: `{r['adopted']}` (both changes, DenseNet's defaults): projected eager step "
              f"{before * 1e3:.2f} → {adopted * 1e3:.2f} ms, {before / adopted:.2f}× (target ≥ 1.5×: "
              f"{'met' if before / adopted >= 1.5 else 'MISSED'}). The rest of an eager layer is one kernel per op "
              "that the math needs (two batch norms, two ReLUs, two convolutions and the concatenation, and their "
              "backward), so eager changes that keep every number cannot go much further; a whole-step CUDA graph "
              f"takes the projected step to {graphs * 1e3:.2f} ms ({before / graphs:.2f}× the eager step before), "
              "because the step is then bound by the device, not by launches."]
    for label, x in (("the backbone compiled (`model.compile=true`)", c),
                     ("the whole step compiled as one graph (`model.compile_scope=step`)", w)):
        if x["status"] == "measured":
            e = x["projected"]["eager_s"]
            lines[-1] += (f" With {label}, opt-in (same parameters and state-dict keys, numbers within float "
                          f"tolerance), the step launches {x['step_kernels']} kernels by this count: projected "
                          f"{e * 1e3:.2f} ms launched one by one, {before / e:.2f}× before (≥ 1.5×: "
                          f"{'met' if before / e >= 1.5 else 'MISSED'} by this mode; counted on Inductor's CPU "
                          f"code, not measured on a GPU), {x['projected']['graphs_s'] * 1e3:.2f} ms with CUDA graphs.")
    lines += ["",
              "Bytes by the counter's rule (inputs + outputs of every kernel); activations = distinct storages "
              "autograd keeps for the backward pass of one forward. Equality details:", "",
              "| attempt | params | same keys | fp32 output / grad / buffers max diff | bf16 output / grad / buffers "
              "max diff |", "|---|---:|---|---|---|"]
    for n, row in v.items():
        e = row["equality"]
        lines.append(f"| {n} | {_f(e['params'])} | {e['same_state_dict_keys']} | "
                     + " | ".join(" / ".join(f"{e[f'{p}_{k}_max_diff']:.1e}" for k in ("output", "grad", "buffers"))
                                  for p in ("fp32", "bf16")) + " |")
    return "\n".join(lines + ["", *layer_table_md(r["layers"])]) + "\n"

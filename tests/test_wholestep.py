"""``model.compile_scope=step``: forward, loss, backward and the SGD update compiled as one graph.

The unit tests compile with the ``aot_eager`` backend (Dynamo's capture with ``fullgraph=True`` and
AOTAutograd's functionalisation, the aten ops run eagerly: seconds instead of Inductor's minutes per
backbone on these CPUs); the end-to-end runs use the real default, Inductor."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
import torch._dynamo
from torch._dynamo.backends.debugging import aot_eager

from hydra.utils import instantiate
from omegaconf import OmegaConf

from augbench.config import ConfigError, validate
from augbench.data import SPECS
from augbench.module import Classifier
from augbench.training import build_classifier, train
from augbench.wholestep import StepScopeError, WholeStep
from conftest import TINY, make_cfg, stop_training_at
from test_capture import CONF


def counting(compiled: list):
    """aot_eager, counting the graphs it is handed (a recompile is one more)."""
    def backend(gm, inputs):
        compiled.append(gm)
        return aot_eager(gm, inputs)
    return backend


def classifier(model: str, smoothing: float = 0.0) -> Classifier:
    torch.manual_seed(0)
    return Classifier(model, 3, 10, label_smoothing=smoothing)


def batches(aug: str, n: int = 3, size: int = 8, **knobs) -> list[dict]:
    """``n`` training batches as the callbacks of conf/aug/<aug>.yaml (with ``knobs``) leave them: hard,
    mixed or feature-mixed."""
    cfg = OmegaConf.create({"seed": 0, "aug": OmegaConf.load(CONF / f"{aug}.yaml")})
    cfg.aug.merge_with(knobs)
    callbacks, out = [instantiate(c) for c in cfg.aug.callbacks], []
    for cb in callbacks:
        cb.prepare(SPECS["cifar10"].mean, SPECS["cifar10"].std, "cpu")
    for i in range(n):
        g = torch.Generator().manual_seed(i)
        b = {"image": torch.randn(size, 3, 32, 32, generator=g), "target": torch.randint(0, 10, (size,), generator=g)}
        for cb in callbacks:
            if getattr(cb, "layer", 0):  # feature-level CutMix, as its on_train_batch_start does for ResNet-18
                cb.apply_to_features(b, classifier("resnet18").net.feature_size(cb.layer, size=32))
            else:
                cb.apply(b)
        out.append(b)
    return out


def eager_steps(m: Classifier, opt, data: list[dict], lrs: list[float], dtype) -> list[torch.Tensor]:
    """augbench's eager step, as Classifier._optimise takes it under Lightning's autocast."""
    losses = []
    for i, (b, lr) in enumerate(zip(data, lrs)):
        opt.param_groups[0]["lr"] = lr
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = m.training_loss(b, i)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return losses


def make_opt(m: Classifier) -> torch.optim.SGD:
    return m.configure_optimizers.__func__(SimpleNamespace(hparams=m.hparams, parameters=m.parameters,
                                                           device=m.device))["optimizer"]


@pytest.mark.parametrize("model,aug,precision,smoothing", [
    ("lenet", "baseline_plus", "32-true", 0.0),
    ("lenet", "mixup", "32-true", 0.1),           # mixed targets and label smoothing
    ("resnet18", "cutmix", "bf16-mixed", 0.0),    # batch norm's running statistics, bf16 autocast
])
def test_the_compiled_step_matches_the_eager_step(model, aug, precision, smoothing):
    """Three steps at three rates: the same losses, weights, batch-norm buffers and momentum buffers as
    augbench's eager step (to float rounding), one graph for all three (a new rate is no recompile),
    and the epoch's sums kept as the eager step keeps them."""
    dtype = torch.bfloat16 if precision == "bf16-mixed" else None
    data, lrs = batches(aug), [0.1, 0.05, 0.02]
    eager = classifier(model, smoothing)
    step_m = copy.deepcopy(eager)
    opt_e, opt_s = make_opt(eager), make_opt(step_m)
    losses_e = eager_steps(eager, opt_e, data, lrs, dtype)
    graphs = []
    ws = WholeStep(step_m, opt_s, precision, backend=counting(graphs))
    losses_s = []
    for i, (b, lr) in enumerate(zip(data, lrs)):
        opt_s.param_groups[0]["lr"] = lr
        loss, acc = ws(b)
        step_m.record_step(loss, acc, i)
        losses_s.append(loss)
    assert len(graphs) == 1
    tol = 1e-5 if dtype is None else 2e-2  # bf16: a last-bit difference in a bf16 conv output is 1e-2
    torch.testing.assert_close(torch.stack(losses_s), torch.stack(losses_e), rtol=tol, atol=tol)
    torch.testing.assert_close(step_m.train_sums, eager.train_sums, rtol=tol, atol=tol)
    for (name, p), q in zip(step_m.named_parameters(), eager.parameters()):
        torch.testing.assert_close(p, q, rtol=tol, atol=tol, msg=name)
        torch.testing.assert_close(opt_s.state[p]["momentum_buffer"], opt_e.state[q]["momentum_buffer"],
                                   rtol=tol, atol=tol * 10, msg=name)
    for (name, a), b in zip(step_m.named_buffers(), eager.buffers()):
        if name.endswith("num_batches_tracked"):
            assert torch.equal(a, b) and int(a) == len(data), name
        else:
            torch.testing.assert_close(a, b, rtol=tol, atol=tol, msg=name)
    assert any(not torch.equal(p, q) for p, q in zip(step_m.parameters(), classifier(model).parameters()))


def test_feature_level_cutmix_compiles_into_the_step():
    """CutMix pasted into a feature map (aug.layer 2, ResNet-18): the partner's box inside the graph. After
    one step the gradients (the momentum buffers) equal the eager step's; later steps drift apart by
    rounding only (the rate as a tensor multiplies before it adds: 1e-7 in a weight), which a batch of 8
    through 2×2 maps amplifies, so the second step is compared by its loss."""
    data = batches("cutmix", n=2, layer=2)
    assert data[0]["feature_mix"]["layer"] == 2 and "image" in data[0]
    eager = classifier("resnet18")
    step_m = copy.deepcopy(eager)
    opt_e, opt_s = make_opt(eager), make_opt(step_m)
    graphs = []
    ws = WholeStep(step_m, opt_s, "32-true", backend=counting(graphs))
    (loss_e,) = eager_steps(eager, opt_e, data[:1], [0.1], None)
    loss_s = ws(data[0])[0]
    torch.testing.assert_close(loss_s, loss_e, rtol=1e-6, atol=1e-6)
    for p, q in zip(step_m.parameters(), eager.parameters()):
        torch.testing.assert_close(opt_s.state[p]["momentum_buffer"], opt_e.state[q]["momentum_buffer"], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)
    (loss_e,) = eager_steps(eager, opt_e, data[1:], [0.1], None)
    torch.testing.assert_close(ws(data[1])[0], loss_e, rtol=1e-4, atol=1e-4)
    assert len(graphs) == 1


@pytest.mark.parametrize("model", ["densenet", "vgg"])
def test_every_backbone_compiles_its_whole_step_into_one_graph(model):
    """The two backbones the tests above leave out (LeNet and ResNet-18 compile there): one graph, no break,
    with CutMix's mixed targets under bf16 autocast. Dynamo's capture only: the graph runs as captured."""
    graphs = []

    def capture(gm, inputs):
        graphs.append(gm)
        return gm.forward

    m = classifier(model)
    ws = WholeStep(m, make_opt(m), "bf16-mixed", backend=capture)
    before = [p.detach().clone() for p in m.parameters()]
    loss, acc = ws(batches("cutmix", n=1)[0])
    assert len(graphs) == 1 and torch.isfinite(loss) and 0 <= float(acc) <= 1
    assert all(not torch.equal(p, q) for p, q in zip(m.parameters(), before))  # every parameter stepped


@pytest.mark.parametrize("model", ["lenet", "resnet18"])
def test_a_compiled_backbone_compiles_once(model):
    """``model.compile=true``'s backbone: later steps reuse the first compilation (a module attribute that
    appeared after the first forward once failed a guard and compiled every backbone twice)."""
    graphs = []
    net = classifier(model).net
    compiled = torch.compile(net, backend=counting(graphs))
    x = torch.randn(4, 3, 32, 32)
    for _ in range(3):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            compiled(x).float().sum().backward()
    assert len(graphs) == 1


def test_the_step_is_rebuilt_when_a_checkpoint_replaces_the_optimiser_state():
    m = classifier("lenet")
    opt = make_opt(m)
    ws = WholeStep(m, opt, "32-true", backend="eager")
    assert not ws.stale()
    opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # what a resume does: new state tensors
    assert ws.stale()


def test_float16_is_refused_with_the_reason_and_the_way_out(tmp_path):
    m = classifier("lenet")
    with pytest.raises(StepScopeError, match="16-mixed.*GradScaler.*bf16-mixed"):
        WholeStep(m, make_opt(m), "16-mixed")
    with pytest.raises(ConfigError, match="model.compile_scope=step is invalid with trainer.precision=16-mixed"):
        validate(make_cfg(tmp_path, ["model.compile=true", "model.compile_scope=step", "trainer.precision=16-mixed"]))
    validate(make_cfg(tmp_path, ["model.compile_scope=step", "trainer.precision=16-mixed"]))  # compile off: no scope
    with pytest.raises(ConfigError, match="model.compile_scope='graph' is invalid: must be backbone .* or step"):
        validate(make_cfg(tmp_path, ["model.compile_scope=graph"]))


def test_auto_precision_picking_float16_is_refused_before_anything_is_written(tmp_path, fake_cifar, monkeypatch):
    """trainer.precision=auto picks 16-mixed on GPUs before compute capability 8.0: refused in one line
    once the device is known, before the run folder holds a record."""
    from augbench import training

    monkeypatch.setattr(training, "resolve_precision", lambda precision, device: "16-mixed")
    with pytest.raises(ConfigError, match=r"model.compile_scope=step is invalid here: trainer.precision=auto "
                                          r"trains cpu in 16-mixed.*32-true or model.compile_scope=backbone"):
        train(make_cfg(tmp_path / "run", TINY + ["model=lenet", "trainer.precision=auto"] + STEP, fake_cifar))
    assert not (tmp_path / "run" / "metrics.json").exists() and not (tmp_path / "run" / "last.ckpt").exists()


def test_the_scope_decides_what_is_compiled(tmp_path, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: compiled.append(kw))
    spec = SimpleNamespace(channels=3, num_classes=10)
    step = build_classifier(make_cfg(tmp_path, ["model=lenet", "model.compile=true", "model.compile_scope=step",
                                                "model.compile_mode=reduce-overhead"]), spec, torch.device("cpu"))
    assert step.compile_step == {"mode": "reduce-overhead"} and compiled == []  # the backbone stays eager
    backbone = build_classifier(make_cfg(tmp_path, ["model=lenet", "model.compile=true"]), spec, torch.device("cpu"))
    assert backbone.compile_step is None and compiled == [{"mode": None}]
    off = build_classifier(make_cfg(tmp_path, ["model=lenet", "model.compile_scope=step"]), spec, torch.device("cpu"))
    assert off.compile_step is None  # the scope says what model.compile=true compiles


RUN = TINY + ["model=lenet", "aug=cutmix", "trainer.max_epochs=2", "trainer.limit_train_batches=3", "seed=1"]
STEP = ["model.compile=true", "model.compile_scope=step"]


def test_a_step_scope_run_trains_like_an_eager_run_and_resumes_exactly(tmp_path, fake_cifar, monkeypatch):
    """Inductor, end to end: the same history as the eager run to float rounding, the eager checkpoint
    keys, and a run killed after epoch 0 and relaunched ends bit-identical to the uninterrupted one."""
    eager = train(make_cfg(tmp_path / "eager", RUN, fake_cifar))
    calls, whole_step = [], WholeStep.__call__
    monkeypatch.setattr(WholeStep, "__call__", lambda self, b: calls.append(1) or whole_step(self, b))
    step = train(make_cfg(tmp_path / "step", RUN + STEP, fake_cifar))
    assert step["status"] == "completed" and len(calls) == 6  # 2 epochs of 3 steps, every one compiled
    for key in ("train_loss", "train_acc1", "val_loss", "val_acc1"):
        torch.testing.assert_close(step["history"][key], eager["history"][key], rtol=1e-4, atol=1e-4)
    ckpt = lambda d: torch.load(d / "last.ckpt", weights_only=False)  # noqa: E731
    s, e = ckpt(tmp_path / "step"), ckpt(tmp_path / "eager")
    assert list(s["state_dict"]) == list(e["state_dict"])
    assert len(s["optimizer_states"][0]["state"]) == len(e["optimizer_states"][0]["state"])

    with monkeypatch.context() as mp:
        stop_training_at(mp, 1, KeyboardInterrupt())
        with pytest.raises((KeyboardInterrupt, SystemExit)):  # Lightning turns the interrupt into an exit
            train(make_cfg(tmp_path / "killed", RUN + STEP, fake_cifar))
    resumed = train(make_cfg(tmp_path / "killed", RUN + STEP, fake_cifar))
    assert resumed["history"] == step["history"] and resumed["test_loss"] == step["test_loss"]
    r = ckpt(tmp_path / "killed")
    assert all(torch.equal(r["state_dict"][k], s["state_dict"][k]) for k in s["state_dict"])


@pytest.mark.gpu
def test_gpu_step_scope_with_cuda_graphs_trains_like_the_eager_run(tmp_path, fake_cifar):
    """On a GPU with ``reduce-overhead``: the whole step replays as a CUDA graph (Inductor skips none:
    parameters, batch-norm buffers, momentum buffers and the rate stay where they lie), and the history
    follows the eager run's to bf16 rounding."""
    from torch._dynamo.utils import counters

    gpu = ["trainer.accelerator=gpu", "trainer.limit_train_batches=6"]
    eager = train(make_cfg(tmp_path / "eager", RUN + gpu, fake_cifar))
    counters.clear()
    step = train(make_cfg(tmp_path / "step", RUN + gpu + STEP + ["model.compile_mode=reduce-overhead"], fake_cifar))
    assert step["status"] == "completed"
    assert counters["inductor"]["cudagraph_skips"] == 0
    torch.testing.assert_close(step["history"]["train_loss"], eager["history"]["train_loss"], rtol=5e-2, atol=5e-2)


def test_an_eager_run_killed_after_an_epoch_resumes_with_the_whole_step(tmp_path, fake_cifar, monkeypatch):
    """The checkpoint is the same either way: an eager run killed after epoch 0 goes on compiled, its
    first epoch kept as it was and its second as the eager run's to float rounding."""
    eager = train(make_cfg(tmp_path / "eager", RUN, fake_cifar))
    with monkeypatch.context() as mp:
        stop_training_at(mp, 1, KeyboardInterrupt())
        with pytest.raises((KeyboardInterrupt, SystemExit)):
            train(make_cfg(tmp_path / "switched", RUN, fake_cifar))
    switched = train(make_cfg(tmp_path / "switched", RUN + STEP, fake_cifar))
    assert switched["status"] == "completed" and switched["config"]["model"]["compile_scope"] == "step"
    first = lambda h: {k: v[0] for k, v in h.items()}  # noqa: E731
    assert first(switched["history"]) == first(eager["history"])
    torch.testing.assert_close(switched["history"]["train_loss"], eager["history"]["train_loss"], rtol=1e-4, atol=1e-4)


def test_the_benchmark_step_takes_the_whole_step_compiled():
    """``augbench_step(..., compile_scope="step")`` (the benchmark's whole-step lever): Inductor, one graph,
    the step's loss and accuracy added to the epoch's sums, every parameter stepped."""
    from augbench.bench.kernels import CIFAR_SPEC, synthetic_host
    from augbench.bench.pipelines import augbench_step
    from augbench.callbacks import CropFlip

    torch.manual_seed(0)
    step = augbench_step("lenet", synthetic_host(64), CIFAR_SPEC, torch.device("cpu"), [CropFlip()], 16,
                         compile_=True, compile_scope="step", precision="32-true")
    before = [p.detach().clone() for p in step.module.parameters()]
    step(0)
    step(1)
    sums = step.module.train_sums
    assert 2 * 2.0 < float(sums[0]) < 2 * 2.6 and 0 <= float(sums[1]) <= 2  # two steps near ln 10
    assert all(not torch.equal(p, q) for p, q in zip(step.module.parameters(), before))
    assert step.module.net.__class__.__name__ == "LeNet"  # the backbone itself is not compiled

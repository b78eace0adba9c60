"""Whole-step capture readiness: every regime's augmentation compiles under torch.compile(fullgraph=True).

Each callback's ``apply`` is ``transform(batch, draw(batch))``. ``transform`` is pure tensor code (static
shapes, no host syncs, no data-dependent Python control flow) and compiles without a graph break, with
the same results as in eager mode for the same draws. ``draw`` holds every call to the callback's
``torch.Generator`` and cannot be captured: Dynamo has no proxy for a ``torch.Generator`` argument
("Failed to convert args/kwargs to proxy ... UserDefinedObjectVariable(Generator)", pytorch/pytorch#93737).
A captured step therefore runs the draws first, eagerly (crop+flip+CutMix: four random-number calls),
and passes them in. Capturing the draws too would need Dynamo support for generator arguments, or
draws derived in-graph from (seed, epoch, step) by a counter-based generator, or plain CUDA graphs
with each callback's generator registered (``CUDAGraph.register_generator_state``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch._dynamo
from hydra.utils import instantiate
from omegaconf import OmegaConf

from augbench import augment
from augbench.callbacks import CropFlip, CutMix
from augbench.data import SPECS

CONF = Path(__file__).resolve().parents[1] / "conf" / "aug"
REGIMES = sorted(p.stem for p in CONF.glob("*.yaml"))
BLENDS = ("mixup",)  # regimes whose images are blends: a compiler may reassociate them (last-bit differences)


def regime(name: str, seed: int = 0) -> list:
    """The callbacks of conf/aug/<name>.yaml with their default knobs, ready on the CPU."""
    cfg = OmegaConf.create({"seed": seed, "aug": OmegaConf.load(CONF / f"{name}.yaml")})
    callbacks = [instantiate(c) for c in cfg.aug.callbacks]
    spec = SPECS["cifar10"]
    for cb in callbacks:
        cb.prepare(spec.mean, spec.std, "cpu")
    return callbacks


def batch(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def transform_all(callbacks):
    def transform(image, target, draws):
        out = {"image": image, "target": target}
        for cb, draw in zip(callbacks, draws):
            cb.transform(out, draw)
        return out
    return transform


def compiled_and_eager(name: str, backend: str):
    callbacks = regime(name)
    x, y = batch()
    draws = [cb.draw({"image": x, "target": y}) for cb in callbacks]  # eager: the generator's part
    eager = transform_all(callbacks)(x, y, draws)
    torch._dynamo.reset()
    compiled = torch.compile(transform_all(callbacks), fullgraph=True, backend=backend)(x, y, draws)
    return eager, compiled


def assert_same(name, eager, compiled, exact: bool):
    assert set(eager) == set(compiled)
    for key in eager:
        assert eager[key].dtype == compiled[key].dtype and eager[key].shape == compiled[key].shape, key
        if exact or key != "image" or not name.startswith(BLENDS):
            assert torch.equal(eager[key], compiled[key]), (name, key)
        else:
            torch.testing.assert_close(compiled[key], eager[key], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", REGIMES)
def test_every_regime_compiles_fullgraph_and_matches_eager(name):
    """aot_eager: Dynamo captures the whole transform (fullgraph=True raises on any graph break) and AOT
    autograd traces it to aten ops; the same ops run, so the results are bit-equal to eager mode."""
    eager, compiled = compiled_and_eager(name, "aot_eager")
    assert_same(name, eager, compiled, exact=True)
    if name != "baseline":
        assert not torch.equal(eager["image"], batch()[0])  # it did augment


@pytest.mark.parametrize("name", ["cutmix", "mixup"])
def test_inductor_compiles_the_regime(name):
    """Inductor generates fused kernels for the study's mixing regimes; equal to eager (blends to 1e-6)."""
    eager, compiled = compiled_and_eager(name, "inductor")
    assert_same(name, eager, compiled, exact=False)


def test_feature_level_cutmix_plan_compiles():
    cb = CutMix(layer=3, prob=0.5)
    cb.prepare((0.5,) * 3, (0.25,) * 3, "cpu")
    x, y = batch()
    draw = cb.draw({"image": x, "target": y}, 16)

    def plan(target, draw):
        out = {"image": x, "target": target}
        return (*cb.plan(out, draw, 16, 16), out["targets"], out["weights"])

    torch._dynamo.reset()
    got = torch.compile(plan, fullgraph=True, backend="aot_eager")(y, draw)
    want = plan(y, draw)
    assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_transform_never_reads_a_tensor_on_the_host(monkeypatch):
    """No .item(), no bool(tensor), no .tolist() in any transform: each would be a sync on a GPU."""
    prepared = {name: regime(name) for name in REGIMES}
    x, y = batch()
    draws = {name: [cb.draw({"image": x, "target": y}) for cb in cbs] for name, cbs in prepared.items()}

    def sync(*args, **kwargs):
        raise AssertionError("host sync")

    for attr in ("item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__"):
        monkeypatch.setattr(torch.Tensor, attr, sync)
    for name, cbs in prepared.items():
        transform_all(cbs)(x, y, draws[name])


def test_the_draws_cannot_be_captured_a_generator_breaks_the_graph():
    """The documented limit: a torch.Generator argument is a graph break (Dynamo cannot proxy it). If this
    starts to compile, a torch upgrade can capture the draws too: move them into the compiled step."""
    cb = CropFlip()
    cb.prepare((0.5,) * 3, (0.25,) * 3, "cpu")
    x, _ = batch()
    torch._dynamo.reset()
    with pytest.raises(torch._dynamo.exc.Unsupported, match="proxy"):
        torch.compile(lambda image: augment.crop_flip_draw(len(image), padding=4, generator=cb.generator,
                                                           device=image.device), fullgraph=True, backend="eager")(x)


def test_the_plain_step_does_not_compile_into_one_graph():
    """Why ``model.compile_scope=step`` writes the step functionally (``augbench.wholestep``: gradients by
    ``torch.func.grad_and_value``, the update by ``torch.optim.sgd.sgd``): the plain step breaks Dynamo's
    graph at ``loss.backward()`` (and, with its experimental ``trace_autograd_ops``, at the optimiser's own
    graph break in ``step``). If this starts to compile, the plain step could be compiled as it is."""
    from augbench.models import build_model

    torch.manual_seed(0)
    net = build_model("lenet", 1, 10)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, foreach=True)

    def step(x, y):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()

    torch._dynamo.reset()
    explained = torch._dynamo.explain(step)(torch.randn(4, 1, 32, 32), torch.arange(4))
    torch._dynamo.reset()
    assert explained.graph_break_count >= 1
    assert "backward" in str(explained.break_reasons[0].reason)


@pytest.mark.parametrize("name", ["cutmix", "gridmask", "mixup_cutmix"])
def test_draws_read_only_the_batch_shapes(name):
    """What a callback draws depends on the batch's shapes and device, never on its values: all draws of a
    step can run before a captured transform."""
    a, b = regime(name), regime(name)
    x, y = batch()
    for cb_a, cb_b in zip(a, b):
        d_a = cb_a.draw({"image": x, "target": y})
        d_b = cb_b.draw({"image": torch.zeros_like(x), "target": torch.zeros_like(y)})
        flat_a, flat_b = torch.utils._pytree.tree_leaves(d_a), torch.utils._pytree.tree_leaves(d_b)
        assert all(torch.equal(u, v) for u, v in zip(flat_a, flat_b) if isinstance(u, torch.Tensor))

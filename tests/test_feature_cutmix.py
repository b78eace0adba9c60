"""Feature-level CutMix (the CutMix paper's Figure 3): the box cut at a feature map of a backbone."""

import pytest
import torch

from augbench import augment
from augbench.callbacks import CutMix
from augbench.config import ConfigError, validate
from augbench.models import build_model
from augbench.module import Classifier
from augbench.training import train
from conftest import TINY, make_cfg


def test_the_plan_at_the_input_draws_exactly_what_input_cutmix_draws():
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    for seed in range(5):
        xm, y_b, lam = augment.cutmix(x, y, alpha=1.0, prob=0.8, generator=torch.Generator().manual_seed(seed))
        mask, j, y_b2, lam2 = augment.cutmix_plan(y, 32, 32, alpha=1.0, prob=0.8,
                                                  generator=torch.Generator().manual_seed(seed))
        assert torch.equal(torch.where(mask, x[j], x), xm) and torch.equal(y_b, y_b2) and torch.equal(lam, lam2)


def test_layer_0_is_input_cutmix_and_feature_layers_mix_the_feature_map():
    torch.manual_seed(0)
    net = build_model("resnet18", 3, 10).eval()
    x = torch.randn(4, 3, 32, 32)
    seen = []

    def spy(f):
        seen.append(f.shape)
        return f

    from augbench.catalog import FEATURE_MIX_POINTS

    assert FEATURE_MIX_POINTS["resnet18"] == 4  # the config check allows exactly the points below
    for point, size in ((0, 32), (1, 32), (2, 32), (3, 16), (4, 8)):
        seen.clear()
        out = net(x, mix=spy, mix_at=point)
        assert seen == [torch.Size([4, 3 if point == 0 else (64, 64, 128, 256)[point - 1], size, size])]
        assert net.feature_size(point, 32) == size
        assert torch.allclose(out, net(x), atol=1e-5)  # an identity mix changes nothing
    assert net(x, mix=lambda f: f * 0, mix_at=3).sub(net(x)).abs().max() > 0  # the mix does reach the output


@pytest.mark.parametrize("layer,size", [(0, 32), (2, 32), (3, 16), (4, 8)])
def test_the_callback_plans_at_the_feature_size_and_weights_by_its_area(layer, size):
    model = Classifier("resnet18", 3, 10)
    cb = CutMix(layer=layer, seed=1)
    cb.prepare((0.5,) * 3, (0.5,) * 3, "cpu")
    batch = {"image": torch.randn(8, 3, 32, 32), "target": torch.arange(8)}
    image = batch["image"].clone()
    cb.on_train_batch_start(None, model, batch, 0)
    if layer == 0:
        assert "feature_mix" not in batch and not torch.equal(batch["image"], image)
        return
    plan = batch["feature_mix"]
    assert torch.equal(batch["image"], image)  # the images stay whole: the features are mixed
    assert plan["layer"] == layer and plan["mask"].shape[-2:] == (size, size)
    share = 1 - plan["mask"].float().mean((1, 2, 3))  # λ from the box's area at the feature map's size
    assert torch.allclose(batch["weights"][:, 0], share.expand(8))
    loss = model.training_loss(batch, 0)
    assert torch.isfinite(loss)


# (model, point) -> (channels, side) of the feature map mixed there, for 32-px input
POINTS = {
    "lenet": {0: (3, 32), 1: (6, 14), 2: (16, 5)},
    "densenet": {0: (3, 32), 1: (24, 32), 2: (48, 16), 3: (96, 8), 4: (192, 4)},  # transitions halve 96, 192, 384
    "vgg": {0: (3, 32), 1: (64, 32), 2: (64, 16), 3: (128, 8), 4: (256, 4)},
}


@pytest.mark.parametrize("name", sorted(POINTS))
def test_every_backbone_mixes_its_feature_maps_and_an_identity_mix_changes_nothing(name):
    from augbench.catalog import FEATURE_MIX_POINTS

    torch.manual_seed(0)
    net = build_model(name, 3, 10).eval()
    x = torch.randn(4, 3, 32, 32)
    plain = net(x)
    assert max(POINTS[name]) == FEATURE_MIX_POINTS[name]  # the config check allows exactly these points
    for point, (channels, size) in POINTS[name].items():
        seen = []

        def spy(f):
            seen.append(tuple(f.shape))
            return f

        assert torch.equal(net(x, mix=spy, mix_at=point), plain)  # the same ops, in the same order
        assert seen == [(4, channels, size, size)] and net.feature_size(point, 32) == size
        assert net(x, mix=lambda f: f * 0, mix_at=point).sub(plain).abs().max() > 0  # the mix reaches the output


def test_layer_knob_is_checked_per_backbone(tmp_path):
    with pytest.raises(ValueError, match="aug.layer"):
        CutMix(layer=5)
    with pytest.raises(ConfigError, match=r"aug.layer=3 is invalid: must be an integer in \[0, 2\] for model=lenet"):
        validate(make_cfg(tmp_path, ["model=lenet", "aug=cutmix", "aug.layer=3"]))
    for model in ("lenet", "resnet18", "densenet", "vgg"):
        validate(make_cfg(tmp_path, [f"model={model}", "aug=cutmix", "aug.layer=2"]))


@pytest.mark.parametrize("model,layer", [("resnet18", 3), ("lenet", 2)])
def test_a_feature_level_run_trains(tmp_path, fake_cifar, model, layer):
    m = train(make_cfg(tmp_path, TINY + [f"model={model}", "aug=cutmix", f"aug.layer={layer}", "data.batch_size=8"],
                       fake_cifar))
    assert m["status"] == "completed"

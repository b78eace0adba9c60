import pytest
import torch

from augbench.models import MODELS, build_model

# parameter counts of the study's CIFAR backbones (3 input channels)
PARAMS = {
    "resnet18": {10: 11_173_962, 100: 11_220_132},
    "lenet": {10: 62_006, 100: 69_656},
    "densenet": {10: 1_000_618, 100: 1_035_268},
    "vgg": {10: 9_231_114, 100: 9_277_284},
}


@pytest.mark.parametrize("name", sorted(PARAMS))
@pytest.mark.parametrize("classes", [10, 100])
def test_parameter_count_and_output_shape(name, classes):
    model = build_model(name, in_channels=3, num_classes=classes)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name][classes]
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, classes)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_single_channel_input(name):
    assert build_model(name, in_channels=1, num_classes=10)(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


def test_registry_has_exactly_the_four_backbones():
    assert set(MODELS) == set(PARAMS)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match=r"model.name='resnet50'.*densenet, lenet, resnet18, vgg"):
        build_model("resnet50")


# --- DenseNet: the kernel-saving forward changes no number -------------------------------------------------

from augbench.models import DenseNet  # noqa: E402

BEFORE = dict(batch_counters=False, one_weight_cast=False)  # DenseNet as it was


def _dense_pair(**options):
    torch.manual_seed(0)
    before, now = DenseNet(**BEFORE), DenseNet(**options)
    now.load_state_dict(before.state_dict())  # a checkpoint of the old forward loads as it is
    for m in (before, now):
        m.to(memory_format=torch.channels_last)
    return before, now


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16-autocast"])
def test_densenet_forward_changes_no_number(amp):
    before, now = _dense_pair()
    assert list(now.state_dict()) == list(before.state_dict())
    assert sum(p.numel() for p in now.parameters()) == PARAMS["densenet"][10]
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    outs = []
    for m in (before, now):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp, cache_enabled=False):
            y = m(x)
        y.float().square().sum().backward()
        outs.append((y, [p.grad for p in m.parameters()], list(m.buffers())))
    (y0, g0, b0), (y1, g1, b1) = outs
    torch.testing.assert_close(y1, y0, rtol=1e-5, atol=1e-5)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(b1, b0):  # running statistics and the step counters
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert int(now.features[0].bn1.num_batches_tracked) == 1 == int(now.bn.num_batches_tracked)


def test_densenet_eval_leaves_counters_and_weights_alone():
    _, now = _dense_pair()
    now.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
        now(torch.zeros(2, 3, 32, 32))
    assert int(now.bn.num_batches_tracked) == 0
    assert all(m.cast_weight is None for m in now._convs)  # no bf16 copy outlives the forward

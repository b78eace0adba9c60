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


# --- the kernel-saving forward (one counter op, one weight cast) changes no number -------------------------

from augbench.bench.kernels import count_kernels  # noqa: E402
from augbench.models import CastConv, CountedBN  # noqa: E402

BEFORE = dict(batch_counters=False, one_weight_cast=False)  # the plain forward


def _pair(name, **options):
    torch.manual_seed(0)
    before, now = build_model(name, **BEFORE), build_model(name, **options)
    now.load_state_dict(before.state_dict())  # a checkpoint of the plain forward loads as it is
    for m in (before, now):
        m.to(memory_format=torch.channels_last)
    return before, now


def _step(m, x, amp, mix=None, mix_at=0):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp, cache_enabled=False):
        y = m(x, mix, mix_at) if mix is not None else m(x)
    y.float().square().sum().backward()
    return y, [p.grad for p in m.parameters()], list(m.buffers())


@pytest.mark.parametrize("name", sorted(PARAMS))
@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16-autocast"])
def test_kernel_saving_forward_changes_no_number(name, amp):
    before, now = _pair(name)
    assert list(now.state_dict()) == list(before.state_dict())
    assert sum(p.numel() for p in now.parameters()) == PARAMS[name][10]
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    (y0, g0, b0), (y1, g1, b1) = _step(before, x, amp), _step(now, x, amp)
    torch.testing.assert_close(y1, y0, rtol=0, atol=0)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    for a, b in zip(b1, b0):  # running statistics and the step counters
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    bns = [m for m in now.modules() if isinstance(m, CountedBN)]
    assert all(int(m.num_batches_tracked) == 1 for m in bns) and (name == "lenet") == (not bns)


@pytest.mark.parametrize("name", ["resnet18", "vgg"])
def test_kernel_saving_forward_keeps_feature_level_mixing(name):
    before, now = _pair(name)
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    flip = lambda t: t.flip(0)  # noqa: E731 - any function of a feature map
    for point in range(5):
        y0, y1 = (_step(m, x, True, flip, point)[0] for m in (before, now))
        torch.testing.assert_close(y1, y0, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_kernel_saving_forward_launches_fewer_kernels_under_autocast(name):
    before, now = _pair(name)
    x = torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    k0, k1 = (count_kernels(_step, m, x, True).total() for m in (before, now))
    convs = sum(isinstance(m, CastConv) for m in now.modules())
    bns = sum(isinstance(m, CountedBN) for m in now.modules())
    assert convs > 0 and k1 < k0
    # per conv: its weight's (and bias's) cast forward and back, less the concatenation and the one cast
    # each way; per batch norm: its counter, less the one multi-tensor op
    assert k0 - k1 >= 2 * (convs - 3) + max(bns - 1, 0)


def test_kernel_saving_eval_leaves_counters_and_weights_alone():
    for name in sorted(PARAMS):
        _, now = _pair(name)
        now.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
            now(torch.zeros(2, 3, 32, 32))
        assert all(int(m.num_batches_tracked) == 0 for m in now.modules() if isinstance(m, CountedBN))
        assert all(m.cast_params is None for m in now._convs)  # no bf16 copy outlives the forward

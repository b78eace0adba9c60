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

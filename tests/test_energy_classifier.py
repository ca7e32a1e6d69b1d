"""A classifier read as an energy (JEM): the three quantities agree with each other, the nets
have the stated shapes and no batch statistics, and a sampler follows the class energy."""

from __future__ import annotations

import math
import re

import pytest
import torch
from _tiny import HostTraffic
from torch import nn

from stgconv.energy.classifier import (ClassifierEnergy, classifier_energy, digit_classifier,
                                       wide_resnet)
from stgconv.mcmc import Langevin


def test_marginal_class_and_posterior_agree() -> None:
    torch.manual_seed(0)
    energy = ClassifierEnergy(digit_classifier(width=8))
    x = torch.randn(5, 1, 28, 28)
    logits = energy.logits(x)
    assert logits.shape == (5, 10)
    # E(x) = -log sum_y exp(-E(x, y)); log p(y|x) = E(x) - E(x, y).
    per_class = torch.stack([energy.class_energy(x, y) for y in range(10)], dim=1)
    torch.testing.assert_close(energy(x), -torch.logsumexp(-per_class, dim=1))
    torch.testing.assert_close(energy.log_prob_y(x), energy(x)[:, None] - per_class)
    torch.testing.assert_close(energy.class_energy(x, torch.arange(5)),
                               per_class[torch.arange(5), torch.arange(5)])


def test_the_marginal_energy_of_large_logits_is_finite() -> None:
    # exp(100) overflows float32: a log of a plain sum of exponentials would be inf.
    energy = ClassifierEnergy(nn.Identity())
    torch.testing.assert_close(energy(torch.tensor([[100.0, 100.0]])),
                               torch.tensor([-100.0 - math.log(2.0)]))


def test_an_energy_does_not_depend_on_the_rest_of_the_batch() -> None:
    """No batch normalisation in the energy path: a chain's energy is its own."""
    torch.manual_seed(0)
    for net, shape in ((digit_classifier(width=8), (4, 1, 28, 28)),
                       (wide_resnet(depth=10, widen=1), (4, 3, 32, 32))):
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
        energy = ClassifierEnergy(net)
        x = torch.randn(shape)
        torch.testing.assert_close(energy(x)[:1], energy(x[:1]), rtol=1e-5, atol=1e-5)


def test_wide_resnet_shape_and_depth_rule() -> None:
    net = wide_resnet(n_classes=7, depth=10, widen=2)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    with pytest.raises(ValueError, match="6n \\+ 4"):
        wide_resnet(depth=12)


def test_class_conditional_sampling_moves_towards_the_class() -> None:
    """A linear 'classifier' whose class c prefers x along direction c: Langevin on the class-2
    energy moves the chains towards direction 2."""
    directions = torch.eye(3)
    classifier = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        classifier.weight.copy_(directions * 4.0)
    energy = ClassifierEnergy(classifier)
    x = Langevin(n_steps=200, step_size=0.1, noise_scale=0.0).run(
        energy.conditional(2), torch.zeros(8, 3))
    assert (x[:, 2] > 5 * x[:, :2].abs().max()).all()


def test_a_classifier_that_returns_the_wrong_shape_is_named() -> None:
    energy = ClassifierEnergy(nn.Flatten(0))
    with pytest.raises(ValueError, match=r"\(B, K\) logits"):
        energy(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"\(B, K\) logits for B = 2, got \(2, 3, 1\)"):
        ClassifierEnergy(nn.Unflatten(1, (3, 1)))(torch.zeros(2, 3))


def test_a_density_scale_sharpens_p_x_and_leaves_p_y_given_x_alone() -> None:
    """With a density scale s: E(x) = -s logsumexp f(x), p(y | x) = softmax f(x) unchanged,
    and E(x, y) - E(x) = -log p(y | x), so p(x, y) = p(x) p(y | x)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    scaled = ClassifierEnergy(net, density_scale=True)
    with torch.no_grad():
        scaled.log_density_scale.fill_(0.7)
    plain = ClassifierEnergy(net)
    x = torch.randn(5, 3, 2, 2)
    logits = net(x)
    torch.testing.assert_close(scaled(x), -torch.exp(torch.tensor(0.7))
                               * torch.logsumexp(logits, 1))
    torch.testing.assert_close(scaled.log_prob_y(x), plain.log_prob_y(x))
    for y in range(4):
        torch.testing.assert_close(scaled.class_energy(x, y) - scaled(x),
                                   -torch.log_softmax(logits, 1)[:, y])
    # The scale is learnt: the marginal energy's gradient reaches it.
    scaled(x).sum().backward()
    assert scaled.log_density_scale.grad is not None and scaled.log_density_scale.grad != 0


def test_classifier_energy_keeps_the_density_scale_in_its_config() -> None:
    from stgconv.energy import build_from_config
    from stgconv.energy.classifier import classifier_energy

    energy = classifier_energy("digit_classifier", n_classes=3, density_scale=True)
    assert energy.config["density_scale"] is True
    rebuilt = build_from_config(energy.config)
    rebuilt.load_state_dict(energy.state_dict())
    assert isinstance(rebuilt, ClassifierEnergy) and rebuilt.log_density_scale is not None
    assert "density_scale" not in classifier_energy("digit_classifier").config


def test_features_are_what_the_last_layer_reads() -> None:
    torch.manual_seed(0)
    energy = ClassifierEnergy(digit_classifier(4, width=4))
    x = torch.randn(3, 1, 28, 28)
    features = energy.features(x)
    assert features.shape == (3, 8 * 7 * 7)
    torch.testing.assert_close(energy.logits_of_features(features), energy.logits(x))


def test_features_of_a_classifier_without_a_linear_head_are_refused() -> None:
    energy = ClassifierEnergy(nn.Sequential(nn.Flatten(), nn.Linear(4, 2), nn.SiLU()))
    with pytest.raises(ValueError, match="nn.Sequential ending in an nn.Linear"):
        energy.features(torch.zeros(1, 4))


def test_logits_for_another_batch_size_are_refused() -> None:
    """The classifier must return one row of logits per example; a 2-D result with a
    different number of rows is named as the wrong shape."""
    class Extra(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x, x[:1]])  # (B + 1, K)

    with pytest.raises(ValueError, match=r"\(B, K\) logits for B = 2"):
        ClassifierEnergy(Extra())(torch.zeros(2, 3))


def test_a_class_vector_of_the_wrong_length_is_a_value_error() -> None:
    """Classes given as a vector need one per example; another length is refused with a
    ValueError naming the rule (not torch's expand error)."""
    energy = ClassifierEnergy(nn.Linear(3, 4))
    with pytest.raises(ValueError, match=r"classes must be one int or \(2,\)"):
        energy.class_energy(torch.zeros(2, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"classes must be one int or \(2,\), one per example, "
                                         r"got \(2, 1\)"):
        energy.class_energy(torch.zeros(2, 3), torch.zeros(2, 1, dtype=torch.long))


@pytest.mark.parametrize("y, problem", [
    (torch.tensor([0.7, 1.2]), r"classes must be integers, got torch.float32"),
    (torch.tensor([True, False]), r"classes must be integers, got torch.bool"),
    (1.0, r"classes must be integers, got torch.float32"),
    (4, r"classes must be in 0 \.\. 3, got 4 \.\. 4"),
    (torch.tensor([0, -1]), r"classes must be in 0 \.\. 3, got -1 \.\. 0"),
], ids=["float", "bool", "float scalar", "int past K", "negative"])
def test_classes_that_are_not_integers_in_range_are_named(y: object, problem: str) -> None:
    """A float or bool class was truncated to another class without a word (0.7 -> 0); a
    class outside 0 .. K - 1 failed inside gather (on a GPU, a device-side assert)."""
    energy = ClassifierEnergy(nn.Linear(3, 4))
    with pytest.raises(ValueError, match=problem):
        energy.class_energy(torch.zeros(2, 3), y)


def test_wide_resnet_keeps_full_resolution_in_its_first_stage() -> None:
    """The first stage runs at stride 1 and the next two halve the side: a 32x32 input
    reaches the pooling as 8x8 maps."""
    net = wide_resnet(n_classes=3, depth=10, widen=1)
    maps = net[:-3](torch.zeros(1, 3, 32, 32))  # everything before the pooling
    assert tuple(maps.shape) == (1, 64, 8, 8)


def test_wide_resnet_needs_at_least_one_block_per_stage() -> None:
    with pytest.raises(ValueError, match="6n \\+ 4 with n >= 1"):
        wide_resnet(depth=4, widen=1)


def test_a_wide_block_adds_its_body_to_its_skip_path() -> None:
    """A block keeping the shape, its convolutions zeroed, passes its input through."""
    block = wide_resnet(n_classes=3, depth=10, widen=1)[1]
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.zero_()
    x = torch.randn(2, 16, 4, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(block(x), x)


def test_wide_resnet_activates_its_last_blocks_sum_before_pooling() -> None:
    """Pre-activation blocks end in a sum that nothing activates; the wide ResNet closes with
    the activation (its batch normalisation removed), then pools and reads the logits."""
    net = wide_resnet(n_classes=3, depth=10, widen=1)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    blocks = net[:4]  # the stem and one block per stage
    pooled = nn.functional.leaky_relu(blocks(x), 0.2).mean(dim=(2, 3))
    torch.testing.assert_close(net(x), net[-1](pooled))


def test_the_digit_preset_is_smooth_and_refuses_another_side() -> None:
    """SiLU after every convolution, so the input gradient a sampler follows is continuous."""
    activations = [type(layer) for layer in digit_classifier(width=2)
                   if not isinstance(layer, (nn.Conv2d, nn.Flatten, nn.Linear))]
    assert activations == [nn.SiLU] * 3
    with pytest.raises(ValueError, match="digit_classifier takes 28x28 images, got image_size 32"):
        classifier_energy("digit_classifier", image_size=32)
    # The smaller side too: the wide ResNet would run on 28x28 digits, a side it was not made for.
    with pytest.raises(ValueError, match="wide_resnet takes 32x32 images, got image_size 28"):
        classifier_energy("wide_resnet", image_size=28)


def test_a_classifier_needs_two_classes() -> None:
    with pytest.raises(ValueError, match="n_classes must be an int >= 2, got 1"):
        classifier_energy("digit_classifier", n_classes=1)


@pytest.mark.parametrize("build, name, value", [
    (digit_classifier, "n_classes", 0), (digit_classifier, "width", 0),
    (digit_classifier, "in_channels", 1.0), (wide_resnet, "widen", 0),
    (wide_resnet, "depth", 10.0), (wide_resnet, "n_classes", 2.5),
    (classifier_energy, "n_classes", 3.0), (classifier_energy, "in_channels", True),
    (classifier_energy, "in_channels", 0), (classifier_energy, "image_size", 28.0)])
def test_the_nets_sizes_that_are_not_positive_ints_are_named(build, name: str,
                                                             value: object) -> None:
    """0 built a net of empty layers, a float failed in torch's words naming no argument, and
    classifier_energy kept True and 28.0 in the config a checkpoint rebuilds it from."""
    args = ("digit_classifier",) if build is classifier_energy else ()
    with pytest.raises(ValueError, match=rf"^{name} must be an int >= \d, got {value!r}$"):
        build(*args, **{name: value})


def test_a_preset_names_the_input_it_takes() -> None:
    """16x16 images to the 28x28 digit preset failed inside torch ("mat1 and mat2 shapes
    cannot be multiplied"); three channels to a grey preset too."""
    energy = classifier_energy("digit_classifier")
    for shape in ((2, 1, 16, 16), (2, 3, 28, 28), (2, 1, 28, 16)):
        with pytest.raises(ValueError, match=re.escape(
                f"this digit_classifier takes (B, 1, 28, 28) images, got {shape}")):
            energy(torch.zeros(shape))
    assert energy(torch.zeros(2, 1, 28, 28)).shape == (2,)


def test_an_input_of_another_dtype_is_named() -> None:
    """A float64 or float16 batch failed inside the first convolution ("Input type (double)
    and bias type (float) should be the same"), in every energy and in the features."""
    energy = classifier_energy("digit_classifier")
    for dtype in (torch.float64, torch.float16):
        x = torch.zeros(2, 1, 28, 28, dtype=dtype)
        for use in (energy, energy.log_prob_y, energy.features, energy.conditional(1)):
            with pytest.raises(ValueError, match=rf"expected x of dtype torch.float32 \(the "
                                                 rf"network's\), got {dtype}"):
                use(x)


@pytest.mark.parametrize("one", [1, torch.tensor(1)], ids=["int", "0-dim tensor"])
def test_one_class_for_every_example_is_that_class_given_per_example(one: object) -> None:
    torch.manual_seed(0)
    energy = ClassifierEnergy(digit_classifier(width=4), density_scale=True)
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(energy.class_energy(x, one),
                               energy.class_energy(x, torch.tensor([1, 1, 1])))


def test_one_class_given_on_the_host_is_not_copied_to_the_logits_device() -> None:
    """An int class is read as a column of the logits. Copied to a GPU, as it was at every
    sampler step of a class-conditional chain, it waited for the GPU's queue each time and kept
    the step out of a CUDA graph (the meta device stands in for the GPU here)."""
    energy = classifier_energy("digit_classifier", n_classes=3, density_scale=True).to("meta")
    with HostTraffic() as traffic:
        e = energy.class_energy(torch.zeros(2, 1, 28, 28, device="meta"), 2)
    assert e.shape == (2,) and e.device.type == "meta"
    assert traffic.uploads == 0


def test_features_name_a_classifier_with_no_layer_before_its_linear_head() -> None:
    """A lone nn.Linear in an nn.Sequential is refused, the message saying why and what the
    classifier holds (it said only "got Sequential", which is what it asks for)."""
    energy = ClassifierEnergy(nn.Sequential(nn.Linear(4, 2)))
    with pytest.raises(ValueError, match=re.escape(
            "nn.Linear after at least one other layer (as the presets are), got "
            "Sequential(Linear)")):
        energy.features(torch.zeros(1, 4))


def test_features_are_the_output_of_every_layer_but_the_last() -> None:
    """In a classifier of one's own the features come after its last activation."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    energy = ClassifierEnergy(net)
    x = torch.randn(5, 2, 2)
    features = energy.features(x)
    torch.testing.assert_close(features, torch.tanh(net[1](x.flatten(1))))
    torch.testing.assert_close(energy.logits_of_features(features), energy.logits(x))


def test_a_float64_classifier_takes_float64_inputs_and_names_float32_ones() -> None:
    """The dtype an input must have is the network's own, not float32."""
    energy = ClassifierEnergy(digit_classifier(3, width=2)).double()
    x = torch.zeros(2, 1, 28, 28, dtype=torch.float64)
    assert energy(x).dtype == torch.float64 and energy.features(x).dtype == torch.float64
    with pytest.raises(ValueError, match=r"expected x of dtype torch.float64 \(the network's\), "
                                         r"got torch.float32"):
        energy(x.float())


def test_a_new_density_scale_is_1_so_the_energies_are_jems_own() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    scaled, plain = ClassifierEnergy(net, density_scale=True), ClassifierEnergy(net)
    x = torch.randn(5, 3, 2, 2)
    torch.testing.assert_close(scaled(x), plain(x))
    torch.testing.assert_close(scaled.class_energy(x, 2), plain.class_energy(x, 2))


def test_the_digit_preset_has_64_then_twice_64_channels_by_default() -> None:
    convs = [layer for layer in digit_classifier() if isinstance(layer, nn.Conv2d)]
    assert [conv.out_channels for conv in convs] == [64, 128, 128]
    assert [conv.stride for conv in convs] == [(1, 1), (2, 2), (2, 2)]


def test_a_wide_block_activates_before_each_of_its_two_convolutions() -> None:
    """Pre-activation: LeakyReLU(0.2), conv, LeakyReLU(0.2), conv."""
    body = wide_resnet(n_classes=3, depth=10, widen=1)[1].body
    assert [type(layer) for layer in body] == [nn.LeakyReLU, nn.Conv2d] * 2
    assert [layer.negative_slope for layer in body[::2]] == [0.2, 0.2]


def test_the_presets_read_the_channels_they_are_given() -> None:
    digits = classifier_energy("digit_classifier", n_classes=3, in_channels=3)
    assert digits.logits(torch.zeros(2, 3, 28, 28)).shape == (2, 3)
    grey_wrn = classifier_energy("wide_resnet", n_classes=3, in_channels=1, image_size=32)
    assert grey_wrn.classifier[0].in_channels == 1


def test_the_energy_keeps_a_config_of_its_own() -> None:
    """The caller's dict changed later does not change what a checkpoint would rebuild."""
    config = {"arch": "digit_classifier", "n_classes": 3}
    energy = ClassifierEnergy(digit_classifier(3, width=2), config=config)
    config["n_classes"] = 5
    assert energy.config == {"arch": "digit_classifier", "n_classes": 3}

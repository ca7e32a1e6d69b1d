"""The energy contract, over every preset of every modality, built the way experiments build
them (``modality.energy(ModelConfig(...))``): ``(B, *S) -> (B,)``, finite, differentiable in
``x``; each example's energy depends on that example alone; and the plain-data ``config`` plus
the weights rebuild the same function (what a checkpoint stores).

Every preset runs with its own layers (no ``layers`` override), so its head and input-size
logic run as in real use, on small inputs that those layers still take. The paper-size
nets keep their 16^3 filters and fully connected heads at a 16^3 grid (``desc32``,
``desc64_sr``), and ``fc_s``, whose second layer spans the frame (45M parameters at 100x100), is
built for 8x8 frames (335k parameters). Module-specific behaviour (stationarity, reference
term, size errors) is in ``test_energy_image.py``, ``test_energy_video.py`` and
``test_energy_voxel.py``. Last, every family as users handle any module: copied, pickled,
converted, checkpointed, called functionally, printed.
"""

from __future__ import annotations

import copy
import io
import pickle
import re
from functools import partial

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from stgconv.config import ModelConfig
from stgconv.energy import (
    RBM,
    ProductOfExperts,
    build_from_config,
    classifier_energy,
    image_energy,
    wide_resnet,
)
from stgconv.energy.base import ConvNetEnergy, make_activation
from stgconv.energy.classifier import ClassifierEnergy
from stgconv.energy.image import IMAGE_PRESETS
from stgconv.energy.video import VIDEO_ARCHS, video_energy
from stgconv.energy.voxel import VOXEL_PRESETS, voxel_energy
from stgconv.generator import ConvGenerator
from stgconv.modalities import IMAGE, VIDEO, VOXELS
from stgconv.ops import block_down

BATCH = 2

# image_size per preset (default 16). texture's receptive field is 57 pixels; descriptor4 is
# the net of the 4x4 grid.
IMAGE_SIDE = {"texture": 64, "descriptor4": 4}
# image_size is the frame side (used by fc_s, whose second layer spans it). st (padded, strides
# 7, 3 and (1, 2, 2)) has top positions on any clip; 8 frames of 20x20 give it two in time.
# st_small needs frames of 12x12; fc_s's padded temporal kernels take 4 frames.
VIDEO_SIDE = {"st": 20, "st_small": 12}
VIDEO_FRAMES = {"st": 8}
# The grid side (the fully connected head's input size); default the preset's own.
VOXEL_SIDE = {"desc32": 16, "desc64_sr": 16, "desc32_small": 16, "desc64_small": 32}


def cases() -> list:
    """``(modality, ModelConfig, input shape)`` for every preset of every modality."""
    out = []
    for arch in sorted(IMAGE_PRESETS):
        side = IMAGE_SIDE.get(arch, 16)
        out.append(pytest.param(IMAGE, ModelConfig(arch=arch, in_channels=3, image_size=side),
                                (BATCH, 3, side, side), id=f"image-{arch}"))
    for arch in VIDEO_ARCHS:
        side, frames = VIDEO_SIDE.get(arch, 8), VIDEO_FRAMES.get(arch, 4)
        out.append(pytest.param(VIDEO, ModelConfig(arch=arch, in_channels=3, image_size=side),
                                (BATCH, 3, frames, side, side), id=f"video-{arch}"))
    for arch in sorted(VOXEL_PRESETS):
        side = VOXEL_SIDE.get(arch, VOXEL_PRESETS[arch]["size"])
        out.append(pytest.param(VOXELS, ModelConfig(arch=arch, in_channels=1, image_size=side),
                                (BATCH, 1, side, side, side), id=f"voxels-{arch}"))
    return out


@pytest.mark.parametrize("modality, model, shape", cases())
def test_energy_contract(modality, model: ModelConfig, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    energy = modality.energy(model)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(shape, generator=g) * 2 - 1).requires_grad_(True)

    # (B,), finite, differentiable in x; the learned part alone depends on x too.
    e = energy(x)
    assert e.shape == (BATCH,) and torch.isfinite(e).all()
    (grad,) = torch.autograd.grad(e.sum(), x)
    assert grad.shape == x.shape and torch.isfinite(grad).all()
    (grad_f,) = torch.autograd.grad(energy.response(x).sum(), x)
    assert grad_f.abs().sum() > 0

    # Each example's energy is its own: changing example 1 leaves example 0's energy as it was,
    # and the batch gives what its members give one at a time.
    with torch.no_grad():
        e = energy(x)
        other = x.clone()
        other[1] = torch.rand(shape[1:], generator=g) * 2 - 1
        moved = energy(other)
        single = torch.cat([energy(x[i : i + 1]) for i in range(BATCH)])
    assert moved[0] == e[0]
    assert moved[1] != e[1]  # the change was seen, so the check above is not vacuous
    torch.testing.assert_close(single, e, rtol=1e-4, atol=1e-4)

    # The config rebuilds the architecture; the weights then give the same energies. (The
    # learned part is compared too: the reference term |x|^2 / (2 * 0.05^2) can dominate the
    # float32 energies enough to hide a different initialisation.)
    torch.manual_seed(123)  # another initialisation: equality below needs the loaded weights
    rebuilt = build_from_config(energy.config)
    assert rebuilt.config == energy.config
    with torch.no_grad():
        response = energy.response(x)
        assert not torch.equal(rebuilt.response(x), response)
        rebuilt.load_state_dict(energy.state_dict())
        assert torch.equal(rebuilt.response(x), response)
        assert torch.equal(rebuilt(x), e)


@pytest.mark.parametrize("row, message", [
    ((0, 3, 1), "out_channels must be >= 1, got 0"),
    ((8, -3, 1), "kernel must be >= 1, got -3"),
    ((8, 3, 0), "stride must be >= 1, got 0"),
    ((8, 3, 1, -1), "padding must be >= 0, got -1"),
    ((8, (3, 0), 1), r"kernel must be >= 1, got \(3, 0\)"),
    # A 3-D kernel for this 2-D net failed inside torch.
    ((8, (3, 3, 3), 1), r"kernel must be one int or 2 \(one per dimension\), got \[3, 3, 3\]"),
    ((8, 3, (1,)), r"stride must be one int or 2 \(one per dimension\), got \[1\]"),
    (((8, 8), 3, 1), r"out_channels must be one int, got \[8, 8\]"),  # failed inside torch
    # Sizes that are no ints failed inside torch too, a stride only at the net's first call.
    ((8, 2.5, 1), "kernel must be an int, got 2.5"),
    ((8, 3, 1.5), "stride must be an int, got 1.5"),
    ((8, (3, 2.5), 1), r"kernel must be ints, got \(3, 2.5\)"),
    ((True, 3, 1), "out_channels must be an int, got True"),
])
def test_a_layer_out_of_range_is_named(row: tuple, message: str) -> None:
    """torch's own errors for these are a ZeroDivisionError, a message about weights or about
    argument types ("conv2d() received an invalid combination of arguments")."""
    with pytest.raises(ValueError, match=rf"layer 1 .*{message}"):
        IMAGE.energy(ModelConfig(arch="texture", in_channels=1, layers=(row,)))


@pytest.mark.parametrize("setting, message", [
    ({"spatial_dims": 1}, "spatial_dims must be 2 or 3, got 1"),
    ({"layers": []}, "layers must hold at least one convolution"),
    # Refused as layers (f9cb098's len() made None a TypeError, "object of type 'NoneType' has
    # no len()"; before it None read as no layers).
    ({"layers": None}, r"layers must be a list of rows \(out_channels, kernel, stride\[, "
                       r"padding\]\), got NoneType None"),
    ({"head": "mean"}, "head must be 'sum' or 'linear', got 'mean'"),
    ({"input_size": (5, 5, 5)}, r"input_size needs 2 entries, got \(5, 5, 5\)"),
    ({"in_channels": 0}, "in_channels must be an int >= 1, got 0"),
    ({"in_channels": 2.5}, "in_channels must be an int >= 1, got 2.5"),
    ({"input_size": (0, 4), "layers": [[2, 3, 1, 2]]}, r"input_size sides must be ints >= 1, "
                                                       r"got \(0, 4\)"),
    ({"input_size": (4.5, 4), "head": "linear"}, r"input_size sides must be ints >= 1, "
                                                 r"got \(4.5, 4\)"),
    ({"layers": [[2, 3]]}, r"each layer is \(out_channels, kernel, stride\[, padding\]\), "
                           r"got \(2, 3\)"),
    # A fifth entry (a dilation, say) has no place in a row: refused, not dropped.
    ({"layers": [[2, 3, 1, 0, 2]]}, r"each layer is \(out_channels, kernel, stride\[, "
                                    r"padding\]\), got \(2, 3, 1, 0, 2\)"),
    ({"activation": "tanh"}, "activation must be 'relu' or 'leaky_relu', got 'tanh'"),
], ids=["spatial_dims", "no layers", "layers None", "head", "input_size", "no channels",
        "half a channel", "empty side", "half a side",
        "short row", "long row", "activation"])
def test_a_net_setting_out_of_range_is_named(setting: dict, message: str) -> None:
    """Each was built into another net than asked for (a 3-D one for spatial_dims 1, the input
    itself for no layers, ReLUs for tanh, one of no input for no channels) or failed later inside
    torch (an empty side: "Only zero batch or zero channel inputs are supported")."""
    settings = {"spatial_dims": 2, "in_channels": 1, "layers": [[2, 3, 1], [1, 1, 1]]}
    with pytest.raises(ValueError, match=f"^{message}$"):
        ConvNetEnergy(**{**settings, **setting})


def test_a_net_built_of_numpy_numbers_keeps_python_numbers_a_checkpoint_takes(tmp_path) -> None:
    """A numpy int (of an array's shape) or float kept in the config: the trainer trained up to
    its first checkpoint, then refused to write it ("would hold objects other than tensors and
    plain data"). The config holds the Python numbers, tuples kept tuples."""
    from stgconv.checkpoint import save_checkpoint

    energy = ConvNetEnergy(spatial_dims=3, in_channels=np.int64(1),
                           layers=[(np.int64(4), (np.int32(1), 3, 3), np.int64(1))],
                           input_size=(None, np.int64(8), 8), reference_sigma=np.float64(0.5))
    assert energy.config["layers"] == [[4, (1, 3, 3), 1]]
    assert type(energy.config["in_channels"]) is int
    assert type(energy.config["reference_sigma"]) is float
    assert type(energy.config["layers"][0][1][0]) is int
    save_checkpoint({"model_config": energy.config}, tmp_path / "checkpoint.pt")


def test_the_leaky_relu_keeps_a_fifth_of_a_negative_input() -> None:
    leaky = make_activation("leaky_relu")
    assert leaky(torch.tensor([-1.0, 2.0])).tolist() == [pytest.approx(-0.2), 2.0]


def test_a_linear_head_net_keeps_a_config_of_its_own_and_a_batch_of_one() -> None:
    """The config is plain data, as a checkpoint stores it: lists, not the caller's tuple, nor
    the caller's rows (changed later, they would change the saved net). The response of a
    batch of one is ``(1,)``, not a 0-d tensor (the energy without a reference term)."""
    layers = [[2, 3, 1]]
    energy = ConvNetEnergy(spatial_dims=2, in_channels=1, layers=layers, head="linear",
                           input_size=(5, 5))
    layers[0][0] = 7
    assert energy.config["layers"] == [[2, 3, 1]] and energy.config["input_size"] == [5, 5]
    assert energy.response(torch.zeros(1, 1, 5, 5)).shape == (1,)


def test_a_three_dimensional_input_smaller_than_the_receptive_field_is_named() -> None:
    energy = ConvNetEnergy(spatial_dims=3, in_channels=1, layers=[[1, 3, 1], [1, (1, 2, 1), 1]])
    with pytest.raises(ValueError, match=r"input size \(2, 4, 4\) is smaller than the network's "
                                         r"receptive field: it needs at least \(3, 4, 3\)"):
        energy(torch.zeros(1, 1, 2, 4, 4))


def test_an_input_of_another_dtype_is_named_unless_autocast_casts_it() -> None:
    """A float64 (or uint8) batch for a float32 net failed inside the convolution, in every
    sampler and loss that called it; under autocast the convolution casts it itself."""
    energy = ConvNetEnergy(spatial_dims=2, in_channels=1, layers=[[2, 3, 1]])
    x = torch.zeros(2, 1, 5, 5)
    for dtype in (torch.float64, torch.uint8, torch.bfloat16):
        with pytest.raises(ValueError, match=rf"dtype torch.float32 \(the network's\), got "
                                             rf"{dtype}"):
            energy(x.to(dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert energy(x.bfloat16()).shape == energy(x.half()).shape == (2,)
        # Autocast casts no float64, integer or bool input: the convolution refused them
        # ("Input type (double) and bias type (c10::BFloat16) should be the same").
        for dtype in (torch.float64, torch.uint8, torch.bool):
            with pytest.raises(ValueError, match=rf"\(the network's\), got {dtype}"):
                energy(x.to(dtype))
    with pytest.raises(ValueError, match=r"got torch.float64: convert it \(x.to\(torch.float32\)\) "
                                         r"or the model \(model.to\(torch.float64\)\)$"):
        energy(x.double())
    # Integers are converted, not the model: model.to(torch.uint8) was the advice.
    with pytest.raises(ValueError, match=r"got torch.uint8: convert it "
                                         r"\(x.to\(torch.float32\)\)$"):
        energy(x.to(torch.uint8))
    assert energy.double()(x.double()).dtype == torch.float64


def _tiny_families() -> list:
    """``(energy, a batch it takes, how its errors name the batch)`` of every energy family."""
    classifier = ClassifierEnergy(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)))
    return [
        pytest.param(ConvNetEnergy(spatial_dims=2, in_channels=1, layers=[[2, 1, 1]]),
                     torch.zeros(2, 1, 2, 2), "x", id="convnet-sum"),
        pytest.param(ConvNetEnergy(spatial_dims=2, in_channels=1, layers=[[2, 1, 1]],
                                   head="linear", input_size=(2, 2)),
                     torch.zeros(2, 1, 2, 2), "x", id="convnet-linear"),
        pytest.param(classifier, torch.zeros(2, 1, 2, 2), "x", id="classifier"),
        pytest.param(classifier.conditional(1), torch.zeros(2, 1, 2, 2), "x", id="conditional"),
        pytest.param(RBM(4, 3), torch.zeros(2, 1, 2, 2), "v", id="rbm"),
        pytest.param(ProductOfExperts([classifier, RBM(4, 3)]), torch.zeros(2, 1, 2, 2),
                     "x", id="product"),
    ]


@pytest.mark.parametrize("energy, x, name", _tiny_families())
def test_every_family_names_a_batch_on_another_device_an_array_or_a_0d_tensor(
        energy, x: torch.Tensor, name: str) -> None:
    """A meta batch for a CPU net failed inside torch ("Tensor on device cpu is not on the
    expected device meta!"), or (the summed head) came back a meta energy without a word; a
    CPU batch for a GPU net fails alike in its first layer. An array failed on an attribute
    ("'numpy.ndarray' object has no attribute 'is_floating_point'"), a 0-d tensor on "len() of
    a 0-d tensor" or "Dimension out of range"."""
    assert energy(x).shape == (2,)
    with pytest.raises(ValueError, match=rf"expected {name} on the network's device cpu, got "
                                         rf"meta: move it \({name}.to\('cpu'\)\) or the model$"):
        energy(x.to("meta"))
    with pytest.raises(ValueError, match=rf"{name} must be a torch.Tensor, got ndarray"):
        energy(x.numpy())
    with pytest.raises(ValueError, match=r"got (a 0-d tensor|\(\))"):
        energy(torch.tensor(0.0))


@pytest.mark.parametrize("energy, x, name", [
    family for family in _tiny_families() if not family.id.startswith("convnet")])
def test_every_family_without_a_shape_of_its_own_names_a_0d_tensor_in_one_wording(
        energy, x: torch.Tensor, name: str) -> None:
    """One number given for a batch: the classifier and the product said "x must be a batch
    (B, *S), got a 0-d tensor (x[None]: one example)", the RBM "expected visible units v (B,
    *S), got a 0-d tensor", the same refusal in two wordings (checks.check_batch now, as
    baselines' mean_fill). A ConvNetEnergy names the whole shape it expects instead."""
    with pytest.raises(ValueError, match=rf"^{name} must be a batch \(B, \*S\), got a 0-d tensor "
                                         rf"\({name}\[None\]: one example\)$"):
        energy(torch.tensor(0.0))


class _TwoDevices(nn.Module):
    """A classifier whose first parameter lives on another device than the layer x enters (a
    net placed over several GPUs): here meta, never read."""

    def __init__(self) -> None:
        super().__init__()
        self.elsewhere = nn.Parameter(torch.zeros(1, device="meta"))
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_a_classifier_spanning_devices_is_not_refused_by_its_first_parameter() -> None:
    """The device check reads the first parameter: a classifier over several devices takes x
    where its first layer wants it, not where that parameter is."""
    assert ClassifierEnergy(_TwoDevices())(torch.zeros(2, 1, 2, 2)).shape == (2,)


@pytest.mark.parametrize("head", ["sum", "linear"])
def test_a_half_precision_net_sums_a_large_input_without_overflow(head: str) -> None:
    """The advice for a float16 batch is to convert the model: a float16 net then summed
    |x|^2 over a 3x16x64x64 clip in float16 (96k, past its 65504) and every energy was inf,
    each chain reported as diverged at step 0; the summed head's total overflowed alike."""
    torch.manual_seed(0)
    energy = ConvNetEnergy(spatial_dims=3, in_channels=3, layers=[[2, 1, 1]], head=head,
                           input_size=(16, 64, 64))
    with torch.no_grad():
        for p in energy.parameters():
            p.fill_(0.5)
        if head == "linear":  # one score per example, O(1) in a trained net: the sum is |x|^2
            energy.head.weight.zero_()
    x = torch.full((1, 3, 16, 64, 64), 0.7)
    exact = energy(x)
    half = copy.deepcopy(energy).half()(x.half())
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, exact, rtol=1e-3, atol=0)


def test_check_size_refuses_sizes_of_another_number_of_dimensions() -> None:
    """A video net's check of a clip's (H, W) alone compared the two sizes it had and passed,
    however small the clip's length."""
    energy = ConvNetEnergy(spatial_dims=3, in_channels=1, layers=[[1, 3, 1]])
    for size in ((9, 9), (9, 9, 9, 9)):
        with pytest.raises(ValueError, match=rf"^size must hold 3 spatial sizes, one per "
                                             rf"dimension of the input past \(B, C\), got "
                                             rf"{re.escape(str(size))}$"):
            energy.check_size(size)
    energy.check_size((3, 3, 3))


def test_layers_given_as_a_numpy_array_build_the_net() -> None:
    """Rows of a numpy array failed on "The truth value of an array with more than one
    element is ambiguous"; the net keeps plain Python numbers in its config."""
    energy = ConvNetEnergy(spatial_dims=2, in_channels=1, layers=np.array([[2, 3, 1]]))
    assert energy.config["layers"] == [[2, 3, 1]]
    assert type(energy.config["layers"][0][0]) is int
    assert energy(torch.zeros(1, 1, 3, 3)).shape == (1,)


def test_the_sum_head_sums_the_top_layer_with_no_activation() -> None:
    from stgconv.energy.base import ConvNetEnergy

    energy = ConvNetEnergy(spatial_dims=2, in_channels=1, layers=[[1, 1, 1]],
                           reference_sigma=None)
    with torch.no_grad():
        energy.features[0].weight.fill_(1.0)
        energy.features[0].bias.zero_()
    x = torch.randn(2, 1, 3, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(energy.response(x), x.flatten(1).sum(1))


def test_a_linear_head_reads_activated_features() -> None:
    """With the fully connected head every convolution, the top one included, is followed
    by its activation: the head reads rectified features, not the raw top convolution."""
    energy = ConvNetEnergy(spatial_dims=2, in_channels=1, layers=[[2, 3, 1], [2, 3, 1]],
                           head="linear", input_size=(5, 5), reference_sigma=None)
    kinds = [type(block) for block in energy.features]
    assert kinds == [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU]


# --------------------------------------------------------------------------- as torch modules


def networks() -> list:
    """``(build, input shape)`` of a tiny energy of every family, and of the cooperative
    generator: ``build()`` makes a fresh one (its weights drawn from torch's global
    generator)."""
    def product() -> ProductOfExperts:
        digits = classifier_energy("digit_classifier", density_scale=True)
        return ProductOfExperts([digits.conditional(1), digits.conditional(2),
                                 image_energy("texture", in_channels=1, layers=[[2, 3, 1]])],
                                weights=[1.0, 0.5, 1.0])

    return [
        pytest.param(lambda: image_energy("object", image_size=8, layers=[[2, 3, 2, 1]]),
                     (BATCH, 3, 8, 8), id="image"),
        pytest.param(lambda: video_energy("fc_s_small", frame_size=(8, 8)),
                     (BATCH, 3, 4, 8, 8), id="video"),
        pytest.param(lambda: voxel_energy("desc32_small", size=8, layers=[[2, 4, 2, 1]]),
                     (BATCH, 1, 8, 8, 8), id="voxels"),
        pytest.param(lambda: ClassifierEnergy(wide_resnet(3, depth=10, widen=1)),
                     (BATCH, 3, 8, 8), id="classifier"),
        pytest.param(product, (BATCH, 1, 28, 28), id="product"),
        pytest.param(lambda: RBM(6, 3, visible="gaussian"), (BATCH, 6), id="rbm"),
        pytest.param(lambda: ConvGenerator(latent_dim=4, out_shape=(1, 8, 8), width=2),
                     (BATCH, 4), id="generator"),
    ]


@pytest.mark.parametrize("build, shape", networks())
def test_every_network_lives_as_a_torch_module(build, shape: tuple[int, ...]) -> None:
    """What users do with any module: copy it (an EMA of the weights), pickle it (DataLoader
    workers, multiprocessing), save it whole, convert it to another dtype or the meta device,
    checkpoint its state_dict into a fresh one, call it functionally. No tensor is kept outside
    the parameters and buffers, where all of these would miss it."""
    torch.manual_seed(0)
    energy = build()
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        e = energy(x)
    stray = [f"{name}.{key}" for name, module in energy.named_modules()
             for key, value in vars(module).items() if isinstance(value, torch.Tensor)]
    assert stray == []

    saved = io.BytesIO()
    torch.save(energy, saved)
    saved.seek(0)
    for twin in (copy.deepcopy(energy), pickle.loads(pickle.dumps(energy)),
                 torch.load(saved, weights_only=False)):
        with torch.no_grad():
            assert torch.equal(twin(x), e)

    torch.manual_seed(1)  # another initialisation: equality needs the loaded state
    fresh = build()
    fresh.load_state_dict(energy.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(fresh(x), e)
    params = {name: p.detach() + 0 for name, p in energy.named_parameters()}
    assert torch.equal(torch.func.functional_call(energy, params, (x,)), e.detach())

    double = copy.deepcopy(energy).double()
    assert {t.dtype for t in (*double.parameters(), *double.buffers())} == {torch.float64}
    assert double(x.double()).dtype == torch.float64
    meta = copy.deepcopy(energy).to("meta")
    assert meta(x.to("meta")).device.type == "meta"


def test_every_energy_family_says_its_settings_in_its_repr() -> None:
    """nn.Module's repr lists submodules only: an RBM printed as ``RBM()``, and no repr said
    the reference term, the head, the density scale, or which classes and weights a product
    combines."""
    assert repr(RBM(6, 3, visible="gaussian")) == (
        "RBM(n_visible=6, n_hidden=3, visible='gaussian')")
    video = video_energy("fc_s_small", frame_size=(8, 8))
    assert video.extra_repr() == "head='sum', input_size=(None, 8, 8), reference_sigma=0.05"
    texture = image_energy("texture", in_channels=1, layers=[[2, 3, 1]], reference_sigma=None)
    assert texture.extra_repr() == "head='sum', reference_sigma=None"
    digits = classifier_energy("digit_classifier", density_scale=True)
    assert digits.extra_repr() == ("arch='digit_classifier', n_classes=10, in_channels=1, "
                                   "image_size=28, density_scale=True")
    product = ProductOfExperts([digits.conditional(1), texture,
                                digits.conditional(torch.tensor([1, 2]))],
                               weights=[1, 0.5, 1],
                               views=[None, partial(block_down, factor=(2, 2)), torch.flipud])
    assert product.extra_repr() == (
        "experts=[ClassifierEnergy.class_energy(y=1), ConvNetEnergy, "
        "ClassifierEnergy.class_energy(y=<tensor (2,)>)], weights=[1.0, 0.5, 1.0], "
        "views=[None, block_down(factor=(2, 2)), flipud]")
    assert repr(product).startswith("ProductOfExperts(\n  experts=[")
    doubled = ProductOfExperts([texture], views=[partial(torch.mul, 2.0)])  # fixed positionally
    assert doubled.extra_repr().endswith("views=[mul(2.0)]")
    scaled = ProductOfExperts([texture], views=[partial(torch.mul, torch.ones(3))])
    assert scaled.extra_repr().endswith("views=[mul(<tensor (3,)>)]")


def test_a_parametrized_weight_is_computed_once_per_call() -> None:
    """Reading the first layer's weight for its dtype computed it under a parametrization: with
    spectral_norm (common on EBMs), every energy ran two power iterations, a sampler step too."""
    class Counted(nn.Module):
        calls = 0

        def forward(self, weight: torch.Tensor) -> torch.Tensor:
            Counted.calls += 1
            return weight

    energy = ConvNetEnergy(spatial_dims=2, in_channels=1, layers=[[2, 3, 1]])
    net = ConvGenerator(latent_dim=2, out_shape=(1, 8, 8), width=2)
    for module, first, x in ((energy, energy.features[0], torch.zeros(2, 1, 5, 5)),
                             (net, net.project, torch.zeros(2, 2))):
        parametrize.register_parametrization(first, "weight", Counted())
        Counted.calls = 0
        module(x)
        assert Counted.calls == 1


def test_every_modalitys_builder_is_public_beside_image_energy() -> None:
    # image_energy was exported from stgconv and stgconv.energy; video_energy and voxel_energy
    # only from their modules, so the examples needed private-looking module paths.
    import stgconv
    import stgconv.energy

    for name, builder in (("image_energy", image_energy), ("video_energy", video_energy),
                          ("voxel_energy", voxel_energy)):
        assert getattr(stgconv, name) is builder and name in stgconv.__all__
        assert getattr(stgconv.energy, name) is builder and name in stgconv.energy.__all__
    for name, presets in (("VIDEO_ARCHS", VIDEO_ARCHS), ("VOXEL_PRESETS", VOXEL_PRESETS)):
        assert getattr(stgconv.energy, name) is presets and name in stgconv.energy.__all__


# --------------------------------------------------------------------------- exact gradients


def _classifier() -> ClassifierEnergy:
    """A tiny smooth classifier (8 inputs, 3 classes) with a learnt density scale s != 1, so
    the scale's terms of the marginal and class energies are differentiated too."""
    energy = ClassifierEnergy(nn.Sequential(nn.Flatten(), nn.Linear(8, 4), nn.SiLU(),
                                            nn.Linear(4, 3)), density_scale=True)
    with torch.no_grad():
        energy.log_density_scale.fill_(0.4)
    return energy


class _Conditional(nn.Module):
    """The class energy of one class per example, as a module (so its parameters are the
    classifier's)."""

    def __init__(self, classifier: ClassifierEnergy) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.class_energy(x, torch.tensor([1, 2]))


def _product() -> ProductOfExperts:
    """Experts of different families, two of them reading transformed views of x."""
    classifier = _classifier()
    texture = image_energy("texture", in_channels=2, layers=[[2, 1, 1]], reference_sigma=0.7)
    return ProductOfExperts(
        [classifier, classifier.conditional(torch.tensor([2, 0])), texture],
        weights=[0.5, 1.0, 2.0],
        views=[None, partial(torch.flip, dims=(-1,)), partial(block_down, factor=(2, 1))])


def gradient_cases() -> list:
    """``(build, input shape)`` of a float64 energy of every family, small enough for finite
    differences in every input entry and every parameter."""
    return [
        pytest.param(lambda: image_energy("texture", in_channels=1, layers=[[2, 3, 1], [2, 2, 1]],
                                          reference_sigma=0.5),
                     (2, 1, 5, 5), id="image-descriptor"),
        pytest.param(lambda: image_energy("object", in_channels=1, image_size=4,
                                          layers=[[2, 3, 1, 1]]),
                     (2, 1, 4, 4), id="image-linear-head"),
        pytest.param(lambda: video_energy("st_small", in_channels=1,
                                          layers=[[2, (2, 3, 3), (1, 2, 2), (0, 1, 1)],
                                                  [1, (2, 2, 2), 1]]),
                     (2, 1, 3, 4, 4), id="video-st"),
        pytest.param(lambda: video_energy("fc_s_small", in_channels=1, frame_size=(3, 3),
                                          layers=[[2, (2, 3, 3), 1], [1, (2, 1, 1), 1]]),
                     (2, 1, 4, 3, 3), id="video-fc_s"),
        pytest.param(lambda: voxel_energy("desc32_small", size=3, layers=[[2, 2, 1]]),
                     (2, 1, 3, 3, 3), id="voxels"),
        pytest.param(_classifier, (2, 2, 2, 2), id="jem-marginal"),
        pytest.param(lambda: _Conditional(_classifier()), (2, 2, 2, 2), id="jem-conditional"),
        pytest.param(_product, (2, 2, 2, 2), id="product-of-views"),
        pytest.param(lambda: RBM(5, 3, init_scale=1.0), (2, 5), id="rbm-binary"),
        pytest.param(lambda: RBM(5, 3, visible="gaussian", init_scale=1.0), (2, 5),
                     id="rbm-gaussian"),
    ]


@pytest.mark.parametrize("build, shape", gradient_cases())
def test_every_energy_family_has_the_exact_gradient_in_x_and_its_parameters(build, shape) -> None:
    """Autograd's derivative of the energy matches central finite differences in float64, in
    every entry of x (what every sampler follows) and every parameter (what training follows):
    a detached reference term or density scale, a value read back as a Python number, or a
    hand-written backward would break it. Every parameter is moved by random noise, so none
    is left at 0 (an RBM's biases start there), where a missing term could go unseen."""
    torch.manual_seed(0)
    energy = build().double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in energy.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    names = [name for name, _ in energy.named_parameters()]
    params = tuple(p.detach().requires_grad_(True) for p in energy.parameters())
    x = torch.rand(shape, generator=g, dtype=torch.float64).requires_grad_(True)

    def function(x: torch.Tensor, *values: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(energy, dict(zip(names, values)), (x,))

    assert function(x, *params).shape == (shape[0],)
    assert torch.autograd.gradcheck(function, (x, *params), eps=1e-6, atol=1e-6, rtol=1e-5)

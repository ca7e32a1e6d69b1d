"""The video energies (STGConvNet): the ST model is stationary in space and time and takes any
clip size; FC_S is tied to its frame size but takes any number of frames; bad inputs name the
problem. The contract every preset meets (``(B, C, T, H, W) -> (B,)``, differentiable, per
example, rebuilt from its config) is in ``test_energy.py``."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from stgconv.energy.video import FC_S_WIDTHS, video_energy

FRAME = (32, 32)


def make(arch: str, **kw):
    torch.manual_seed(0)
    frame_size = FRAME if arch in FC_S_WIDTHS else None  # the st presets refuse one
    return video_energy(arch, in_channels=3, frame_size=frame_size, **kw).double()


def clips(batch: int = 2, frames: int = 12, size=FRAME, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 3, frames, *size, generator=g, dtype=torch.float64) * 2 - 1) * 0.5


def test_full_size_st_preset_runs_on_the_papers_clip_shape():
    energy = video_energy("st", frame_size=None)
    e = energy(torch.zeros(1, 3, 70, 100, 100))
    assert e.shape == (1,) and torch.isfinite(e).all()


def test_st_preset_is_the_published_st_net():
    """The ST sizes of the public STGConvNet code (zilongzheng/STGConvNet, src/model.py): 120
    15^3 filters stride 7, 40 7^3 stride 3, 20 2x3x3 stride (1, 2, 2); its "SAME" padding
    gives 10x15x15, 4x5x5 and 4x3x3 positions on 70 frames of 100x100 (ours: 5 in time)."""
    energy = video_energy("st", frame_size=None)
    rows = [(row[0], tuple(row[1]), tuple(row[2])) for row in energy.config["layers"]]
    assert rows == [(120, (15, 15, 15), (7, 7, 7)), (40, (7, 7, 7), (3, 3, 3)),
                    (20, (2, 3, 3), (1, 2, 2))]
    convs = [block for block in energy.features if isinstance(block, torch.nn.Conv3d)]
    sizes, h = [], torch.zeros(1, 3, 70, 100, 100)
    with torch.no_grad():
        for conv in convs:
            h = torch.relu(conv(h))
            sizes.append(tuple(h.shape[2:]))
    assert sizes == [(10, 15, 15), (4, 5, 5), (5, 3, 3)]


def test_fc_s_preset_is_the_coopnets_fc_s_descriptor():
    """The FC_S descriptor of jianwen-xie/Spatial-Temporal-CoopNets (src/CoopNets_video.py):
    120 5^3 stride 2, 30 spanning the frame over 5 frames stride 2, 10 of 5 frames stride 2."""
    energy = video_energy("fc_s", frame_size=(100, 100))
    rows = [(row[0], tuple(row[1]), tuple(row[2])) for row in energy.config["layers"]]
    assert rows == [(120, (5, 5, 5), (2, 2, 2)), (30, (5, 50, 50), (2, 1, 1)),
                    (10, (5, 1, 1), (2, 1, 1))]
    # Padded by about half a kernel in time: every frame reaches the top layer.
    assert [tuple(row[3]) for row in energy.config["layers"]] == [(2, 2, 2), (2, 0, 0),
                                                                  (2, 0, 0)]


def test_st_is_stationary_under_spatial_and_temporal_shifts():
    """Moving a pattern inside a zero background by a multiple of the total stride, far from
    the borders, leaves the summed response unchanged: the ST model has no notion of where."""
    energy = make("st_small")  # strides (2,3,3) then (1,2,2): total (2, 6, 6)
    pattern = clips(batch=1, frames=6, size=(12, 12))
    # The top units see 11 frames and 22 pixels: keep the pattern that far from every border.
    canvas = torch.zeros(1, 3, 30, 72, 72, dtype=torch.float64)
    a, b = canvas.clone(), canvas.clone()
    a[..., 10:16, 24:36, 24:36] = pattern
    b[..., 12:18, 30:42, 36:48] = pattern  # shifted by (2, 6, 12)
    torch.testing.assert_close(energy.response(a), energy.response(b), rtol=1e-10, atol=1e-8)


def test_st_takes_any_clip_size_fc_s_any_length():
    st = make("st_small")
    assert st(clips(frames=14, size=(40, 28))).shape == (2,)
    fc_s = make("fc_s_small")
    assert fc_s(clips(frames=20)).shape == (2,)
    with pytest.raises(ValueError, match=r"expected input of shape \(.B., 3, .\*., 32, 32\)"):
        fc_s(clips(size=(40, 40)))


def test_fc_s_depends_on_where_things_are():
    energy = make("fc_s_small")
    pattern = clips(batch=1, frames=12, size=(8, 8))
    a = torch.zeros(1, 3, 12, *FRAME, dtype=torch.float64)
    b = a.clone()
    a[..., 0:8, 0:8] = pattern
    b[..., 12:20, 12:20] = pattern
    assert not torch.allclose(energy.response(a), energy.response(b))


def test_bad_input_names_the_expected_shape():
    energy = make("st_small")
    with pytest.raises(ValueError, match=r"\('B', 3"):
        energy(torch.zeros(2, 3, 32, 32, dtype=torch.float64))  # an image, not a clip
    with pytest.raises(ValueError, match="unknown video architecture"):
        video_energy("nope")
    with pytest.raises(ValueError, match="frame_size"):
        video_energy("fc_s")


@pytest.mark.parametrize("layers", [None, [[2, 3, 1]]])
def test_a_frame_size_for_an_st_preset_is_refused_naming_both(layers) -> None:
    """The st presets take frames of any size: a frame_size was ignored without a word, the
    caller left believing the net fixed to it."""
    with pytest.raises(ValueError, match=re.escape(
            "st_small reads no frame_size (its filters slide over frames of any size; only "
            "fc_s, fc_s_small span the frame), got frame_size=(16, 16): leave it out")):
        video_energy("st_small", frame_size=(16, 16), layers=layers)


def test_fc_s_second_layer_spans_the_whole_frame() -> None:
    """The FC_S second layer's kernel covers the entire frame left by the first layer
    (5x5, stride 2, padding 2), so its output has one position per frame."""
    energy = video_energy("fc_s_small", frame_size=(16, 12))
    assert tuple(energy.config["layers"][1][1]) == (5, 8, 6)
    x = torch.zeros(1, 3, 8, 16, 12)
    h = energy.features[:3](x)  # conv, relu, conv
    assert tuple(h.shape[-2:]) == (1, 1)


def test_fc_s_takes_given_layers_and_needs_a_two_sided_frame() -> None:
    layers = [[4, (3, 3, 3), (1, 1, 1)]]
    assert video_energy("fc_s_small", frame_size=(16, 16), layers=layers).config["layers"] == layers
    for frame_size in ((16,), 16):  # a bare side failed as "'int' object has no len()"
        with pytest.raises(ValueError, match=re.escape(
                f"fc_s_small needs frame_size=(H, W), got {frame_size}")):
            video_energy("fc_s_small", frame_size=frame_size)


@pytest.mark.parametrize("frame_size", [(0, 4), (16.0, 16), (True, 4), "ab"])
def test_a_frame_size_of_other_than_two_positive_ints_is_refused_by_its_name(frame_size) -> None:
    """It was refused as the net's input_size (None, 0, 4), which the caller never gave, or
    ("ab") failed in the layers' arithmetic: "can only concatenate str (not "int") to str"."""
    for layers in (None, [[4, (3, 3, 3), 1]]):
        with pytest.raises(ValueError, match=re.escape(
                f"frame_size must be (H, W), two ints >= 1, got {frame_size!r}")):
            video_energy("fc_s_small", frame_size=frame_size, layers=layers)


def test_a_frame_size_of_a_tensor_or_numpy_ints_is_kept_as_python_ints() -> None:
    """A tensor's sides were kept as tensors in the net's layers and config."""
    for frame_size in (torch.tensor([16, 12]), np.array([16, 12])):
        energy = video_energy("fc_s_small", frame_size=frame_size)
        assert energy.config["input_size"] == [None, 16, 12]
        assert all(type(n) is int for n in energy.config["layers"][1][1])


@pytest.mark.parametrize("arch", ["st_small", "fc_s_small"])
def test_the_last_frame_of_a_clip_the_strides_do_not_fit_reaches_the_top_layer(arch: str
                                                                                ) -> None:
    """The presets' zero padding of about half a kernel: unpadded in time, the last of 8
    frames got no gradient from f."""
    torch.manual_seed(0)
    energy = video_energy(arch, frame_size=(16, 16) if arch in FC_S_WIDTHS else None,
                          reference_sigma=None)
    x = torch.rand(1, 3, 8, 16, 16, requires_grad=True)
    energy(x).sum().backward()
    assert x.grad[:, :, -1].abs().sum() > 0


def test_video_presets_default_to_a_reference_sigma_of_0_05_and_relu() -> None:
    """Video energies keep the small Gaussian reference term (sigma 0.05) by default."""
    assert video_energy("st_small").reference_sigma == 0.05
    assert video_energy("st_small").config["activation"] == "relu"
    assert video_energy("fc_s_small", frame_size=(16, 16)).config["reference_sigma"] == 0.05


def _conv_rows(energy) -> list[tuple]:
    return [(conv.out_channels, conv.kernel_size, conv.stride, conv.padding)
            for conv in energy.features if isinstance(conv, torch.nn.Conv3d)]


def test_the_small_presets_keep_the_sizes_the_quick_configs_and_bench_were_run_with() -> None:
    """st_small: 16 5x7x7 filters stride (2, 3, 3), 16 3x4x4 stride (1, 2, 2) padded by one
    in time, 8 unpadded 2x2x2 on top; fc_s_small: FC_S with 16, 8 and 4 filters."""
    assert _conv_rows(video_energy("st_small")) == [
        (16, (5, 7, 7), (2, 3, 3), (2, 3, 3)), (16, (3, 4, 4), (1, 2, 2), (1, 1, 1)),
        (8, (2, 2, 2), (1, 1, 1), (0, 0, 0))]
    assert _conv_rows(video_energy("fc_s_small", frame_size=(16, 16))) == [
        (16, (5, 5, 5), (2, 2, 2), (2, 2, 2)), (8, (5, 8, 8), (2, 1, 1), (2, 0, 0)),
        (4, (5, 1, 1), (2, 1, 1), (2, 0, 0))]


def test_a_video_energy_takes_the_channels_it_is_given() -> None:
    energy = video_energy("st_small", in_channels=1)
    assert energy.features[0].in_channels == 1 and energy.config["in_channels"] == 1

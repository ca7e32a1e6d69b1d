"""The modality interface: which modality serves each ``data.kind``; the grid shapes of a
multi-grid pyramid; the shape of fresh samples (other sizes and clip lengths only where the model
allows them); previews write the files they return; the voxel units (occupancy minus the training
mean) round-trip and are learnt from the data. Real-data checks run on ../shared/data and skip
cleanly without it."""

from __future__ import annotations

import io
import re
import typing
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from _tiny import (JEM_CONFIG, ROOT, SR_CONFIG, boxes_and_balls, captured, gif_frame_ms,
                   png_size, read_events, spans, write_y_up_post)
from PIL import Image

from stgconv.config import ARCHS_OF_KIND, DataConfig, ExperimentConfig, ModelConfig, load_config
from stgconv.io.video import COMPARISON_GAP
from stgconv.modalities import IMAGE, MODALITIES, VIDEO, VOXELS, modality_of

# --------------------------------------------------------------------------- which modality

SERVES = {"texture": IMAGE, "objects": IMAGE, "video_frames": IMAGE, "video": VIDEO,
          "voxels": VOXELS}


def of_kind(kind: str) -> ExperimentConfig:
    """The default experiment on data of ``kind``, with the first net its modality builds."""
    return ExperimentConfig(data=DataConfig(kind=kind),
                            model=ModelConfig(arch=ARCHS_OF_KIND[kind][0]))


def test_every_data_kind_has_its_modality() -> None:
    kinds = typing.get_args(typing.get_type_hints(DataConfig)["kind"])
    assert set(kinds) == set(SERVES), "a data.kind without an expected modality here"
    for kind in kinds:
        assert modality_of(of_kind(kind)) is SERVES[kind], kind
    assert {m.name for m in MODALITIES} == {"image", "video", "voxels"}


def test_the_config_refuses_only_architectures_the_modality_cannot_build() -> None:
    """The config names a model.arch of another modality up front (ARCHS_OF_KIND); the
    modality refused it too, but only once the data had loaded."""
    every = typing.get_args(typing.get_type_hints(ModelConfig)["arch"])
    for kind, modality in SERVES.items():
        assert set(ARCHS_OF_KIND[kind]) <= set(every)
        for arch in set(every) - set(ARCHS_OF_KIND[kind]):
            with pytest.raises(ValueError, match=f"unknown .*architecture '{arch}'"):
                modality.energy(ModelConfig(arch=arch))


def test_an_unknown_kind_names_the_choices() -> None:
    config = ExperimentConfig(data=DataConfig(kind="point_cloud"))  # past config checks
    with pytest.raises(ValueError, match=r"'point_cloud' is served by no modality.*'voxels'"):
        modality_of(config)


# --------------------------------------------------------------------------- shapes


def test_grid_shape_of_each_modality() -> None:
    data = DataConfig(kind="video", frames=6)
    assert IMAGE.grid_shape(4, None, data) == (4, 4)
    assert VIDEO.grid_shape(4, None, data) == (6, 4, 4)  # every frame of the data
    assert VIDEO.grid_shape(4, 3, data) == (3, 4, 4)
    assert VOXELS.grid_shape(4, None, data) == (4, 4, 4)


def experiment(kind: str, model: ModelConfig, *, size: int, frames: int = 16) -> ExperimentConfig:
    """A config of ``model`` on data of its channels (images and videos)."""
    channels = {} if kind == "voxels" or model.in_channels is None else {
        "channels": model.in_channels}
    return ExperimentConfig(model=model, data=DataConfig(kind=kind, size=size, frames=frames,
                                                         **channels))


def test_image_sample_shape() -> None:
    stationary = experiment("texture", ModelConfig(arch="texture", in_channels=3,
                                                   layers=((4, 3, 1),)), size=16)
    energy = IMAGE.energy(stationary.model)
    assert IMAGE.sample_shape(energy, stationary, 5) == (5, 3, 16, 16)
    assert IMAGE.sample_shape(energy, stationary, 5, size=24) == (5, 3, 24, 24)
    with pytest.raises(ValueError, match="frames only applies to video.*got frames=4"):
        IMAGE.sample_shape(energy, stationary, 5, frames=4)

    tied = experiment("objects", ModelConfig(arch="object", in_channels=1, image_size=16,
                                             layers=((4, 3, 2),)), size=16)
    energy = IMAGE.energy(tied.model)
    assert IMAGE.sample_shape(energy, tied, 2, size=16) == (2, 1, 16, 16)
    with pytest.raises(ValueError, match="tied to 16x16 inputs; size=8"):
        IMAGE.sample_shape(energy, tied, 2, size=8)


@pytest.mark.parametrize("modality, arch, asked, error", [
    (IMAGE, "texture", dict(size=0), "size must be an int >= 1, got 0"),
    (IMAGE, "texture", dict(size=2.5), "size must be an int >= 1, got 2.5"),
    (VIDEO, "st", dict(size=-4), "size must be an int >= 1, got -4"),
    (VIDEO, "st", dict(frames=0), "frames must be an int >= 1, got 0"),
    (VIDEO, "st", dict(frames=True), "frames must be an int >= 1, got True"),
])
def test_a_side_or_length_that_is_not_a_positive_int_is_refused(
        modality, arch: str, asked: dict, error: str) -> None:
    """The shape's own check, not the tasks' before it: a side of 0 would make empty chains."""
    model = ModelConfig(arch=arch, in_channels=1, layers=((2, 3, 1),))
    config = (experiment("texture", model, size=8) if modality is IMAGE
              else experiment("video", model, size=8, frames=4))
    energy = modality.energy(config.model)
    with pytest.raises(ValueError, match=re.escape(error)):
        modality.sample_shape(energy, config, 2, **asked)
    assert modality.sample_shape(energy, config, 2, size=6)[-2:] == (6, 6)


def test_the_models_settings_reach_its_image_energy() -> None:
    """An image model's reference sigma and activation; a classifier's classes and density
    scale, and its preset's side ties its samples (it has no stationary head)."""
    texture = IMAGE.energy(ModelConfig(arch="texture", in_channels=1, layers=((4, 3, 1), (2, 1, 1)),
                                       activation="leaky_relu", reference_sigma=0.3))
    assert texture.reference_sigma == 0.3
    assert any(isinstance(layer, torch.nn.LeakyReLU) for layer in texture.modules())
    config = load_config(JEM_CONFIG)  # a digit classifier on 28x28 grey images
    config = replace(config, model=replace(config.model, in_channels=1, image_size=28,
                                           density_scale=True))  # as training fills it in
    classifier = IMAGE.energy(config.model)
    assert classifier.log_density_scale is not None
    assert IMAGE.energy(replace(config.model, density_scale=False)).log_density_scale is None
    assert IMAGE.energy(replace(config.model, n_classes=3)).config["n_classes"] == 3
    assert IMAGE.sample_shape(classifier, config, 2) == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="tied to 28x28 inputs; size=32"):
        IMAGE.sample_shape(classifier, config, 2, size=32)


def test_a_coarse_image_grid_is_previewed_and_kept_as_an_array(tmp_path: Path) -> None:
    grid = torch.rand(3, 1, 4, 4) * 2 - 1
    assert IMAGE.save_grid(grid, tmp_path / "grid") == [tmp_path / "grid.png",
                                                         tmp_path / "grid.npy"]
    assert np.load(tmp_path / "grid.npy").shape == (3, 1, 4, 4)


def test_a_coarse_video_grid_is_previewed_as_a_gif_only_and_kept_as_an_array(
        tmp_path: Path) -> None:
    grid = torch.rand(2, 1, 3, 4, 4) * 2 - 1
    assert VIDEO.save_grid(grid, tmp_path / "grid") == [tmp_path / "grid.gif",
                                                         tmp_path / "grid.npy"]


def test_a_coarse_video_grid_plays_as_long_as_the_finest_clip(tmp_path: Path) -> None:
    """A grid's frames are block means of the finest grid's: 4 of 16 frames at data.fps 5
    each last 4 frames' 200 ms. Its GIF played at 25 fps whatever the data's rate, in a fifth
    of the clip's time at fps 5 and a quarter of it at 25."""
    grid = torch.rand(2, 1, 4, 4, 4) * 2 - 1
    VIDEO.save_grid(grid, tmp_path / "slow", fps=5, frames=16)
    assert gif_frame_ms(tmp_path / "slow.gif") == 800
    VIDEO.save_grid(grid, tmp_path / "default", frames=16)
    assert gif_frame_ms(tmp_path / "default.gif") == 160
    VIDEO.save_grid(grid, tmp_path / "own", fps=5)
    assert gif_frame_ms(tmp_path / "own.gif") == 200


def test_a_video_pyramid_plays_at_the_data_rate(tmp_path: Path) -> None:
    """It played at 25 fps beside samples.gif at data.fps."""
    grids = [torch.zeros(1, 3, 2, 2, 2), torch.zeros(1, 3, 4, 4, 4)]
    VIDEO.save_pyramid(grids, tmp_path / "slow", fps=5)
    assert gif_frame_ms(tmp_path / "slow.gif") == 200
    VIDEO.save_pyramid(grids, tmp_path / "default")
    assert gif_frame_ms(tmp_path / "default.gif") == 40


def test_a_batch_of_another_layout_is_refused_before_any_array_is_written(
        tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\(N, C, T, H, W\)"):
        VIDEO.save_samples(torch.zeros(2, 3, 4, 4), tmp_path / "clips")
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        IMAGE.save_grid(torch.zeros(2, 3, 2, 4, 4), tmp_path / "grid")
    assert not list(tmp_path.iterdir())


def test_samples_still_in_an_autograd_graph_are_saved(tmp_path: Path) -> None:
    images = torch.zeros(1, 1, 2, 2, requires_grad=True) * 1.0
    assert IMAGE.save_samples(images, tmp_path / "s")[-1] == tmp_path / "s.npy"
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), np.full((1, 1, 2, 2), 127.5))


def test_video_sample_shape() -> None:
    st = experiment("video", ModelConfig(arch="st_small", in_channels=3,
                                         layers=((4, (2, 3, 3), (1, 2, 2)),)), size=16, frames=6)
    energy = VIDEO.energy(st.model)
    assert VIDEO.sample_shape(energy, st, 2) == (2, 3, 6, 16, 16)
    assert VIDEO.sample_shape(energy, st, 2, size=24, frames=10) == (2, 3, 10, 24, 24)

    fc_s = experiment("video", ModelConfig(arch="fc_s_small", in_channels=1, image_size=16),
                      size=16, frames=6)
    energy = VIDEO.energy(fc_s.model)
    assert VIDEO.sample_shape(energy, fc_s, 2, frames=10) == (2, 1, 10, 16, 16)  # any length
    with pytest.raises(ValueError, match="tied to 16x16 inputs"):
        VIDEO.sample_shape(energy, fc_s, 2, size=24)


def test_the_models_activation_reaches_its_video_energy() -> None:
    model = ModelConfig(arch="st_small", in_channels=3, activation="leaky_relu",
                        layers=((4, (2, 3, 3), (1, 2, 2)), (2, 1, 1)), reference_sigma=0.3)
    assert any(isinstance(layer, torch.nn.LeakyReLU) for layer in VIDEO.energy(model).modules())
    assert VIDEO.energy(model).reference_sigma == 0.3


def test_the_models_settings_reach_its_voxel_energy() -> None:
    """Its reference sigma, and its activation: ReLU unless another is named."""
    model = ModelConfig(arch="desc32_small", image_size=8, layers=((2, 4, 2, 1),),
                        reference_sigma=0.3)
    energy = VOXELS.energy(model)
    assert energy.reference_sigma == 0.3
    activations = {type(layer) for layer in energy.modules()} & {torch.nn.ReLU,
                                                                  torch.nn.LeakyReLU}
    assert activations == {torch.nn.ReLU}
    leaky = VOXELS.energy(replace(model, activation="leaky_relu"))
    assert any(isinstance(layer, torch.nn.LeakyReLU) for layer in leaky.modules())


def test_voxel_sample_shape_is_the_models_grid() -> None:
    config = experiment("voxels", ModelConfig(arch="desc32_small", image_size=8,
                                              layers=((2, 4, 2, 1),)), size=8)
    energy = VOXELS.energy(config.model)
    assert VOXELS.sample_shape(energy, config, 3) == (3, 1, 8, 8, 8)
    for option, got in (({"size": 8}, "size=8, frames=None"),
                        ({"frames": 2}, "size=None, frames=2")):
        with pytest.raises(ValueError, match=f"do not apply to voxel models.*got {got}"):
            VOXELS.sample_shape(energy, config, 3, **option)


# --------------------------------------------------------------------------- previews


def test_image_previews(tmp_path: Path) -> None:
    images = torch.rand(70, 1, 8, 8) * 2 - 1
    files = IMAGE.preview(images, tmp_path / "images")
    assert files == [tmp_path / "images.png"]
    assert png_size(files[0]) == (82, 82)  # at most 64 images: 8 x 8 tiles of 8 + 2 padding
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        IMAGE.preview(torch.zeros(1, 1, 2, 8, 8), tmp_path / "clip")
    # The pyramid: one row per grid (up-sampled to the finest), one column per image.
    path = IMAGE.save_pyramid([torch.zeros(3, 1, 2, 2), torch.zeros(3, 1, 4, 4)],
                              tmp_path / "pyramid")
    assert path == tmp_path / "pyramid.png" and png_size(path) == (3 * 6 + 2, 2 * 6 + 2)


def test_video_previews(tmp_path: Path) -> None:
    clips = torch.rand(5, 3, 4, 8, 8) * 2 - 1
    files = VIDEO.save_samples(clips, tmp_path / "clips")
    assert files == [tmp_path / "clips.gif", tmp_path / "clips.mp4", tmp_path / "clips.npy"]
    assert all(f.stat().st_size > 0 for f in files)
    # Every clip, not only 4, in grey levels 0-255 as the data files hold them.
    np.testing.assert_array_equal(np.load(files[2]), ((clips + 1) * 127.5).numpy())
    width = 4 * 8 + 3 * COMPARISON_GAP  # at most 4 clips side by side
    with Image.open(files[0]) as gif:
        assert gif.size == (width + width % 2, 8) and gif.n_frames == 4
    assert VIDEO.preview(clips, tmp_path / "one") == [tmp_path / "one.gif"]
    # A high-speed clip's preview: the MP4 at its rate, the GIF at the most a GIF can say.
    import av

    gif, mp4 = VIDEO.preview(clips, tmp_path / "fast", formats=(".gif", ".mp4"), fps=200)
    with Image.open(gif) as frames:
        assert frames.info["duration"] == 10
    with av.open(str(mp4)) as container:
        assert container.streams.video[0].average_rate == 200
    # A time-lapse's (data.fps 0.001, a frame every 1000 s): the GIF at the slowest a GIF can
    # say, 655.35 s a frame, where it was refused and training stopped at its first preview.
    gif, mp4 = VIDEO.preview(clips, tmp_path / "slow", formats=(".gif", ".mp4"), fps=0.001)
    with Image.open(gif) as frames:
        assert frames.info["duration"] == 655350
    with av.open(str(mp4)) as container:
        assert container.streams.video[0].average_rate == Fraction(1, 1000)
    with pytest.raises(ValueError, match=r"\(N, C, T, H, W\)"):
        VIDEO.preview(clips[:, :, 0], tmp_path / "images")


def test_voxel_previews_are_renders_and_arrays(tmp_path: Path) -> None:
    files = VOXELS.preview(boxes_and_balls(3, 8), tmp_path / "shapes")
    assert {f.name for f in files} == {"shapes.png", "shapes.npy"}
    assert np.load(tmp_path / "shapes.npy").shape == (3, 8, 8, 8)
    for batch in (torch.zeros(1, 1, 4, 8, 8), torch.zeros(1, 1, 8, 8)):  # not cubic; 2-D
        with pytest.raises(ValueError, match=r"\(N, 1, D, D, D\)"):
            VOXELS.preview(batch, tmp_path / "clip")


def test_voxel_previews_draw_and_keep_the_first_16_shapes_and_samples_keep_all(
        tmp_path: Path, monkeypatch) -> None:
    drawn = captured(monkeypatch, "stgconv.modalities.voxel", "render_voxels")
    shapes = boxes_and_balls(17, 4)
    VOXELS.preview(shapes, tmp_path / "preview")
    assert len(drawn["items"]) == 16
    assert np.array_equal(np.load(tmp_path / "preview.npy"), shapes[:16, 0].numpy())
    VOXELS.save_samples(shapes, tmp_path / "samples")
    assert len(drawn["items"]) == 16  # the picture of samples shows 16, the array holds all
    assert np.load(tmp_path / "samples.npy").shape == (17, 4, 4, 4)


def test_voxel_samples_keep_every_shape_and_grids_are_arrays(tmp_path: Path) -> None:
    shapes = boxes_and_balls(17, 4)
    VOXELS.save_samples(shapes, tmp_path / "samples")
    assert np.array_equal(np.load(tmp_path / "samples.npy"), shapes[:, 0].numpy())  # not only 16
    assert png_size(tmp_path / "samples.png")[0] > 0
    assert VOXELS.save_grid(shapes, tmp_path / "grid") == [tmp_path / "grid.npy"]
    assert np.load(tmp_path / "grid.npy").shape == (17, 4, 4, 4)  # every shape of the grid
    assert not (tmp_path / "grid.png").exists()  # a coarse grid is drawn in the pyramid only


def test_a_failed_voxel_render_leaves_no_partial_samples_array(tmp_path: Path,
                                                               monkeypatch) -> None:
    """The render comes first: when it fails (open3d, an interrupt), no samples.npy of the
    first 16 shapes is left where programs expect all of them."""
    def fail(*args, **kwargs):
        raise RuntimeError("render failed")

    monkeypatch.setattr("stgconv.modalities.voxel.render_voxels", fail)
    with pytest.raises(RuntimeError, match="render failed"):
        VOXELS.save_samples(boxes_and_balls(17, 4), tmp_path / "samples")
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- units


def test_a_run_on_a_cache_of_y_up_meshes_records_their_up_axis(tmp_path: Path) -> None:
    """A model trained on a cache built with up_axis 1 recorded data.up_axis 2, so a y-up mesh
    given to it later (super-resolve, the voxel evals) was voxelized lying on its side."""
    from stgconv.data.voxel import build_modelnet_cache

    post = write_y_up_post(tmp_path / "tree" / "chair" / "train" / "chair_0001.obj")
    cache = build_modelnet_cache(post.parents[2], tmp_path / "y_up.h5", resolution=8, up_axis=1)
    config = load_config(None, ["data.kind=voxels", "model.arch=desc32_small", "data.size=8",
                                f"data.path={cache}"])
    shapes = VOXELS.load(config.data)
    assert VOXELS.fit_units(config, shapes).data.up_axis == 1
    np.savez(tmp_path / "grids.npz", X=shapes[:, 0].numpy().astype(np.uint8))
    on_grids = replace(config, data=replace(config.data, path=str(tmp_path / "grids.npz")))
    assert VOXELS.fit_units(on_grids, shapes) is on_grids


def test_images_and_videos_see_the_data_as_it_is() -> None:
    x = torch.rand(2, 3, 4, 4) * 2 - 1
    for modality, kind in ((IMAGE, "texture"), (VIDEO, "video")):
        config = of_kind(kind)
        assert modality.offset(config) == 0.0
        assert torch.equal(modality.to_data(x, config), x)
        assert modality.fit_units(config, x) is config
        # Samples past the data's range (a MALA chain has no clamp; a multi-grid projection
        # follows the clamp) come back in it: synthesized.npy is "in the data's range".
        assert torch.equal(modality.to_data(torch.tensor([-4.0, 0.5, 1.06]), config),
                           torch.tensor([-1.0, 0.5, 1.0]))


def test_training_mean_is_resolved_from_the_data() -> None:
    config = load_config(SR_CONFIG)
    assert config.data.mean == "auto"
    with pytest.raises(ValueError, match="data.mean='auto' is resolved from the training shapes "
                                         "when training starts; this config was never trained"):
        VOXELS.offset(config)
    shapes = torch.zeros(2, 1, 4, 4, 4)
    shapes[0, :, :2] = 1.0  # one scalar over every voxel of every shape: 0.25 (the first's 0.5)
    resolved = VOXELS.fit_units(config, shapes)
    assert VOXELS.offset(resolved) == 0.25 and resolved.data.mean == 0.25
    assert VOXELS.fit_units(resolved, torch.ones(2, 1, 4, 4, 4)) is resolved  # already a number
    with pytest.raises(ValueError, match="data.mean"):
        load_config(SR_CONFIG, ["data.mean=1.5"])
    assert VOXELS.offset(load_config(SR_CONFIG, ["data.mean=null"])) == 0.0


def test_voxel_data_keeps_the_categories_and_count_asked_for_padded_to_the_size(
        tmp_path: Path) -> None:
    folder = tmp_path / "shapes"
    folder.mkdir()
    for i, name in enumerate(["bed_1", "chair_1", "chair_2", "chair_3"]):
        np.save(folder / f"{name}.npy", np.full((2, 2, 2), i / 4, np.float32))
    data = DataConfig(kind="voxels", path=str(folder), size=4, categories=("chair",),
                      max_images=2)
    with pytest.warns(UserWarning, match=r"are 2\^3, padded .* set data\.size: 2 to train"):
        shapes = VOXELS.load(data)
    assert shapes.shape == (2, 1, 4, 4, 4)
    assert shapes[:, 0, 1:3, 1:3, 1:3].flatten(1).max(1).values.tolist() == [0.25, 0.5]
    assert shapes[:, :, 0].sum() == 0  # the border of the padding


def test_voxel_units_round_trip() -> None:
    config = load_config(SR_CONFIG, ["data.mean=0.25"])
    occupancy = boxes_and_balls(2, 8) * 0.9 + 0.05
    model_units = occupancy - VOXELS.offset(config)
    assert model_units.min() < 0  # the model's zero is the mean shape density, not "empty"
    torch.testing.assert_close(VOXELS.to_data(model_units, config), occupancy)
    # A chain that overshoots comes back as occupancy in [0, 1].
    assert torch.equal(VOXELS.to_data(torch.tensor([-1.0, 0.0, 2.0]), config),
                       torch.tensor([0.0, 0.25, 1.0]))


def test_training_meshes_are_voxelized_with_the_configs_up_axis(tmp_path: Path) -> None:
    """data.up_axis reaches the meshes a run trains on: a y-up post (ShapeNet, most .obj files)
    stood along array axis 2 with 1, where it was always read z-up, lying on its side; a voxel
    file, read as stored, refuses a value other than 2, naming the key."""
    write_y_up_post(tmp_path / "meshes" / "post.obj")
    voxels = ["data.kind=voxels", "model.arch=desc32_small", "data.size=8"]
    for axis, shape in ((2, (2, 6, 2)), (1, (2, 2, 6))):
        config = load_config(None, [*voxels, f"data.path={tmp_path / 'meshes'}",
                                    f"data.up_axis={axis}"])
        assert spans(VOXELS.load(config.data)[0, 0] > 0) == shape
    np.save(tmp_path / "grids.npy", np.zeros((1, 8, 8, 8), np.uint8))
    config = load_config(None, [*voxels, f"data.path={tmp_path / 'grids.npy'}", "data.up_axis=1"])
    with pytest.raises(ValueError, match=r"^up_axis=1 \(data\.up_axis, --up-axis\) turns meshes "
                                         r"as they are voxelized, but \S*grids\.npy holds voxel"):
        VOXELS.load(config.data)


# --------------------------------------------------------------------------- real data


@pytest.mark.shared_data("voxel/modelnet10_30_train.npz")  # the config's data.path
def test_real_chairs_load_padded(shared_data: Path) -> None:
    config = load_config(ROOT / "configs" / "voxel" / "recovery_chairs_quick.yaml",
                         ["data.max_images=3"])
    chairs = VOXELS.load(config.data)
    assert chairs.shape == (3, 1, 32, 32, 32)
    assert chairs[..., 0, :, :].sum() == 0  # the 30^3 grids padded by one empty voxel


def test_voxel_samples_log_their_surface_as_a_tensorboard_mesh(tmp_path: Path) -> None:
    from tensorboard.util.tensor_util import make_ndarray
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    grids = torch.zeros(2, 1, 8, 8, 8)
    grids[0, 0, :4, 2:6, 2:6] = 1  # a box against the grid's border
    VOXELS.log_samples(writer, "samples", grids, 3)
    writer.close()
    events = read_events(tmp_path)
    tensors = events.Tags()["tensors"]
    assert any(t.startswith("samples") and "VERTEX" in t for t in tensors), tensors
    assert events.Scalars("samples/volume_fraction")[0].step == 3
    face_tag = next(tag for tag in tensors if tag.endswith("FACE"))
    faces = make_ndarray(events.Tensors(face_tag)[0].tensor_proto).astype(np.int64)
    edges = np.sort(faces.reshape(-1, 3)[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, uses = np.unique(edges, axis=0, return_counts=True)
    assert len(uses) and (uses == 2).all()  # closed: every edge joins two faces, at the border too


def test_video_samples_log_as_a_tensorboard_video(tmp_path: Path) -> None:
    """Up to 4 clips side by side as an animated GIF (TensorBoard's video format), every frame
    in it, and the first clip's frames as images."""
    from torch.utils.tensorboard import SummaryWriter

    clips = torch.rand(5, 3, 6, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    writer = SummaryWriter(str(tmp_path))
    VIDEO.log_samples(writer, "samples", clips, 2)
    writer.close()
    events = read_events(tmp_path)
    (video,) = events.Images("samples")
    assert video.step == 2 and video.encoded_image_string[:6] == b"GIF89a"
    with Image.open(io.BytesIO(video.encoded_image_string)) as gif:
        assert gif.n_frames == 6
        assert gif.size == (video.width, video.height) == (4 * 8 + 3 * COMPARISON_GAP, 8)
    (frames,) = events.Images("samples/frames")
    assert frames.step == 2


@pytest.mark.parametrize(("fps", "frame_ms"), [(None, 40), (50, 20), (2.5, 400), (200, 10)])
def test_a_tensorboard_video_plays_at_the_previews_rate(tmp_path: Path, fps, frame_ms) -> None:
    """The clips play at the data's rate, as the run folder's GIFs: at 25 whatever it was, a
    clip of data.fps 50 played at half speed in TensorBoard. A rate between whole numbers is
    kept (2.5: 400 ms, not 2's 500); one past a GIF's fastest plays at it (200: 10 ms), as the
    preview's GIF, where unclamped it was refused."""
    from torch.utils.tensorboard import SummaryWriter

    clips = torch.zeros(1, 1, 3, 4, 4)
    clips[:, :, 1] = 1  # frames that differ, so the GIF keeps each
    writer = SummaryWriter(str(tmp_path))
    VIDEO.log_samples(writer, "samples", clips, 0, fps=fps)
    writer.close()
    (video,) = read_events(tmp_path).Images("samples")
    with Image.open(io.BytesIO(video.encoded_image_string)) as gif:
        assert gif.n_frames == 3 and gif.info["duration"] == frame_ms


def test_grey_training_clips_are_luma_as_grey_images_are(tmp_path: Path) -> None:
    """data.channels 1 reads a colour clip as Pillow makes an image grey (ITU-R 601 luma), not
    as its red channel (what it once was: a red frame and a green one came out far apart)."""
    frames = tmp_path / "frames"
    frames.mkdir()
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    for index, colour in enumerate(colours):
        Image.new("RGB", (8, 8), colour).save(frames / f"{index}.png")
    data = DataConfig(path=str(frames), kind="video", channels=1, frames=3, size=8)
    clips = VIDEO.load(data)
    assert clips.shape == (1, 1, 3, 8, 8)
    for index, colour in enumerate(colours):
        grey = np.asarray(Image.new("RGB", (8, 8), colour).convert("L"), dtype=np.float64)
        expected = torch.from_numpy(grey / 127.5 - 1.0).float()
        torch.testing.assert_close(clips[0, 0, index], expected, atol=1e-6, rtol=0)


def test_voxel_pyramid_draws_a_coarse_grid_at_half_its_own_maximum(monkeypatch,
                                                                   tmp_path: Path) -> None:
    """A coarse grid's block means rarely reach 0.5: the pyramid rescales each coarse grid so
    the renderer's 0.5 level sits at half that grid's maximum (and says so in its title); the
    finest grid is drawn as it is."""

    import stgconv.modalities.voxel as voxel

    drawn = {}

    def fake_render(panels, path, *, columns, titles):
        drawn.update(panels=panels, titles=titles, columns=columns)
        return Path(path)

    monkeypatch.setattr(voxel, "render_voxels", fake_render)
    coarse = torch.full((1, 1, 2, 2, 2), 0.1)
    coarse[0, 0, 0, 0, 0] = 0.4
    fine = torch.zeros(1, 1, 4, 4, 4)
    fine[0, 0, 1, 1, 1] = 0.8
    voxel.VOXELS.save_pyramid([coarse, fine], tmp_path / "pyramid")
    assert drawn["columns"] == 2 and drawn["titles"] == ["2x2x2 @0.20", "4x4x4"]
    assert drawn["panels"][0].max().item() == pytest.approx(1.0)
    torch.testing.assert_close(drawn["panels"][1], fine[0, 0])


def colour_frames(folder: Path, colours: list[tuple[int, int, int]], size: int = 8) -> Path:
    """One ``size`` x ``size`` PNG of each colour in ``folder``, named 0.png, 1.png, ..."""
    folder.mkdir()
    for index, colour in enumerate(colours):
        Image.new("RGB", (size, size), colour).save(folder / f"{index}.png")
    return folder


def logged(log_dir: Path, log):
    """Call ``log(writer)`` on a TensorBoard writer of ``log_dir``; the events read back."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(log_dir))
    log(writer)
    writer.close()
    return read_events(log_dir)


def logged_greys(log_dir: Path, log, tag: str) -> list[np.ndarray]:
    """The images that ``log(writer)`` writes under ``tag``, as grey levels 0-255."""
    return [np.asarray(Image.open(io.BytesIO(e.encoded_image_string)).convert("L"), dtype=int)
            for e in logged(log_dir, log).Images(tag)]


RAMP = torch.tensor([-1.0, 0.0, 1.0])  # black, mid-grey, white


GREYS = [(10, 10, 10), (120, 120, 120), (240, 240, 240)]


def test_image_samples_array_keeps_every_image_beyond_sixteen(tmp_path: Path) -> None:
    images = torch.rand(20, 1, 4, 4) * 2 - 1
    IMAGE.save_samples(images, tmp_path / "s")
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), ((images + 1) * 127.5).numpy())


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_save_array_writes_float32_whatever_the_batchs_dtype(tmp_path: Path, dtype) -> None:
    """The .npy is float32, as documented, for a float64 or bfloat16 batch too (a model run in
    either): grey levels 0-255 of images and videos, and voxel occupancies as they are, in
    between values included (no rounding to empty or full)."""
    pixels = torch.tensor([-1.0, -0.5, 0.25, 1.0]).reshape(1, 1, 2, 2).to(dtype)
    for modality, batch in ((IMAGE, pixels), (VIDEO, pixels[:, :, None])):
        saved = np.load(modality.save_array(batch, tmp_path / modality.name))
        assert saved.dtype == np.float32 and saved.shape == tuple(batch.shape)
        np.testing.assert_array_equal(saved.ravel(), [0.0, 63.75, 159.375, 255.0])
    occupancy = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0, 0.125, 0.375, 0.625]).to(dtype)
    saved = np.load(VOXELS.save_array(occupancy.reshape(1, 1, 2, 2, 2), tmp_path / "shapes"))
    assert saved.dtype == np.float32 and saved.shape == (1, 2, 2, 2)
    np.testing.assert_array_equal(saved.ravel(), occupancy.float().numpy())


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_save_array_refuses_values_no_program_could_tell_from_results(tmp_path: Path,
                                                                        bad: float) -> None:
    """A coarse voxel grid's .npy (save_grid writes no preview to check it) kept NaN without a
    word; every modality's array refuses it, naming the file, and writes nothing."""
    pixels = torch.zeros(1, 1, 2, 2)
    pixels[0, 0, 0, 0] = bad
    occupancy = torch.zeros(1, 1, 2, 2, 2)
    occupancy[0, 0, 0, 0, 0] = bad
    for modality, batch in ((IMAGE, pixels), (VIDEO, pixels[:, :, None]), (VOXELS, occupancy)):
        with pytest.raises(ValueError, match=f"cannot write {tmp_path / modality.name}.npy"):
            modality.save_array(batch, tmp_path / modality.name)
    with pytest.raises(ValueError, match="NaN or infinite"):
        VOXELS.save_grid(occupancy, tmp_path / "grid")
    assert list(tmp_path.iterdir()) == []


def test_an_image_folder_loads_at_most_max_images(tmp_path: Path) -> None:
    folder = colour_frames(tmp_path / "objects", GREYS)
    images = IMAGE.load(DataConfig(path=str(folder), kind="objects", channels=1, size=8,
                                   max_images=2))
    assert images.shape == (2, 1, 8, 8)


def test_logged_images_map_minus_one_to_one_onto_black_to_white(tmp_path: Path) -> None:
    batch = RAMP.reshape(1, 1, 1, 3)
    (image,) = logged_greys(tmp_path, lambda w: IMAGE.log_samples(w, "x", batch, 0), "x")
    np.testing.assert_allclose(image[0], [0, 128, 255], atol=1)


def test_logged_video_frames_map_minus_one_to_one_onto_black_to_white(tmp_path: Path) -> None:
    """The first clip's frames; the second, all black, is not the one shown."""
    ramp = RAMP.reshape(1, 1, 3, 1, 1).expand(1, 1, 3, 2, 2)  # frame t all RAMP[t]
    clips = torch.cat([ramp, torch.full_like(ramp, -1.0)])
    (frames,) = logged_greys(tmp_path, lambda w: VIDEO.log_samples(w, "v", clips, 0),
                             "v/frames")
    # One picture of the 3 frames side by side: black, mid-grey and white ones.
    assert (np.abs(frames - 128) <= 1).any() and frames.max() == 255 and frames.min() == 0


def test_logged_images_and_frames_hold_the_grey_levels_of_the_run_folders_files(
        tmp_path: Path) -> None:
    """round((x + 1) * 127.5), as samples_*.png and the GIFs hold them: TensorBoard truncated
    the [0, 1] floats it was given, -0.6 logged as 50 beside the PNG's 51."""
    pixels = torch.tensor([-1.0, -0.6, -0.2, 0.0, 0.2, 0.6, 0.9, 1.0])
    expected = [0, 51, 102, 128, 153, 204, 242, 255]
    (image,) = logged_greys(tmp_path / "image", lambda w: IMAGE.log_samples(
        w, "x", pixels.reshape(1, 1, 1, 8), 0), "x")
    png = np.asarray(Image.open(IMAGE.preview(pixels.reshape(1, 1, 1, 8), tmp_path / "s")[0]))
    np.testing.assert_array_equal(image[0], expected)
    np.testing.assert_array_equal(png[0], expected)
    clips = pixels.reshape(1, 1, 8, 1, 1)  # frame t all pixels[t]
    (frames,) = logged_greys(tmp_path / "video", lambda w: VIDEO.log_samples(w, "v", clips, 0),
                             "v/frames")
    np.testing.assert_array_equal(frames[0], expected)


def test_logged_images_and_rows_of_images_show_the_first_64(tmp_path: Path) -> None:
    """A grid of 8 columns of the 1x1 images; a row per batch, 2 pixels between images."""
    batch = torch.zeros(65, 1, 1, 1)
    (image,) = logged_greys(tmp_path, lambda w: IMAGE.log_samples(w, "x", batch, 0), "x")
    assert image.shape == (8, 8)
    path = IMAGE.save_rows([batch, batch], tmp_path / "rows")
    assert png_size(path) == (64 * 3 + 2, 2 * 3 + 2)


def test_image_pyramid_shows_only_the_first_8_images(tmp_path: Path) -> None:
    path = IMAGE.save_pyramid([torch.zeros(10, 1, 2, 2), torch.zeros(10, 1, 4, 4)],
                              tmp_path / "pyramid")
    assert png_size(path) == (8 * 6 + 2, 2 * 6 + 2)
    # Every grid has its row, however many the pyramid has.
    path = IMAGE.save_pyramid([torch.zeros(2, 1, 1, 1)] * 9, tmp_path / "nine")
    assert png_size(path) == (2 * 3 + 2, 9 * 3 + 2)


def test_a_video_folder_loads_at_most_max_images_clips(tmp_path: Path) -> None:
    from stgconv.io.video import save_video

    (tmp_path / "clips").mkdir()
    for index in range(3):
        save_video(torch.zeros(1, 2, 8, 8), tmp_path / "clips" / f"{index}.mkv")
    clips = VIDEO.load(DataConfig(path=str(tmp_path / "clips"), kind="video", frames=2, size=8,
                                  max_images=2))
    assert clips.shape == (2, 1, 2, 8, 8)


def test_video_frames_are_images_frame_by_frame(tmp_path: Path) -> None:
    """Frame t of the clip is image t, rows kept as rows: each frame a ramp along its width."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(3):
        ramp = np.tile(np.arange(8, dtype=np.uint8) * 30 + t, (8, 1))  # level 30 x + t at (y, x)
        Image.fromarray(ramp, "L").save(frames / f"{t}.png")
    images = IMAGE.load(DataConfig(path=str(frames), kind="video_frames", frames=3, size=8,
                                   channels=1))
    clips = VIDEO.load(DataConfig(path=str(frames), kind="video", frames=3, size=8, channels=1))
    assert images.shape == (3, 1, 8, 8) and torch.equal(images, clips[0].transpose(0, 1))
    levels = torch.arange(8.0) * 30
    for t in range(3):
        torch.testing.assert_close(images[t, 0], ((levels + t) / 127.5 - 1).expand(8, 8),
                                   atol=1e-5, rtol=0)


def test_frames_of_clips_at_a_rate_from_a_folder_of_images_say_how_to_read_the_images(
        tmp_path: Path) -> None:
    """A config for frames of clips at data.fps (multigrid_animals_quick) pointed at a folder of
    images: the settings that read them as images are named, not "fps=2.0 needs a video
    file"."""
    frames = colour_frames(tmp_path / "frames", GREYS)
    with pytest.raises(ValueError, match=re.escape(
            f"data.kind 'video_frames' with data.fps 2.0 takes frames from video files, and "
            f"{frames} is a folder of images: to train on the images themselves, set "
            "data.kind=objects, data.frames=16 and data.fps=null")):
        IMAGE.load(DataConfig(path=str(frames), kind="video_frames", frames=2, size=8, fps=2.0))


@pytest.mark.parametrize("name", ["pictures.npz", "photo.png", "photo.jpg"])
def test_frames_of_clips_from_pictures_say_which_kind_reads_them(tmp_path: Path,
                                                                 name: str) -> None:
    """A config for frames of clips (coop_animals_quick) pointed at a user's .npz of images
    or one photograph: the kind that reads it is named, not PyAV's "Invalid data found when
    processing input" or "has 1 frames"."""
    path = tmp_path / name
    if name.endswith(".npz"):
        np.savez(path, x_train=np.zeros((4, 8, 8), np.uint8))
        reads = "data.kind=objects"
    else:
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
        reads = "data.kind=texture"
    with pytest.raises(ValueError, match=re.escape(
            f"data.kind 'video_frames' takes frames from video clips, and {path} is ")) as err:
        IMAGE.load(DataConfig(path=str(path), kind="video_frames", frames=2, size=8, fps=2.0))
    assert reads in str(err.value) and "data.frames=16 and data.fps=null" in str(err.value)


def test_video_clips_start_at_start_frame(tmp_path: Path) -> None:
    frames = colour_frames(tmp_path / "frames", GREYS)
    clips = VIDEO.load(DataConfig(path=str(frames), kind="video", frames=2, size=8,
                                  start_frame=1))
    torch.testing.assert_close(clips[0, 0, 0], torch.full((8, 8), GREYS[1][0] / 127.5 - 1.0),
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("setting, asked", [
    ({"frames": 4}, "asked for n_frames=4 from start_frame=0"),
    ({"frames": 2, "start_frame": 3}, "start_frame=3 but"),
])
def test_a_clip_without_the_frames_the_config_asks_for_names_its_keys(
        tmp_path: Path, setting: dict[str, int], asked: str) -> None:
    """The reader named its own parameters only (n_frames=4), where the config's key is
    data.frames: a user setting data.n_frames was told it is no key."""
    frames = colour_frames(tmp_path / "frames", GREYS)  # 3 frames
    with pytest.raises(ValueError) as err:
        VIDEO.load(DataConfig(path=str(frames), kind="video", size=8, **setting))
    assert str(err.value).startswith(asked), err.value
    assert str(err.value).endswith("(n_frames, start_frame and fps are the config's "
                                   "data.frames, data.start_frame and data.fps)"), err.value


def test_video_pyramid_shows_the_first_clip_at_every_grid(tmp_path: Path, monkeypatch) -> None:
    drawn = captured(monkeypatch, "stgconv.modalities.video", "save_comparison")
    coarse = torch.stack([torch.full((1, 2, 2, 2), -1.0), torch.full((1, 2, 2, 2), 1.0)])
    fine = torch.stack([torch.full((1, 2, 4, 4), -0.5), torch.full((1, 2, 4, 4), 0.5)])
    VIDEO.save_pyramid([coarse, fine], tmp_path / "pyramid")
    assert drawn["labels"] == ["2x2x2", "2x4x4"]
    assert [clip.shape for clip in drawn["items"]] == [(1, 2, 4, 4)] * 2
    assert drawn["items"][0].max() == -1.0 and drawn["items"][1].max() == -0.5


def test_voxel_pyramid_renders_at_most_four_shapes(tmp_path: Path, monkeypatch) -> None:
    drawn = captured(monkeypatch, "stgconv.modalities.voxel", "render_voxels")
    VOXELS.save_pyramid([torch.rand(6, 1, 2, 2, 2), torch.rand(6, 1, 4, 4, 4)],
                        tmp_path / "pyramid")
    assert drawn["columns"] == 2 and len(drawn["items"]) == 4 * 2


def test_an_empty_coarse_voxel_grid_is_drawn_empty(tmp_path: Path, monkeypatch) -> None:
    """A coarse grid of no occupancy at all (a chain that emptied) has no maximum to scale to:
    drawn as it is, not a division by zero."""
    drawn = captured(monkeypatch, "stgconv.modalities.voxel", "render_voxels")
    VOXELS.save_pyramid([torch.zeros(1, 1, 2, 2, 2), torch.zeros(1, 1, 4, 4, 4)],
                        tmp_path / "pyramid")
    assert drawn["titles"] == ["2x2x2 @0.00", "4x4x4"]
    assert [panel.abs().max().item() for panel in drawn["items"]] == [0.0, 0.0]


def test_logged_volume_fraction_counts_voxels_at_half_occupancy_or_more(tmp_path: Path) -> None:
    grids = torch.full((2, 1, 4, 4, 4), 0.3)
    grids[:, :, :2] = 0.5  # half of every grid at 0.5 (counted), the other half at 0.3
    events = logged(tmp_path, lambda w: VOXELS.log_samples(w, "s", grids, 1))
    assert events.Scalars("s/volume_fraction")[0].value == pytest.approx(0.5)


def test_an_empty_voxel_sample_logs_no_mesh(tmp_path: Path) -> None:
    events = logged(tmp_path, lambda w: VOXELS.log_samples(w, "s", torch.zeros(1, 1, 4, 4, 4), 1))
    assert events.Tags()["tensors"] == []


def test_a_clip_file_without_the_frames_the_config_asks_for_names_its_keys(
        tmp_path: Path) -> None:
    """As for a frame folder: a start past a video file's last frame is the config's
    data.start_frame, and the error stays a TooFewFramesError, the reader's own error its
    cause."""
    from stgconv.io.video import TooFewFramesError, save_video

    path = save_video(torch.zeros(3, 3, 8, 8), tmp_path / "clip.mkv")
    with pytest.raises(TooFewFramesError) as err:
        VIDEO.load(DataConfig(path=str(path), kind="video", frames=2, size=8, start_frame=5))
    assert str(err.value).startswith(f"start_frame=5 but {path} has only 3 frames"), err.value
    assert str(err.value).endswith("(n_frames, start_frame and fps are the config's "
                                   "data.frames, data.start_frame and data.fps)"), err.value
    assert isinstance(err.value.__cause__, TooFewFramesError)


def test_other_clip_errors_are_not_told_of_the_frame_keys(tmp_path: Path) -> None:
    """Only a clip without the frames asked is about data.frames / data.start_frame: a frame
    folder given a frame rate is not."""
    frames = colour_frames(tmp_path / "frames", GREYS)
    with pytest.raises(ValueError) as err:
        VIDEO.load(DataConfig(path=str(frames), kind="video", frames=2, size=8, fps=10.0))
    assert str(err.value) == (f"fps=10.0 needs a video file; the frame folder {frames} has no "
                              "frame rate"), err.value


def test_a_clip_cache_built_with_other_settings_names_the_config_keys(tmp_path: Path) -> None:
    """The cache's check named the reader's parameter (n_frames=3 (cache: 2)), where the config
    sets data.frames; the error stays a CacheSettingsError, the check's own error its cause."""
    from stgconv.data.video import CacheSettingsError, build_clip_cache

    cache = build_clip_cache(colour_frames(tmp_path / "frames", GREYS), tmp_path / "c.h5",
                             n_frames=2, size=8)
    with pytest.raises(CacheSettingsError) as err:
        VIDEO.load(DataConfig(path=str(cache), kind="video", frames=3, size=8, channels=3))
    assert "other settings: n_frames=3 (cache: 2);" in str(err.value), err.value
    assert str(err.value).endswith("(n_frames, size, start_frame, fps and channels are the "
                                   "config's data.frames, data.size, data.start_frame, data.fps "
                                   "and data.channels)"), err.value
    assert isinstance(err.value.__cause__, CacheSettingsError)

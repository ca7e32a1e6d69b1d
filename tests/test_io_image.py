"""Image files: ``load_image`` / ``save_image_grid`` and the ``ImageFolder`` dataset, on small fake
files written to ``tmp_path`` (plus scikit-image's bundled photographs, which need no download)."""

from __future__ import annotations

import re
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, features

from stgconv.data.image import ImageFolder, load_training_images
from stgconv.io.image import (BUILTIN_IMAGES, load_image, luma, opaque, read_image,
                              save_image_grid, save_picture, to_tensor, to_unit)
from stgconv.io.video import load_video

STEP = 1 / 127.5  # one uint8 level in [-1, 1]


def write_png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def ramp(h: int = 12, w: int = 20, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (h, w, channels) if channels == 3 else (h, w)
    array = rng.integers(0, 256, size=shape, dtype=np.uint8)
    array.flat[0], array.flat[1] = 0, 255  # both ends of the range
    return array


def test_load_rgb_png_exact_values(tmp_path: Path) -> None:
    array = ramp(channels=3)
    x = load_image(write_png(tmp_path / "a.png", array), channels=3, crop_square=False)
    assert x.shape == (3, 12, 20)
    assert x.dtype == torch.float32
    assert x.min() == -1.0 and x.max() == 1.0
    expected = torch.from_numpy(array).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.equal(x, expected)


def test_load_grey_png_and_channel_conversion(tmp_path: Path) -> None:
    grey = write_png(tmp_path / "g.png", ramp(channels=1))
    rgb = write_png(tmp_path / "c.png", ramp(channels=3))
    assert load_image(grey, channels=1, crop_square=False).shape == (1, 12, 20)
    three = load_image(grey, channels=3, crop_square=False)
    assert three.shape == (3, 12, 20)
    assert torch.equal(three[0], three[1]) and torch.equal(three[1], three[2])
    one = load_image(rgb, channels=1, crop_square=False)
    assert one.shape == (1, 12, 20)
    assert -1 <= one.min() and one.max() <= 1


def test_16_bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    """A 16-bit PNG (Pillow mode "I;16", "I" before Pillow 11) reads as its 8-bit version;
    Pillow's own conversion clips it at 255, and nearly every pixel came out white."""
    levels = ramp(channels=1)
    deep = write_png(tmp_path / "deep.png", levels.astype(np.uint16) * 257)  # 255 -> 65535
    with Image.open(deep) as image:
        assert image.mode in ("I;16", "I")
    shallow = write_png(tmp_path / "shallow.png", levels)
    for channels in (1, 3):
        assert torch.equal(load_image(deep, channels=channels, crop_square=False),
                           load_image(shallow, channels=channels, crop_square=False))
    # Frame folders read through the same conversion.
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in ("a", "b"):
        write_png(frames / f"{name}.png", levels.astype(np.uint16) * 257)
    clip = load_video(frames, channels=1)
    assert torch.equal(clip[:, 0], load_image(shallow, channels=1, crop_square=False))


@pytest.mark.parametrize("mode, scale", [("I", 257), ("F", 1 / 255)])
def test_32_bit_integer_and_float_grey_are_scaled_not_clipped(tmp_path: Path, mode: str,
                                                              scale: float) -> None:
    """Older Pillow opens 16-bit PNGs as mode "I", and float TIFFs hold [0, 1]: both read as
    their 8-bit version (Pillow's conversion clips them: almost all white, or all black); a
    range that cannot be read so is refused, naming the file."""
    levels = ramp(channels=1)
    deep = tmp_path / "deep.tif"
    Image.fromarray(levels.astype(np.float64) * scale).convert(mode).save(deep)
    with Image.open(deep) as image:
        assert image.mode == mode
    shallow = write_png(tmp_path / "shallow.png", levels)
    torch.testing.assert_close(load_image(deep, channels=1, crop_square=False),
                               load_image(shallow, channels=1, crop_square=False),
                               atol=1e-6, rtol=0)
    wild = tmp_path / "wild.tif"
    Image.fromarray(levels.astype(np.float64) * scale * 2).convert(mode).save(wild)
    with pytest.raises(ValueError, match=f"cannot read image {wild}: its '{mode}' samples"):
        load_image(wild, channels=1)


def test_16_bit_grey_is_rounded_to_the_nearest_level(tmp_path: Path) -> None:
    # 100.78 grey levels (25900 / 257) read as 101, not cut to 100.
    path = write_png(tmp_path / "deep.png", np.full((2, 2), 257 * 100 + 200, np.uint16))
    assert (levels(load_image(path, channels=1)) == 101).all()


def test_negative_32_bit_integer_grey_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "signed.tif"
    Image.fromarray(np.array([[-5, 100], [0, 255]], np.int32)).save(path)
    with Image.open(path) as image:
        assert image.mode == "I"
    with pytest.raises(ValueError, match=r"samples run from -5\.0 to 255\.0, outside 0\.\.65535"):
        load_image(path, channels=1)


def test_float_grey_with_nan_is_refused_as_not_finite(tmp_path: Path) -> None:
    """A float TIFF of levels in [0, 1] with one NaN was refused as samples that "run from nan
    to nan, outside 0..1": its range was fine, and the NaN went unnamed."""
    levels = np.full((4, 4), 0.5, np.float32)
    levels[1, 2] = np.nan
    path = tmp_path / "gap.tif"
    Image.fromarray(levels).save(path)
    with pytest.raises(ValueError, match=re.escape(
            f"cannot read image {path}: 1 of its 16 'F' samples is NaN or infinite")):
        load_image(path, channels=1)


def test_photos_load_upright_as_their_exif_orientation_says(tmp_path: Path) -> None:
    """A phone stores a portrait photo sideways with EXIF orientation 6 (turn 90 degrees
    clockwise to view); it loads as every viewer shows it."""
    stored = np.zeros((40, 80), dtype=np.uint8)
    stored[:, :40] = 255  # white on the stored left: the viewed top
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "portrait.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    x = load_image(path, channels=1, crop_square=False)
    assert x.shape == (1, 80, 40)
    assert x[0, :35].mean() > 0.9 and x[0, 45:].mean() < -0.9


def test_crop_and_resize(tmp_path: Path) -> None:
    path = write_png(tmp_path / "a.png", ramp(channels=3))
    assert load_image(path, channels=3).shape == (3, 12, 12)  # centre square
    x = load_image(path, channels=3, size=8)
    assert x.shape == (3, 8, 8)
    assert -1 <= x.min() and x.max() <= 1
    assert load_image(path, channels=1, size=5, crop_square=False).shape == (1, 5, 5)


def test_bad_channels(tmp_path: Path) -> None:
    path = write_png(tmp_path / "a.png", ramp(channels=3))
    for channels in (2, 4):  # 4 (RGBA) too: read_image composites alpha away
        with pytest.raises(ValueError, match=f"channels must be 1 or 3, got {channels}"):
            load_image(path, channels=channels)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")


def test_garbage_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(b"this is not a png" * 10)
    with pytest.raises(ValueError, match=r"cannot read image .*x\.png"):
        load_image(path)


def test_truncated_png(tmp_path: Path) -> None:
    good = write_png(tmp_path / "good.png", ramp(h=64, w=64, channels=3))
    bad = tmp_path / "cut.png"
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"cut\.png"):
        load_image(bad)


def test_an_image_too_large_to_decode_is_named(tmp_path: Path, monkeypatch) -> None:
    """Pillow refuses images of more pixels than its guard allows (about 179 megapixels) by an
    error of its own, not an OSError; a lower guard stands in for a huge photo here."""
    path = write_png(tmp_path / "huge.png", ramp(h=64, w=64, channels=3))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ValueError, match=r"cannot read image .*huge\.png: it is too large"):
        load_image(path)


def test_builtin_brick() -> None:
    x = load_image("builtin:brick", channels=1, size=32)
    assert x.shape == (1, 32, 32)
    assert -1 <= x.min() and x.max() <= 1
    assert x.std() > 0.05  # a real photograph, not a constant


def test_unknown_builtin() -> None:
    with pytest.raises(ValueError, match=r"unknown builtin image 'bricks'.*brick"):
        load_image("builtin:bricks")
    assert "brick" in BUILTIN_IMAGES
    # scikit-image's other data (a photo that is not on the list, a folder's name) neither.
    for name in ("chelsea", "data_dir"):
        with pytest.raises(ValueError, match=f"unknown builtin image '{name}'"):
            load_image(f"builtin:{name}")


def test_save_single_image_round_trip(tmp_path: Path) -> None:
    """One image is written without grid padding, so it reads back to within one uint8 level."""
    x = torch.rand(1, 3, 10, 14, generator=torch.Generator().manual_seed(0)) * 2 - 1
    path = save_image_grid(x, tmp_path / "one.png")
    back = load_image(path, channels=3, crop_square=False)
    assert back.shape == (3, 10, 14)
    assert (back - x[0]).abs().max() <= STEP / 2 + 1e-6


def test_save_grid_layout_and_clamp(tmp_path: Path) -> None:
    x = torch.linspace(-3, 3, 5 * 8 * 8).reshape(5, 1, 8, 8)  # out of range: clamped, not wrapped
    path = save_image_grid(x, tmp_path / "sub" / "grid.png", nrow=3)
    assert path == tmp_path / "sub" / "grid.png"
    with Image.open(path) as image:
        assert image.format == "PNG"
        # 3 columns x 2 rows of 8x8 tiles with 2 px padding around each.
        assert image.size == (3 * 10 + 2, 2 * 10 + 2)
        array = np.asarray(image)
    assert array.min() == 0 and array.max() == 255
    assert array.ndim == 2  # grey images, a grey PNG (make_grid repeats them to RGB)
    assert (array[:2] == 255).all() and (array[:, :2] == 255).all()  # white padding
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # no temporary files left
    with Image.open(save_image_grid(x.expand(5, 3, 8, 8), tmp_path / "rgb.png")) as image:
        assert image.mode == "RGB"


@pytest.mark.parametrize("shape", [(3, 8, 8), (2, 2, 8, 8), (1, 1, 1, 8, 8)])
def test_save_wrong_shape_writes_nothing(tmp_path: Path, shape: tuple[int, ...]) -> None:
    path = tmp_path / "bad.png"
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 1 or 3, H, W\)"):
        save_image_grid(torch.zeros(shape), path)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_save_non_finite_images_writes_nothing(tmp_path: Path, bad: float) -> None:
    x = torch.zeros(2, 3, 8, 8)
    x[1, 0, 3, 3] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        save_image_grid(x, tmp_path / "grid.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("images, problem", [
    (torch.full((2, 1, 8, 8), 128, dtype=torch.uint8), r"floating point pixels in \[-1, 1\], "
     r"got torch.uint8 \(grey levels 0-255 convert with stgconv.io.image.from_levels\)"),
    (torch.ones(2, 1, 8, 8, dtype=torch.bool), r"floating point pixels in \[-1, 1\], got "
     "torch.bool"),
    (torch.zeros(0, 1, 8, 8), r"with B >= 1, got \(0, 1, 8, 8\)"),
], ids=["uint8", "bool", "batch0"])
def test_save_grid_refuses_grey_levels_and_no_images(tmp_path: Path, images: torch.Tensor,
                                                     problem: str) -> None:
    """Grey levels 0-255 were clamped to white without a word; no image at all failed inside
    torchvision (ZeroDivisionError)."""
    with pytest.raises(ValueError, match=problem):
        save_image_grid(images, tmp_path / "grid.png")
    assert list(tmp_path.iterdir()) == []


def make_folder(root: Path, n: int = 3) -> Path:
    root.mkdir()
    for i in range(n):
        write_png(root / f"img{i}.png", ramp(h=10 + i, w=14, channels=3, seed=i))
    (root / "notes.txt").write_text("not an image")
    return root


def test_image_folder(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    dataset = ImageFolder(root, size=8, channels=1)
    assert len(dataset) == 3
    assert [p.name for p in dataset.files] == ["img0.png", "img1.png", "img2.png"]
    item = dataset[1]
    assert item.shape == (1, 8, 8)
    assert -1 <= item.min() and item.max() <= 1
    assert repr(dataset) == f"ImageFolder(root={root}, size=8, channels=1, n=3)"


def test_image_folder_reads_as_frame_folders_do(tmp_path: Path) -> None:
    """Hidden files (macOS's ._img1.png) are skipped, and names in natural order, so that
    max_images keeps img1 and img2, not img1 and img10."""
    root = tmp_path / "imgs"
    root.mkdir()
    for name in ("img10", "img2", "img1"):
        write_png(root / f"{name}.png", ramp(seed=len(name)))
    (root / "._img1.png").write_bytes(b"AppleDouble metadata, not an image")
    dataset = ImageFolder(root, size=4, max_images=2)
    assert [p.name for p in dataset.files] == ["img1.png", "img2.png"]
    assert dataset[0].shape == (3, 4, 4)


def test_image_folder_options(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    dataset = ImageFolder(root, size=6, channels=3, max_images=2, transform=torch.neg)
    assert len(dataset) == 2
    plain = ImageFolder(root, size=6, channels=3)
    assert torch.equal(dataset[0], -plain[0])


def test_image_folder_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"no image files .* in .*empty$"):
        ImageFolder(empty, size=8)
    # One folder per class: the message names them, not only "no image files".
    (tmp_path / "classes").mkdir()
    for name in ("dog", "cat"):
        make_folder(tmp_path / "classes" / name, n=1)
    with pytest.raises(ValueError, match=r"in .*classes \(it holds the folders cat, dog; "
                                         r"folders inside are not read"):
        ImageFolder(tmp_path / "classes", size=8)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFolder(tmp_path / "nowhere", size=8)


def test_image_folder_names_the_folders_inside_that_it_does_not_read(tmp_path: Path) -> None:
    """A stray image beside one folder per class was the whole training set without a word;
    a zip's __MACOSX folder and hidden folders are no data, and say nothing."""
    root = make_folder(tmp_path / "imgs", n=2)
    for name in ("__MACOSX", ".git"):
        (root / name).mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(ImageFolder(root, size=4)) == 2
    make_folder(root / "cats", n=3)
    with pytest.warns(RuntimeWarning, match=r"imgs: the folders inside it \(cats\) are not "
                                            r"read, only the image files directly in it \(2\)$"):
        folder = ImageFolder(root, size=4)
    assert [p.name for p in folder.files] == ["img0.png", "img1.png"]


def test_image_folder_names_the_photo_formats_it_does_not_read(tmp_path: Path) -> None:
    """A phone's HEIC photos (or a camera's raw files) beside its JPEGs were left out without a
    word; a folder of them alone was "no image files" listing only the formats read."""
    root = make_folder(tmp_path / "photos", n=2)
    for name in ("c.HEIC", "e.dng", "notes.txt"):
        (root / name).write_bytes(b"")
    # A link to nothing among them is read no more than they are: the folder was refused.
    (root / "d.heic").symlink_to(tmp_path / "unmounted" / "d.heic")
    with pytest.warns(RuntimeWarning, match=r"photos: its \.dng/\.heic files are not read: "
                                            r"convert them to PNG or JPEG \(2 readable images "
                                            r"beside them\)$"):
        assert len(ImageFolder(root, size=4)) == 2
    for name in ("img0.png", "img1.png"):
        (root / name).unlink()
    with pytest.raises(ValueError, match=r"no image files \(.*\) in \S*photos; its \.dng/\.heic "
                                         r"files are not read: convert them to PNG or JPEG$"):
        ImageFolder(root, size=4)


def test_image_folder_of_arrays_says_how_arrays_are_read(tmp_path: Path) -> None:
    """Images saved one .npy a file were refused as "no image files" alone: the message now
    says that such arrays are read from one .npz given in the folder's place."""
    root = tmp_path / "arrays"
    root.mkdir()
    for name in ("a.npy", "b.NPZ"):
        (root / name).write_bytes(b"")
    with pytest.raises(ValueError, match=r"no image files \(.*\) in \S*arrays; its \.npy/\.npz "
                                         r"files are not read: images as arrays are read from "
                                         r"one \.npz file whose x_train holds them all "
                                         r"\(numpy\.savez\(path, x_train=images\)\), given in "
                                         r"the folder's place$"):
        ImageFolder(root, size=4)
    # Beside image files (a preview beside the data's .npz), they are named too: else the
    # preview alone was the training set, without a word.
    Image.new("L", (4, 4)).save(root / "preview.png")
    with pytest.warns(RuntimeWarning, match=r"arrays: its \.npy/\.npz files are not read: .*, "
                                            r"given in the folder's place; only the 1 image "
                                            r"files beside them are read$"):
        assert len(ImageFolder(root, size=4)) == 1


def test_load_training_images(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    objects = load_training_images(root, kind="objects", size=8, channels=3, max_images=2)
    assert objects.shape == (2, 3, 8, 8)
    texture = load_training_images("builtin:brick", kind="texture", size=16, channels=1)
    assert texture.shape == (1, 1, 16, 16)
    with pytest.raises(ValueError, match="data kind must be 'texture' or 'objects'"):
        load_training_images(root, kind="video", size=8, channels=3)


def test_saved_files_get_the_usual_permissions(tmp_path: Path) -> None:
    """Atomic writes go through a private temporary file; the result must not stay private."""
    reference = tmp_path / "plain.txt"
    reference.write_text("x")
    path = save_image_grid(torch.zeros(1, 1, 4, 4), tmp_path / "grid.png")
    assert path.stat().st_mode & 0o777 == reference.stat().st_mode & 0o777


def test_load_image_names_a_folder_as_a_folder(tmp_path) -> None:
    with pytest.raises(ValueError, match="is a folder, not an image file"):
        load_image(tmp_path)


def levels(x: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` in [-1, 1] as ``(H, W, C)`` grey levels 0-255."""
    return ((x + 1) * 127.5).round().to(torch.int64).permute(1, 2, 0).numpy()


def sprite() -> np.ndarray:
    """An opaque blue square, one half-transparent green pixel, on transparent pixels whose
    hidden colour is red (what an editor left there)."""
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[...] = (255, 0, 0, 0)
    rgba[4:12, 4:12] = (0, 0, 255, 255)
    rgba[0, 15] = (0, 200, 0, 128)
    return rgba


@pytest.mark.parametrize("suffix, options", [(".png", {}), (".webp", {"lossless": True}),
                                             (".tif", {})])
def test_transparent_pixels_are_composited_over_white(tmp_path: Path, suffix: str,
                                                      options: dict) -> None:
    path = tmp_path / f"sprite{suffix}"
    Image.fromarray(sprite(), "RGBA").save(path, **options)
    x = levels(load_image(path, crop_square=False))
    assert x[0, 0].tolist() == [255, 255, 255]  # not red (PNG, TIFF) or black (WebP zeroes it)
    assert x[8, 8].tolist() == [0, 0, 255]
    half = 128 / 255
    expected = np.array([0, 200, 0]) * half + 255 * (1 - half)
    assert np.abs(x[0, 15] - expected).max() <= 1
    grey = levels(load_image(path, channels=1, crop_square=False))
    assert grey[0, 0, 0] == 255


def test_grey_alpha_is_composited_and_stays_grey(tmp_path: Path) -> None:
    la = np.zeros((8, 8, 2), np.uint8)  # transparent black...
    la[2:6, 2:6] = (90, 255)  # ...around an opaque grey square
    path = tmp_path / "la.png"
    Image.fromarray(la, "LA").save(path)
    x = levels(load_image(path, channels=1, crop_square=False))[..., 0]
    assert x[0, 0] == 255 and x[3, 3] == 90
    assert read_image(path).mode == "L"  # not made RGB
    rgb = levels(load_image(path, channels=3, crop_square=False))
    assert rgb[3, 3].tolist() == [90, 90, 90]


def test_a_grey_colour_key_is_composited_and_stays_grey(tmp_path: Path) -> None:
    grey = np.zeros((8, 8), np.uint8)  # black, the transparent colour...
    grey[2:6, 2:6] = 90  # ...around a grey square
    path = tmp_path / "key.png"
    Image.fromarray(grey, "L").save(path, transparency=0)
    image = read_image(path)
    assert image.mode == "L"  # not made RGB
    assert np.asarray(image)[0, 0] == 255 and np.asarray(image)[3, 3] == 90


def test_a_16_bit_grey_colour_key_is_composited_as_an_8_bit_ones_is(tmp_path: Path) -> None:
    """A 16-bit grey PNG's colour key (its tRNS level) was dropped with the scaling to 8 bits:
    its transparent pixels read as their stored level (dark here), where the same picture in
    8 bits reads white there."""
    deep = np.full((8, 8), 1000, np.uint16)  # the transparent level...
    deep[2:6, 2:6] = 257 * 90  # ...around a grey square
    path = tmp_path / "key16.png"
    Image.fromarray(deep).save(path, transparency=1000)
    with Image.open(path) as stored:
        assert stored.mode == "I;16" and stored.info["transparency"] == 1000
    image = read_image(path)
    assert image.mode == "L"  # not made RGB
    assert np.asarray(image)[0, 0] == 255 and np.asarray(image)[3, 3] == 90


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_palette_transparency_is_composited(tmp_path: Path, suffix: str) -> None:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (2, 2, 6, 6))
    path = tmp_path / f"p{suffix}"
    image.save(path, transparency=0)  # index 0 (red) is transparent
    x = levels(load_image(path, crop_square=False))
    assert x[0, 0].tolist() == [255, 255, 255] and x[3, 3].tolist() == [0, 0, 255]


def test_a_palette_image_with_alpha_is_composited() -> None:
    """Mode PA (palette indices with alpha), which no file reader gives but a caller may
    hand opaque: its transparent pixel comes out white, not its palette colour."""
    image = Image.new("PA", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.putpixel((0, 0), (0, 0))  # red, transparent
    image.putpixel((1, 0), (1, 255))  # blue, opaque
    flat = opaque(image)
    assert flat.mode == "RGB" and np.asarray(flat).tolist() == [[[255, 255, 255], [0, 0, 255]]]


def test_opaque_images_are_untouched(tmp_path: Path) -> None:
    array = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    path = tmp_path / "a.png"
    Image.fromarray(array).save(path)
    assert levels(load_image(path, crop_square=False)).tolist() == array.tolist()


def test_image_folder_reads_jfif_and_netpbm_files(tmp_path: Path) -> None:
    """Windows saves a browser's JPEG as .jfif; AT&T/ORL and Yale faces are .pgm. Pillow reads
    them all; the folder silently left them out (or was refused when they were all it held)."""
    grey = np.full((8, 8), 77, np.uint8)
    Image.fromarray(grey).save(tmp_path / "a.png")
    Image.fromarray(grey).save(tmp_path / "b.jfif", format="JPEG", quality=100)
    Image.fromarray(grey).save(tmp_path / "c.pgm")
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "d.ppm")
    dataset = ImageFolder(tmp_path, size=8, channels=1)
    assert [p.name for p in dataset.files] == ["a.png", "b.jfif", "c.pgm", "d.ppm"]
    for i in range(len(dataset)):
        assert torch.allclose(dataset[i], torch.full((1, 8, 8), 77 / 127.5 - 1), atol=2 / 127.5)


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow reads no AVIF")
def test_image_folder_reads_avif_files(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8), (200, 40, 40)).save(tmp_path / "a.avif", quality=100)
    dataset = ImageFolder(tmp_path, size=8)
    assert [p.name for p in dataset.files] == ["a.avif"]
    assert levels(dataset[0])[4, 4, 0] > 180


def test_16_bit_white_is_zero_tiff_is_not_read_as_a_negative(tmp_path: Path) -> None:
    """TIFF 6.0, PhotometricInterpretation 0 (WhiteIsZero): 0 is white, 2**bits - 1 black.
    Pillow inverts 8-bit such files ("L;I") but opens 16-bit ones as plain "I;16"."""
    import tifffile

    deep = np.full((4, 4), 60000, np.uint16)  # nearly black: 65535 - 60000 = 5535
    deep[0, 0], deep[0, 1] = 0, 65535  # white, black
    tifffile.imwrite(tmp_path / "w16.tif", deep, photometric="miniswhite")
    tifffile.imwrite(tmp_path / "w8.tif", (deep >> 8).astype(np.uint8), photometric="miniswhite")
    for name in ("w16.tif", "w8.tif"):
        x = levels(load_image(tmp_path / name, channels=1, crop_square=False))[..., 0]
        assert x[0, 0] == 255 and x[0, 1] == 0 and abs(int(x[1, 1]) - 22) <= 1, (name, x[:2, :2])
    tifffile.imwrite(tmp_path / "wf.tif", np.full((4, 4), 0.25, np.float32),
                     photometric="miniswhite")
    with pytest.raises(ValueError, match="wf.tif.*white-is-zero"):
        load_image(tmp_path / "wf.tif")


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("dtype, channels", [(np.uint8, 1), (np.uint16, 1), (np.uint8, 4)])
def test_uncompressed_tiffs_turn_upright_as_their_orientation_says(
        tmp_path: Path, orientation: int, dtype: type, channels: int) -> None:
    """Pillow memory-maps an uncompressed one-strip grey / 16-bit / RGBA TIFF with the size
    already turned for Orientation 5-8, so its rows came out interleaved."""
    import tifffile

    stored = np.random.default_rng(orientation).integers(0, 255, (6, 9, channels))
    stored = stored.astype(dtype) * (257 if dtype == np.uint16 else 1)
    if channels == 4:
        stored[..., 3] = 255  # opaque
    path = tmp_path / "o.tif"
    tifffile.imwrite(path, stored[..., 0] if channels == 1 else stored,
                     photometric="minisblack" if channels == 1 else "rgb",
                     extrasamples=[2] if channels == 4 else None,
                     extratags=[(274, 3, 1, orientation, True)])
    turn = {1: lambda a: a, 2: np.fliplr, 3: lambda a: np.rot90(a, 2), 4: np.flipud,
            5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.rot90(a, -1),
            7: lambda a: np.rot90(np.swapaxes(a, 0, 1), 2), 8: lambda a: np.rot90(a, 1)}
    grey = stored[..., 0].astype(np.float64)  # red = grey: channels 3 of grey, red of RGBA
    expected = np.round(grey * (255 / 65535) if dtype == np.uint16 else grey)
    x = levels(load_image(path, channels=3, crop_square=False))[..., 0]
    assert x.tolist() == turn[orientation](expected).astype(int).tolist()


@pytest.mark.parametrize("suffix", [".gif", ".webp", ".png", ".tif"])
def test_animations_and_multi_page_files_are_refused_not_cut_to_their_first_frame(
        tmp_path: Path, suffix: str) -> None:
    """io.video refuses an animated GIF among frame images as 'its first frame only'; read as
    an image, it (or an animated WebP / APNG, or a multi-page TIFF) lost all but frame 1."""
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "blue")]
    path = tmp_path / f"anim{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.raises(ValueError, match=rf"anim\{suffix}: it holds 2 frames"):
        load_image(path)


def test_a_tiff_with_reduced_resolution_or_mask_pages_reads_its_full_image(tmp_path: Path
                                                                          ) -> None:
    import tifffile

    path = tmp_path / "overviews.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(np.full((8, 8), 200, np.uint8))
        tif.write(np.full((4, 4), 10, np.uint8), subfiletype=1)  # an overview, as GDAL writes
    x = levels(load_image(path, channels=1, crop_square=False))
    assert x.shape == (8, 8, 1) and (x == 200).all()
    # A transparency mask of the image (NewSubfileType bit 2, TIFF 6.0, 1-bit
    # PhotometricInterpretation 4, which Pillow does not decode) is no image either: it was a
    # bare SyntaxError ('unknown pixel mode') from Pillow's count of pages, a traceback.
    masked = tmp_path / "masked.tif"
    with tifffile.TiffWriter(masked) as tif:
        tif.write(np.full((8, 8), 200, np.uint8))
        tif.write(np.ones((8, 8), bool), subfiletype=4)
    x = levels(load_image(masked, channels=1, crop_square=False))
    assert x.shape == (8, 8, 1) and (x == 200).all()
    # A page of its own in such a layout is a page all the same: refused, named.
    pages = tmp_path / "pages.tif"
    with tifffile.TiffWriter(pages) as tif:
        tif.write(np.full((8, 8), 200, np.uint8))
        tif.write(np.ones((8, 8), bool), photometric=4)
    with pytest.raises(ValueError, match=r"pages\.tif: it holds 2 frames"):
        load_image(pages)


def test_a_jpeg_with_secondary_images_reads_its_primary_image(tmp_path: Path) -> None:
    """A JPEG that carries more images after its own (an MPO: an Ultra HDR photo's gain map,
    a 3D camera's second view, a camera's large preview) was refused as 'it holds 2 frames
    (an animation or a multi-page file)'; every viewer shows its first, primary, image."""
    primary, gain_map = Image.new("RGB", (8, 6), (200, 30, 30)), Image.new("RGB", (4, 3), "grey")
    path = tmp_path / "photo.jpg"
    primary.save(path, format="MPO", save_all=True, append_images=[gain_map], quality=100)
    with Image.open(path) as opened:
        assert opened.format == "MPO" and opened.n_frames == 2
    x = levels(load_image(path, crop_square=False))
    assert x.shape == (6, 8, 3) and np.abs(x - [200, 30, 30]).max() <= 2


def write_bmp_with_alpha(path: Path, bgra: np.ndarray) -> Path:
    """A 32-bit BMP (V4 header) of ``bgra`` ``(4, 4, 4)`` with an alpha mask."""
    pixels = bgra[::-1].tobytes()
    header = struct.pack("<IiiHHIIiiII", 108, 4, 4, 1, 32, 3, len(pixels), 2835, 2835, 0, 0)
    header += struct.pack("<IIII", 0xFF0000, 0xFF00, 0xFF, 0xFF000000) + b"sRGB" + bytes(48)
    offset = 14 + len(header)
    path.write_bytes(b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + header
                     + pixels)
    with Image.open(path) as image:
        assert image.mode == "RGBA"
    return path


def test_a_bmp_whose_alpha_is_all_zero_is_opaque(tmp_path: Path) -> None:
    """A 32-bit BMP with an alpha mask but alpha 0 throughout (a padding byte) is shown opaque
    by browsers; composited over white it would vanish. One whose alpha says something is
    composited as any image with alpha."""
    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 2] = 200  # red, alpha 0
    path = write_bmp_with_alpha(tmp_path / "a.bmp", bgra)
    assert levels(load_image(path))[0, 0].tolist() == [200, 0, 0]
    assert read_image(path).mode == "RGB"  # the alpha that says nothing is gone
    bgra[1:3, 1:3, 3] = 128  # a half-transparent red square on transparent pixels
    x = levels(load_image(write_bmp_with_alpha(tmp_path / "b.bmp", bgra)))
    assert x[0, 0].tolist() == [255, 255, 255] and x[1, 1].tolist() == [227, 127, 127]


def rgb_profile(red: tuple, green: tuple, blue: tuple) -> bytes:
    """A minimal ICC v2 RGB display profile: primaries' XYZ (D50) as given, gamma 2.2. Pillow
    can only make sRGB, Lab and XYZ profiles; a wide-gamut photo's own profile is this kind
    (a matrix and tone curves)."""
    def fixed(v: float) -> bytes:  # s15Fixed16Number
        return struct.pack(">i", round(v * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ \0\0\0\0" + fixed(x) + fixed(y) + fixed(z)

    d50 = (0.9642, 1.0, 0.8249)
    gamma = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(2.2 * 256)) + b"\0\0"
    description = b"desc\0\0\0\0" + struct.pack(">I", 5) + b"test\0" + b"\0" * 79
    tags = [(b"desc", description), (b"wtpt", xyz(*d50)), (b"rXYZ", xyz(*red)),
            (b"gXYZ", xyz(*green)), (b"bXYZ", xyz(*blue)), (b"rTRC", gamma),
            (b"gTRC", gamma), (b"bTRC", gamma)]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, data in tags:
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data + b"\0" * (-len(data) % 4)
    header = (struct.pack(">I4sI4s4s4s12s4s4sI4s4sQI", offset + len(body), b"none", 0x02100000,
                          b"mntr", b"RGB ", b"XYZ ", bytes(12), b"acsp", b"APPL", 0, b"none",
                          b"none", 0, 0) + b"".join(map(fixed, d50)))
    return header.ljust(128, b"\0") + struct.pack(">I", len(tags)) + table + body


# sRGB's primaries adapted to D50 (the columns of its matrix). With red's and green's swapped the
# file's (0, 200, 0) is the colour sRGB calls red: no conversion near the identity passes for it.
SRGB_PRIMARIES = ((0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141))
RED_GREEN_SWAPPED = rgb_profile(SRGB_PRIMARIES[1], SRGB_PRIMARIES[0], SRGB_PRIMARIES[2])


@pytest.mark.parametrize("suffix, options", [(".png", {}), (".jpg", {"quality": 100}),
                                             (".tif", {}), (".webp", {"lossless": True})])
def test_colours_are_read_in_srgb_from_an_embedded_icc_profile(tmp_path: Path, suffix: str,
                                                                options: dict) -> None:
    tagged, untagged = tmp_path / f"tagged{suffix}", tmp_path / f"untagged{suffix}"
    Image.new("RGB", (8, 8), (0, 200, 0)).save(tagged, icc_profile=RED_GREEN_SWAPPED, **options)
    Image.new("RGB", (8, 8), (0, 200, 0)).save(untagged, **options)
    red = levels(load_image(tagged))[4, 4]
    assert red[0] >= 195 and red[1:].max() <= 4
    assert np.abs(levels(load_image(untagged))[4, 4] - [0, 200, 0]).max() <= 2


def test_a_palette_image_with_a_profile_is_converted(tmp_path: Path) -> None:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 200, 0] + [0] * 765)
    path = tmp_path / "p.png"
    image.save(path, icc_profile=RED_GREEN_SWAPPED)
    red = levels(load_image(path))[4, 4]
    assert red[0] >= 195 and red[1:].max() <= 4


def test_an_image_with_alpha_and_a_profile_is_converted(tmp_path: Path) -> None:
    path = tmp_path / "rgba.png"
    Image.new("RGBA", (8, 8), (0, 200, 0, 255)).save(path, icc_profile=RED_GREEN_SWAPPED)
    red = levels(load_image(path))[4, 4]
    assert red[0] >= 195 and red[1:].max() <= 4


def test_an_unreadable_or_mismatched_profile_is_ignored_with_a_warning(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.png"
    Image.new("RGB", (8, 8), (0, 200, 0)).save(garbage, icc_profile=b"not a profile" * 20)
    with pytest.warns(RuntimeWarning, match="garbage.png: its embedded ICC colour profile is "
                                            "ignored.*read as sRGB") as caught:
        assert levels(load_image(garbage))[4, 4].tolist() == [0, 200, 0]
    assert caught[0].filename == __file__  # the caller's line, not the library's
    cmyk = tmp_path / "cmyk.tif"  # an RGB profile on CMYK pixels means nothing
    Image.new("CMYK", (8, 8), (0, 0, 0, 0)).save(cmyk, icc_profile=RED_GREEN_SWAPPED)
    with pytest.warns(RuntimeWarning, match="cmyk.tif.*it is for RGB colours, the pixels are "
                                            "CMYK"):
        assert levels(load_image(cmyk))[4, 4].tolist() == [255, 255, 255]


def test_to_unit_maps_minus_one_to_one_onto_zero_to_one_and_clamps_overshoot() -> None:
    """to_unit is clamped: a chain that overshoots [-1, 1] (MALA has no clamp) stays in the
    [0, 1] that image viewers take, at both ends (frame_comparison returns its result as is)."""
    pixels = torch.tensor([-3.0, -1.0, 0.0, 0.5, 1.0, 2.5])
    assert to_unit(pixels).tolist() == [0.0, 0.0, 0.5, 0.75, 1.0, 1.0]


def test_save_grid_names_images_without_pixels_and_a_row_length_that_is_not_a_count(
        tmp_path: Path) -> None:
    """Images of height 0 failed inside Pillow ("cannot write empty image"), nrow 0 divided by
    zero inside torchvision, nrow 1.5 was taken as it came."""
    with pytest.raises(ValueError, match=r"images have no pixels: \(B, C, H, W\) = "
                                         r"\(2, 1, 0, 8\)"):
        save_image_grid(torch.zeros(2, 1, 0, 8), tmp_path / "grid.png")
    for nrow in (0, 1.5):
        with pytest.raises(ValueError, match=rf"nrow must be an int >= 1, got {nrow}"):
            save_image_grid(torch.zeros(2, 1, 8, 8), tmp_path / "grid.png", nrow=nrow)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("array, got", [
    (np.zeros((4, 4)), r"float64 \(4, 4\)"),  # Pillow: "cannot write mode F as PNG"
    (np.zeros(4, np.uint8), r"uint8 \(4,\)"),  # written as a one-row image
    (np.zeros((4, 4, 4), np.uint8), r"uint8 \(4, 4, 4\)"),  # written with an alpha channel
    (np.zeros((4, 4, 1), np.uint8), r"uint8 \(4, 4, 1\)"),  # Pillow: "Cannot handle this data"
    (np.zeros((0, 4), np.uint8), r"uint8 \(0, 4\)"),  # Pillow: "cannot write empty image"
    (torch.zeros(4, 4, dtype=torch.uint8), "Tensor"),  # "no attribute '__array_interface__'"
], ids=["float", "row", "rgba", "one-channel", "empty", "tensor"])
def test_save_picture_names_what_is_not_a_picture(tmp_path: Path, array, got: str) -> None:
    path = tmp_path / "picture.png"
    with pytest.raises(ValueError, match=rf"cannot write {path}: a picture is uint8 \(H, W\) "
                                         rf"or \(H, W, 3\) with H, W >= 1, got {got}$"):
        save_picture(array, path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["grid.jpg", "grid", "grid.png.tmp"])
def test_a_picture_is_written_only_to_a_png_path(tmp_path: Path, name: str) -> None:
    """A PNG was written under whatever name it was given: a "grid.jpg" held a PNG (render_voxels
    refused such a path, save_image_grid and save_picture did not)."""
    path = tmp_path / name
    with pytest.raises(ValueError, match=rf"cannot write {path}: a picture is written as PNG, "
                                         "so its path must end in .png$"):
        save_image_grid(torch.zeros(2, 1, 4, 4), path)
    with pytest.raises(ValueError, match=rf"cannot write {path}: a picture"):
        save_picture(np.zeros((4, 4), np.uint8), path)
    assert list(tmp_path.iterdir()) == []
    assert save_image_grid(torch.zeros(2, 1, 4, 4), tmp_path / "grid.PNG").is_file()


def test_to_tensor_names_pixels_that_are_not_uint8_images_and_load_image_a_bad_size() -> None:
    """A float array was read as grey levels (0.5 nearly black), another rank failed in torch's
    permute; a size of 0 in Pillow's resize ("height and width must be > 0")."""
    for array, got in ((np.full((2, 2), 0.5), r"float64 \(2, 2\)"),
                       (np.zeros(4, np.uint8), r"uint8 \(4,\)"),
                       (np.zeros((1, 2, 2, 3), np.uint8), r"uint8 \(1, 2, 2, 3\)")):
        with pytest.raises(ValueError, match=rf"expected uint8 pixels \(H, W\) or \(H, W, C\), "
                                             rf"got {got}"):
            to_tensor(array)
    # A view with negative strides (a flipped image), which torch cannot take as it is.
    array = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    assert torch.equal(to_tensor(array[:, ::-1]), to_tensor(array).flip(-1))
    for size in (0, 2.5):
        with pytest.raises(ValueError, match=rf"size must be an int >= 1, got {size}"):
            load_image("builtin:brick", size=size)


@pytest.mark.parametrize("rgb", [
    np.zeros((3, 4, 5), np.uint8),  # channels first: failed inside numpy's matmul
    np.full((4, 5, 3), 0.5, np.float32),  # [0, 1] floats: all black, without a word
    np.full((4, 5, 3), 300, np.int32),  # past 255: wrapped to another grey
])
def test_luma_names_rgb_that_is_not_uint8_with_the_channels_last(rgb: np.ndarray) -> None:
    message = f"luma: rgb must be uint8 (..., 3), the channels last, got {rgb.dtype} {rgb.shape}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        luma(rgb)
    assert luma(np.full((4, 5, 3), 255, np.uint8)).tolist() == [[255] * 5] * 4


def test_luma_names_rgb_that_is_no_array() -> None:
    """A nested list failed with an AttributeError (it has no dtype)."""
    with pytest.raises(ValueError, match=r"^luma: rgb must be uint8 \(\.\.\., 3\), the channels "
                                         r"last, got list$"):
        luma([[[0, 0, 0]]])


def test_a_file_pillow_cannot_identify_is_named_so(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    with pytest.raises(ValueError, match=r"cannot read image .*notes\.png: not an image file "
                                         r"Pillow can identify$"):
        load_image(path)


@pytest.mark.parametrize(("name", "says"), [
    ("photo.HEIC", r"its format \(\.heic\) is not read: convert it to PNG or JPEG$"),
    # A copy or download cut short left the name and no bytes.
    ("empty.jpg", r"the file is empty \(0 bytes\)$"),
    ("texture.npy", r"numpy arrays, not an image file: save the image \(uint8 \(H, W\) or "
                    r"\(H, W, 3\)\) as a PNG, PIL.Image.fromarray\(image\).save\('texture.png'\)$"),
])
def test_a_file_of_a_format_not_read_says_how_to_read_it(tmp_path: Path, name: str,
                                                        says: str) -> None:
    """A phone's HEIC photo, or an array saved by numpy.save, given as a texture was called
    "not an image file Pillow can identify", as if it were damaged; an empty file, as if it
    held something."""
    path = tmp_path / name
    if name.endswith(".npy"):
        np.save(path, np.zeros((4, 4), np.uint8))
    elif name == "empty.jpg":
        path.touch()
    else:
        path.write_bytes(b"\0\0\0\x18ftypheic" + bytes(16))
    with pytest.raises(ValueError, match=f"cannot read image .*{re.escape(name)}: {says}"):
        load_image(path)


def test_a_cielab_tiff_reads_as_grey_from_its_rgb(tmp_path: Path) -> None:
    """Pillow converts CIELAB only to RGB: read as grey, such a TIFF stopped the run with
    "conversion from LAB to RGB not supported", naming no file."""
    path = tmp_path / "lab.tif"
    Image.fromarray(ramp(channels=3)).convert("LAB").save(path)
    rgb = np.array(Image.open(path).convert("RGB"))
    grey = load_image(path, channels=1, crop_square=False)
    red, green, blue = rgb.astype(np.int64).transpose(2, 0, 1)
    # ITU-R 601 luma in 16-bit fixed point, as Pillow's convert("L") makes grey of RGB.
    expected = (19595 * red + 38470 * green + 7471 * blue + 0x8000) >> 16
    assert torch.equal(grey[0], torch.from_numpy(expected).float() / 127.5 - 1)
    assert torch.equal(load_image(path, channels=3, crop_square=False),
                       torch.from_numpy(rgb).permute(2, 0, 1).float() / 127.5 - 1)


def test_an_image_grid_of_an_array_is_refused_by_name(tmp_path: Path) -> None:
    # It failed on "'numpy.ndarray' object has no attribute 'dim'".
    with pytest.raises(ValueError, match=r"^images must be a torch.Tensor, got ndarray"):
        save_image_grid(np.zeros((2, 1, 4, 4), np.float32), tmp_path / "grid.png")

"""Images from an ``.npz`` array (the Keras layout of MNIST): layout, values, subsets and the
errors on files that are not such an array. The real MNIST check skips without ../shared."""

from __future__ import annotations

import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stgconv.data.image import (
    ImageFolder,
    load_npz_images,
    load_npz_labels,
    load_training_images,
)
from stgconv.io.image import load_image, luma


def digits_file(tmp_path: Path, images: np.ndarray, key: str = "x_train") -> Path:
    path = tmp_path / "digits.npz"
    np.savez(path, **{key: images, "y_train": np.arange(len(images)) % 10})
    return path


def test_grey_uint8_images_become_minus_one_to_one(tmp_path: Path) -> None:
    images = np.zeros((4, 6, 6), dtype=np.uint8)
    images[:, 2:4, 2:4] = 255
    x = load_training_images(digits_file(tmp_path, images), kind="objects", size=6, channels=1)
    assert x.shape == (4, 1, 6, 6) and x.dtype == torch.float32
    assert x.min() == -1.0 and x.max() == 1.0
    assert torch.equal(x[:, 0] == 1.0, torch.from_numpy(images == 255))


def test_an_image_folder_shows_its_settings_and_length(tmp_path: Path) -> None:
    for name in ("a.png", "b.png"):
        Image.new("RGB", (5, 5)).save(tmp_path / name)
    folder = ImageFolder(tmp_path, size=4, channels=1)
    assert repr(folder) == f"ImageFolder(root={tmp_path}, size=4, channels=1, n=2)"


def test_an_image_folder_s_link_to_its_own_image_is_read_once(tmp_path: Path) -> None:
    """A folder of photos with cover.png -> b.png (or a hard link) trained on that photo twice
    without a word, where a video folder reads such a link once: read once, with the warning
    a video folder gives."""
    for name, level in (("a.png", 0), ("b.png", 255)):
        Image.new("L", (4, 4), level).save(tmp_path / name)
    (tmp_path / "cover.png").symlink_to(tmp_path / "b.png")
    with pytest.warns(UserWarning) as caught:
        folder = ImageFolder(tmp_path, size=4, channels=1)
    assert [p.name for p in folder.files] == ["a.png", "b.png"]
    assert [str(w.message) for w in caught] == [
        f"{tmp_path / 'cover.png'} and {tmp_path / 'b.png'} are one image (a link): it is read "
        "once, as b.png"]


def test_an_image_folder_given_a_file_says_so(tmp_path: Path) -> None:
    Image.new("RGB", (5, 5)).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"a\.png is a file, not a folder of images"):
        ImageFolder(tmp_path / "a.png", size=4)


def test_an_image_folder_keeps_its_first_files_each_transformed(tmp_path: Path) -> None:
    for name, grey in (("a.png", 10), ("b.png", 120), ("c.png", 240)):
        Image.new("L", (4, 4), grey).save(tmp_path / name)
    folder = ImageFolder(tmp_path, size=4, channels=1, max_images=2, transform=torch.neg)
    assert len(folder) == 2
    for index, grey in enumerate((10, 120)):
        torch.testing.assert_close(folder[index], torch.full((1, 4, 4), 1 - grey / 127.5))


def test_a_texture_is_one_image_of_the_channels_asked(tmp_path: Path) -> None:
    Image.new("RGB", (4, 4), (200, 30, 30)).save(tmp_path / "red.png")
    grey = np.asarray(Image.new("RGB", (1, 1), (200, 30, 30)).convert("L"))[0, 0]
    texture = load_training_images(tmp_path / "red.png", kind="texture", size=4, channels=1)
    torch.testing.assert_close(texture, torch.full((1, 1, 4, 4), grey / 127.5 - 1))
    rgb = load_training_images(tmp_path / "red.png", kind="texture", size=4, channels=3)
    assert rgb.shape == (1, 3, 4, 4)


def test_a_texture_enlarged_more_than_twice_is_warned_about(tmp_path: Path) -> None:
    """A 12x12 tile learned at data.size 64 was the blur of itself, without a word; shrinking
    a photograph, the usual case, and enlarging it twice at most are not warned about."""
    import warnings

    Image.new("RGB", (16, 12), (200, 30, 30)).save(tmp_path / "tile.png")
    with pytest.warns(UserWarning, match=re.escape(
            f"texture {tmp_path / 'tile.png'} is 12x12 (its centre square) and is enlarged "
            "5.3x to data.size 64: the model learns the enlargement's blur; set data.size=12")):
        texture = load_training_images(tmp_path / "tile.png", kind="texture", size=64,
                                       channels=3)
    assert texture.shape == (1, 3, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for size in (24, 8):
            load_training_images(tmp_path / "tile.png", kind="texture", size=size, channels=3)


def test_a_folder_of_objects_enlarged_more_than_twice_is_warned_about(tmp_path: Path) -> None:
    """A folder of 12x16 thumbnails trained by objects_folder.yaml (data.size 64) was learned
    as the blur of its enlargements, without the word a texture that small gets; images
    enlarged twice at most are not warned about. Where the others are not enlarged so, the
    warning says to leave the small ones out too: a thumbnail among photos was answered only
    with its side as data.size, which shrinks every photo to it."""
    import warnings

    Image.new("RGB", (16, 12), (200, 30, 30)).save(tmp_path / "small.png")
    Image.new("RGB", (40, 40), (30, 30, 200)).save(tmp_path / "large.png")
    with pytest.warns(UserWarning, match=re.escape(
            f"1 of the 2 images in {tmp_path} is enlarged more than twice to data.size 64 (the "
            "smallest, small.png, is 12x12 (its centre square), enlarged 5.3x): the model "
            "learns the enlargements' blur; a data.size nearer 12 learns them as they are; or "
            "move it out of the folder: the other 1 image is not enlarged so") + "$"):
        images = load_training_images(tmp_path, kind="objects", size=64, channels=3)
    assert images.shape == (2, 3, 64, 64)
    with pytest.warns(UserWarning, match="2 of the 2 images .* learns them as they are$"):
        load_training_images(tmp_path, kind="objects", size=100, channels=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for size in (24, 8):
            load_training_images(tmp_path, kind="objects", size=size, channels=3)


@pytest.mark.parametrize("bad", ["text", "huge"])
def test_a_folder_image_that_cannot_be_read_is_named_with_why(tmp_path: Path, bad: str,
                                                              monkeypatch) -> None:
    """The folder's image sides, for the enlargement warning, were read from the headers before
    the images: a text file saved as .png was refused in Pillow's words alone ("cannot identify
    image file"), and an image too large to decode stopped the run with a traceback
    (DecompressionBombError is no OSError). They are refused as read_image refuses them."""
    Image.new("L", (4, 4), 90).save(tmp_path / "good.png")
    if bad == "text":
        (tmp_path / "notes.png").write_text("not a picture")
        message = "cannot read image .*notes.png: not an image file Pillow can identify"
    else:
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20)  # decoded up to 2 x 20 pixels
        Image.new("L", (7, 7), 90).save(tmp_path / "notes.png")
        message = "cannot read image .*notes.png: it is too large to decode"
    with pytest.raises(ValueError, match=message):
        load_training_images(tmp_path, kind="objects", size=4, channels=1)


def test_an_enlargement_warning_advises_no_size_the_net_refuses(tmp_path: Path) -> None:
    """It advised data.size 12 for a 12x12 tile, which a net of a larger receptive field
    refused once the data had loaded."""
    Image.new("RGB", (12, 12), (200, 30, 30)).save(tmp_path / "tile.png")
    with pytest.warns(UserWarning, match=re.escape(
            "set data.size: 15, the smallest the net takes, to train nearest the data's own "
            "side (model.layers with smaller filters or strides go lower)")):
        load_training_images(tmp_path / "tile.png", kind="texture", size=64, channels=3,
                             smallest_side=15)
    with pytest.warns(UserWarning, match=re.escape(
            "set data.size: 15, the smallest the net takes")):
        load_training_images(tmp_path, kind="objects", size=64, channels=3, smallest_side=15)
    # At that smallest size already, it is not advised again.
    with pytest.warns(UserWarning, match=re.escape(
            "data.size 32 is the smallest the net takes: give model.layers with smaller filters "
            "or strides to train nearer the data's own side")):
        load_training_images(tmp_path, kind="objects", size=32, channels=3, smallest_side=32)


def test_an_enlargement_to_a_size_under_the_nets_is_not_called_the_smallest_it_takes(
        tmp_path: Path) -> None:
    """A 12x12 tile enlarged to data.size 30 for a net that takes 57 or more: the warning said
    "data.size 30 is the smallest the net takes", which the net then refused."""
    Image.new("RGB", (12, 12), (200, 30, 30)).save(tmp_path / "tile.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_training_images(tmp_path / "tile.png", kind="texture", size=30, channels=3,
                             smallest_side=57)
    said = " ".join(str(warning.message) for warning in caught)
    assert "set data.size: 57, the smallest the net takes" in said, said
    assert "data.size 30 is the smallest" not in said, said


def test_an_npz_of_objects_enlarged_more_than_twice_is_warned_about(tmp_path: Path) -> None:
    """MNIST's 28x28 digits given to objects_folder.yaml (data.size 64) were learned as their
    blurred enlargements without a word; its own data.size (28) is not warned about."""
    import warnings

    path = digits_file(tmp_path, np.zeros((3, 10, 12), np.uint8))
    with pytest.warns(UserWarning, match=re.escape(
            f"3 of the 3 images in {path} are enlarged more than twice to data.size 64 (each "
            "is 10x10 (its centre square), enlarged 6.4x)")):
        load_training_images(path, kind="objects", size=64, channels=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_training_images(path, kind="objects", size=20, channels=1)


@pytest.mark.parametrize("kind", ["texture", "objects"])
def test_a_cache_of_the_prepare_scripts_names_the_kinds_that_read_it(kind, tmp_path) -> None:
    """`stgconv train --data clips.h5` without a video config (an image kind by default) was
    refused in Pillow's words, "cannot find loader for this HDF5 file"."""
    import h5py

    path = tmp_path / "clips.h5"
    with h5py.File(path, "w") as h5:
        h5["clips"] = np.zeros((1, 2, 4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match=re.escape(
            f"{path} is an HDF5 file, which data.kind {kind} does not read: a clip cache "
            "(stgconv.data.video.build_clip_cache) trains with data.kind video, a shape cache "
            "(stgconv.data.voxel.build_modelnet_cache) with data.kind voxels (--set "
            "data.kind=video or data.kind=voxels, or a config file's data: kind:)")):
        load_training_images(path, kind=kind, size=4, channels=1)


def test_a_texture_is_decoded_once(tmp_path: Path, monkeypatch) -> None:
    """Its side, for the enlargement's warning, was read by decoding it a second time at its
    own size, into floats: a 12-megapixel photograph took 2.1 s to load instead of 0.8 s."""
    import stgconv.io.image as image_io

    decoded = []
    read = image_io.read_image

    def counted(path, **kwargs):
        decoded.append(path)
        return read(path, **kwargs)

    monkeypatch.setattr(image_io, "read_image", counted)
    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "photo.png")
    texture = load_training_images(tmp_path / "photo.png", kind="texture", size=8, channels=3)
    assert len(decoded) == 1
    torch.testing.assert_close(texture[0], load_image(tmp_path / "photo.png", size=8))


def test_training_images_of_an_npz_take_max_images(tmp_path: Path) -> None:
    """The .npz's fixed random subset (seed 0, in file order), as load_npz_images keeps it."""
    path = digits_file(tmp_path, np.arange(6, dtype=np.uint8).repeat(4).reshape(6, 2, 2))
    x = load_training_images(path, kind="objects", size=2, channels=1, max_images=2)
    values = ((x[:, 0, 0, 0] + 1) * 127.5).round().long().tolist()  # image i is all i
    assert values == sorted(np.random.default_rng(0).permutation(6)[:2].tolist())


@pytest.mark.parametrize(("name", "hint"), [
    ("digits.npy", "; numpy.savez(path, x_train=images) writes the images as one"),
    ("photo.JPG", "; data.kind texture learns from one image file"),
    ("notes.txt", ""),
])
def test_objects_given_one_file_say_what_they_read(tmp_path: Path, name: str,
                                                   hint: str) -> None:
    """Not only "is a file, not a folder of images": an .npz is read too, and one image is a
    texture's data."""
    path = tmp_path / name
    path.write_bytes(b"whatever it holds: the file is not opened")
    with pytest.raises(ValueError) as refused:
        load_training_images(path, kind="objects", size=4, channels=1)
    assert str(refused.value) == (f"{path} is a file: data.kind objects reads a folder of "
                                  f"images or an .npz file whose x_train holds them{hint}")


def test_training_images_of_another_kind_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="data kind must be 'texture' or 'objects', got 'video'"):
        load_training_images(tmp_path, kind="video", size=4, channels=1)


def test_a_dataset_without_settings_shows_only_its_length() -> None:
    """NamedDataset's repr: a dataset whose extra_repr is empty shows ``Name(n=3)``, with no
    dangling comma before the length."""
    from stgconv.data.base import NamedDataset

    class Bare(NamedDataset):
        def __len__(self) -> int:
            return 3

    assert repr(Bare()) == "Bare(n=3)"


def test_channels_and_size_are_converted(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    rgb = load_npz_images(digits_file(tmp_path, grey), size=28, channels=3)
    assert rgb.shape == (3, 3, 28, 28) and torch.equal(rgb[:, 0], rgb[:, 2])
    small = load_npz_images(digits_file(tmp_path, grey), size=14, channels=1)
    assert small.shape == (3, 1, 14, 14) and small.min() >= -1 and small.max() <= 1


def test_arrays_are_made_grey_and_square_as_image_files_are(tmp_path: Path) -> None:
    """The same picture gives the same training data from an .npz as from a PNG: grey by luma
    (it was the channels' mean: pure red came out 0.33 grey, Pillow says 0.30) and centre-cropped
    to a square (it was squeezed)."""
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (2, 8, 12, 3), dtype=np.uint8)
    colour[0, :, 2:6] = (255, 0, 0)
    path = digits_file(tmp_path, colour)
    for size, levels in ((8, 0), (6, 1)):  # resized: Pillow rounds to whole levels, torch not
        from_array = load_npz_images(path, size=size, channels=1)
        for index, image in enumerate(colour):
            Image.fromarray(image).save(tmp_path / "one.png")
            from_file = load_image(tmp_path / "one.png", channels=1, size=size)
            torch.testing.assert_close(from_array[index], from_file,
                                       atol=levels / 127.5 + 1e-6, rtol=0)


def test_max_images_is_a_fixed_random_subset_in_file_order(tmp_path: Path) -> None:
    images = np.arange(50, dtype=np.uint8).repeat(4).reshape(50, 2, 2)  # image i is all i
    path = digits_file(tmp_path, images)
    first = load_npz_images(path, size=2, channels=1, max_images=10)
    again = load_npz_images(path, size=2, channels=1, max_images=10)
    values = ((first[:, 0, 0, 0] + 1) * 127.5).round().long().tolist()
    assert torch.equal(first, again) and values == sorted(values) and len(set(values)) == 10
    assert values != list(range(10))  # not simply the first ten
    # The subset the docstring names, so that a run can be repeated with the same images.
    assert values == sorted(np.random.default_rng(0).permutation(50)[:10].tolist())


@pytest.mark.parametrize(("content", "message"), [
    ("not a zip", r"cannot read .*bad.npz: the file is damaged or truncated \(BadZipFile"),
    ("text", r"bad.npz: not a readable .npz file \(not a zip of arrays\)$"),
    ("one array", r"bad.npz: not a readable .npz file \(a single .npy array, not an archive\)$"),
    ("other key", "no array 'x_train' \\(it has x_test"),
    # np.savez(path, images) names the array arr_0; nothing said how to name it.
    ("unnamed", r"no array 'x_train' \(it has arr_0\): numpy.savez\(path, x_train=images\) "
                r"saves the images under that name$"),
    ("no arrays", r"no array 'x_train' \(it has no arrays\)"),
    ("floats", "must be uint8"),
    # Neither the usual float pixels nor PyTorch's channels-first layout said how to convert.
    ("floats in [0, 1]", r"got float32 \(2, 4, 4\); save levels 0-255 as uint8 \(floats in "
                         r"\[0, 1\]: \(images \* 255\).round\(\).astype\(numpy.uint8\)\)$"),
    ("16-bit", r"got uint16 \(2, 4, 4\); save levels 0-255 as uint8 \(16-bit levels: "
               r"\(images / 257\).round\(\).astype\(numpy.uint8\)\)$"),
    ("channels first", r"got uint8 \(2, 3, 8, 8\); channels first \(PyTorch's \(N, C, H, W\)\)\? "
                       r"numpy.moveaxis\(images, 1, -1\) puts them last$"),
    ("empty", "holds no images"),
    # One RGB picture without its batch axis was read as 16 grey images of 12x3 pixels.
    ("one colour image", r"x_train \(16, 12, 3\) reads as 16 grey images of 12x3 pixels; one "
                         r"colour image \(H, W, C\)\? save it with a batch axis, "
                         r"numpy.savez\(path, x_train=image\[None\]\)$"),
    ("no pixels", r"x_train's images have no pixels: \(N, H, W\) = \(2, 0, 4\)"),
    ("objects", r"cannot read array 'x_train' of .*bad.npz: Object arrays"),
    ("damaged", r"cannot read .*bad.npz: the file is damaged or truncated"),
    # Binarized digits saved as 0/1 were read as levels 0 and 1 of 255: all black.
    ("binarized", r"bad.npz: x_train holds only the levels 0 and 1, which of 0-255 are black; "
                  r"save binarized images as 0 and 255 \(multiply them by 255\)$"),
])
def test_bad_files_are_named_with_what_is_wrong(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.npz"
    if content == "not a zip":
        path.write_bytes(b"PK\x03\x04 truncated")
    elif content == "text":
        path.write_text("a README, not arrays")
    elif content == "one array":
        with path.open("wb") as file:
            np.save(file, np.zeros((2, 4, 4), dtype=np.uint8))
    elif content == "other key":
        np.savez(path, x_test=np.zeros((2, 4, 4), dtype=np.uint8))
    elif content == "unnamed":
        np.savez(path, np.zeros((2, 4, 4), dtype=np.uint8))
    elif content == "no arrays":
        np.savez(path)
    elif content == "floats":
        np.savez(path, x_train=np.zeros((2, 4, 4)))
    elif content == "floats in [0, 1]":
        np.savez(path, x_train=np.full((2, 4, 4), 0.5, np.float32))
    elif content == "16-bit":
        np.savez(path, x_train=np.full((2, 4, 4), 40000, np.uint16))
    elif content == "channels first":
        np.savez(path, x_train=np.zeros((2, 3, 8, 8), np.uint8))
    elif content == "objects":  # never unpickled
        np.savez(path, x_train=np.array([np.zeros((4, 4)), "a digit"], dtype=object))
    elif content == "damaged":  # opens, and fails only when its compressed bytes are read
        np.savez_compressed(path, x_train=np.arange(4096, dtype=np.uint8).reshape(4, 32, 32))
        data = bytearray(path.read_bytes())
        data[100:200] = bytes(b ^ 0x55 for b in data[100:200])
        path.write_bytes(bytes(data))
    elif content == "binarized":
        np.savez(path, x_train=np.eye(4, dtype=np.uint8)[None].repeat(2, axis=0))
    elif content == "one colour image":
        np.savez(path, x_train=np.full((16, 12, 3), 128, np.uint8))
    elif content == "no pixels":
        np.savez(path, x_train=np.zeros((2, 0, 4), dtype=np.uint8))
    else:
        np.savez(path, x_train=np.zeros((0, 4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match=message):
        load_npz_images(path, size=4, channels=1)


def test_npz_images_of_no_width_are_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((2, 4, 0), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"have no pixels: \(N, H, W\) = \(2, 4, 0\)"):
        load_npz_images(tmp_path / "bad.npz", size=4, channels=1)


def test_npz_alpha_compositing_rounds_to_the_nearest_level(tmp_path: Path) -> None:
    # Grey 1 at alpha 128 over white: 1 * 128 / 255 + 255 * 127 / 255 = 127.502, level 128.
    np.savez(tmp_path / "la.npz", x_train=np.array([[[[1, 128]]]], np.uint8))
    x = load_npz_images(tmp_path / "la.npz", size=1, channels=1)
    assert ((x + 1) * 127.5).round().item() == 128


def test_npz_images_with_alpha_are_composited_over_white(tmp_path: Path) -> None:
    """RGBA (and grey + alpha) arrays were refused; image files with transparency are read
    composited over white, and so are they now."""
    rgba = np.zeros((2, 4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red, its transparent pixels' colour meaning nothing
    rgba[:, :2, :, 3] = 255  # top half opaque
    rgba[1, 3, 3, 3] = 51  # one pixel 20% opaque
    path = tmp_path / "rgba.npz"
    np.savez(path, x_train=rgba)
    x = ((load_npz_images(path, size=4, channels=3) + 1) * 127.5).round()
    assert x[:, :, :2].tolist() == [[[[255] * 4] * 2, [[0] * 4] * 2, [[0] * 4] * 2]] * 2
    assert (x[0, :, 2:] == 255).all() and x[1, :, 3, 3].tolist() == [255, 204, 204]
    np.savez(tmp_path / "la.npz", x_train=np.stack([np.full((2, 4, 4), 90, np.uint8),
                                                     np.zeros((2, 4, 4), np.uint8)], -1))
    assert (load_npz_images(tmp_path / "la.npz", size=4, channels=1) == 1).all()  # white


@pytest.mark.shared_data("image/mnist.npz")
def test_real_mnist_loads_as_digits(shared_data: Path) -> None:
    x = load_npz_images(shared_data / "image" / "mnist.npz", size=28, channels=1, max_images=100)
    assert x.shape == (100, 1, 28, 28)
    # Digits: a dark background with a minority of bright strokes.
    assert (x < -0.9).float().mean() > 0.6 and (x > 0.5).float().mean() > 0.05


def test_npz_labels_refuse_negative_classes(tmp_path: Path) -> None:
    """load_npz_labels refuses a label below 0 (naming it) instead of returning it."""
    np.savez(tmp_path / "d.npz", x_train=np.zeros((3, 4, 4), np.uint8),
             y_train=np.array([0, -1, 1]))
    with pytest.raises(ValueError, match=r"negative labels \(-1\)"):
        load_npz_labels(tmp_path / "d.npz")


def _savez_version_2(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez`` with every array a version 2.0 ``.npy`` (numpy's for a header past 64 KiB,
    e.g. a structured dtype of many fields)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, array, version=(2, 0))


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed, _savez_version_2])
def test_npz_labels_count_the_images_from_their_header(tmp_path: Path, monkeypatch,
                                                       save) -> None:
    """The images are counted from their .npy header, never read: reading them decompressed
    a whole training set to count it (50,000 CIFAR-10 images: 150 MB)."""
    save(tmp_path / "d.npz", x_train=np.zeros((5, 4, 4), np.uint8), y_train=np.arange(5)[:, None])
    read, read_array = [], np.lib.format.read_array

    def recorded(*args, **settings) -> np.ndarray:
        array = read_array(*args, **settings)
        read.append(array.shape)
        return array

    monkeypatch.setattr(np.lib.format, "read_array", recorded)
    assert load_npz_labels(tmp_path / "d.npz").tolist() == [0, 1, 2, 3, 4]
    assert read == [(5, 1)]  # the labels only


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_npz_labels_count_images_of_every_npy_version(tmp_path: Path, version) -> None:
    # Versions 1 and 2 from their header; 3 (numpy reads its header no other way) by reading
    # the images, as Python objects are.
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as archive:
        for name, array in (("x_train", np.zeros((3, 4, 4), np.uint8)), ("y_train", np.arange(2))):
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, array, version=version)
    with pytest.raises(ValueError, match=r"y_train holds 2 labels for 3 x_train images"):
        load_npz_labels(tmp_path / "d.npz")
    np.savez(tmp_path / "objects.npz", x_train=np.array([None, None], dtype=object),
             y_train=np.arange(2))
    with pytest.raises(ValueError, match=r"cannot read array 'x_train' of .*objects\.npz"):
        load_npz_labels(tmp_path / "objects.npz")


def test_npz_labels_must_be_one_integer_per_image(tmp_path: Path) -> None:
    np.savez(tmp_path / "few.npz", x_train=np.zeros((4, 4, 4), np.uint8), y_train=np.arange(3))
    with pytest.raises(ValueError, match=r"y_train holds 3 labels for 4 x_train images"):
        load_npz_labels(tmp_path / "few.npz")
    np.savez(tmp_path / "floats.npz", x_train=np.zeros((3, 4, 4), np.uint8),
             y_train=np.array([0.0, 1.5, 2.0]))
    with pytest.raises(ValueError, match=r"y_train must be whole class numbers, got fractions"):
        load_npz_labels(tmp_path / "floats.npz")
    for bad, message in ((np.array([0.0, np.nan, 2.0]), "got NaN or infinite values"),
                         (np.array([0.0, -1e20, 2.0]), "must be class numbers, got -1e"),
                         (np.array([0, 2**63, 2], np.uint64), "class numbers, got 9223372"),
                         (np.array([True, False, True]), "integer class numbers, got bool"),
                         (np.zeros((3, 2), np.int64), r"labels \(N,\) or \(N, 1\), got \(3, 2\)")):
        np.savez(tmp_path / "bad.npz", x_train=np.zeros((3, 4, 4), np.uint8), y_train=bad)
        with pytest.raises(ValueError, match=message):
            load_npz_labels(tmp_path / "bad.npz")
    # Classes stored as doubles (MATLAB, pandas) are the classes they name.
    np.savez(tmp_path / "doubles.npz", x_train=np.zeros((3, 4, 4), np.uint8),
             y_train=np.array([[2.0], [0.0], [1.0]]))
    labels = load_npz_labels(tmp_path / "doubles.npz")
    assert labels.dtype == torch.int64 and labels.tolist() == [2, 0, 1]


def test_npz_labels_of_a_subset_are_its_images_labels(tmp_path: Path) -> None:
    # Image i is filled with grey level i and labelled i: the subset keeps the pairs together.
    values = np.arange(20, dtype=np.uint8)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.broadcast_to(values[:, None, None], (20, 4, 4)).copy(),
             y_train=values.astype(np.int64))
    images = load_npz_images(path, size=4, channels=1, max_images=5)
    labels = load_npz_labels(path, max_images=5)
    assert torch.equal(((images[:, 0, 0, 0] + 1) * 127.5).round().long(), labels)
    assert labels.tolist() != list(range(5))  # a random subset, not the first 5


def test_an_npz_suffix_in_capitals_is_an_npz(tmp_path: Path) -> None:
    path = tmp_path / "DIGITS.NPZ"
    with path.open("wb") as file:
        np.savez(file, x_train=np.zeros((2, 4, 4), np.uint8))
    assert load_training_images(path, kind="objects", size=4, channels=1).shape == (2, 1, 4, 4)


def test_npz_labels_accept_the_keras_column_layout(tmp_path: Path) -> None:
    """Labels stored as a column (N, 1), as Keras keeps CIFAR's, come back as (N,) int64."""
    np.savez(tmp_path / "d.npz", x_train=np.zeros((3, 4, 4), np.uint8),
             y_train=np.array([[2], [0], [1]], dtype=np.uint8))
    labels = load_npz_labels(tmp_path / "d.npz")
    assert labels.dtype == torch.int64 and labels.tolist() == [2, 0, 1]


def test_npz_images_are_converted_a_chunk_at_a_time(tmp_path: Path, monkeypatch) -> None:
    """Every step (alpha, luma, floats, resizing) sees NPZ_CHUNK images at most (all at once,
    100,000 32x32 RGB images took 6x their result's memory), and the chunks change nothing."""
    import stgconv.data.image as image

    rgba = np.random.default_rng(0).integers(0, 256, (5, 9, 8, 4), dtype=np.uint8)
    path = digits_file(tmp_path, rgba)
    whole = load_npz_images(path, size=5, channels=1, max_images=4)
    made_grey = []
    monkeypatch.setattr(image, "luma", lambda rgb: made_grey.append(len(rgb)) or luma(rgb))
    monkeypatch.setattr(image, "NPZ_CHUNK", 3)
    assert torch.equal(load_npz_images(path, size=5, channels=1, max_images=4), whole)
    assert made_grey == [3, 1]


def test_npz_images_are_float32_whatever_torchs_default_dtype(tmp_path: Path) -> None:
    """The result the chunks are written into is float32, as each chunk's pixels are, not the
    float64 a caller's ``torch.set_default_dtype`` would make it."""
    path = digits_file(tmp_path, np.zeros((2, 4, 4), np.uint8))
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        images = load_npz_images(path, size=4, channels=1)
    finally:
        torch.set_default_dtype(default)
    assert images.dtype == torch.float32


def test_resized_npz_images_stay_within_minus_one_to_one(tmp_path: Path) -> None:
    """Antialiased resizing can overshoot by a rounding error: a white 7x7 array resized to
    3x3 is still exactly at most 1 (clamped), as the data's value range promises."""
    np.savez(tmp_path / "w.npz", x_train=np.full((1, 7, 7), 255, np.uint8))
    x = load_npz_images(tmp_path / "w.npz", size=3, channels=1)
    assert x.shape == (1, 1, 3, 3) and x.max().item() <= 1.0 and x.min().item() >= -1.0


@pytest.mark.parametrize("max_images", [0, -1, 2.5, True])
def test_a_max_images_that_is_not_a_positive_count_is_named(tmp_path: Path, max_images) -> None:
    """-1 dropped the last image (a slice to -1), 0 kept none and True one, all silently; 2.5
    failed in the slice ("slice indices must be integers")."""
    path = digits_file(tmp_path, np.zeros((5, 4, 4), dtype=np.uint8))
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(folder / "0.png")
    message = rf"max_images must be an int >= 1, got {max_images!r}"
    for load in (lambda: load_npz_images(path, size=4, channels=1, max_images=max_images),
                 lambda: load_npz_labels(path, max_images=max_images),
                 lambda: ImageFolder(folder, size=4, max_images=max_images)):
        with pytest.raises(ValueError, match=message):
            load()


def test_a_size_or_channel_count_images_cannot_have_is_named(tmp_path: Path) -> None:
    """Channels 2 or 0 made grey images of 2 or no channels silently; size 0 failed inside
    torch's interpolate or, for a folder, in Pillow at the first image."""
    path = digits_file(tmp_path, np.zeros((5, 4, 4), dtype=np.uint8))
    for channels in (2, 0):
        with pytest.raises(ValueError, match=rf"channels must be 1 or 3, got {channels}"):
            load_npz_images(path, size=4, channels=channels)
        with pytest.raises(ValueError, match=rf"channels must be 1 or 3, got {channels}"):
            ImageFolder(tmp_path, size=4, channels=channels)
    for size in (0, 2.5):
        with pytest.raises(ValueError, match=rf"size must be an int >= 1, got {size}"):
            load_npz_images(path, size=size, channels=1)
        with pytest.raises(ValueError, match=rf"size must be an int >= 1, got {size}"):
            ImageFolder(tmp_path, size=size)


def test_npz_labels_of_another_split_name_the_images_argument(tmp_path: Path) -> None:
    # key="y_test" alone counted x_train's images; the error now says which argument fixes it.
    np.savez(tmp_path / "d.npz", x_train=np.zeros((4, 4, 4), np.uint8), y_train=np.arange(4),
             x_test=np.zeros((2, 4, 4), np.uint8), y_test=np.arange(2))
    with pytest.raises(ValueError, match=r"y_test holds 2 labels for 4 x_train images, where "
                                         r"one per image is needed; images= names the array "
                                         r"they label"):
        load_npz_labels(tmp_path / "d.npz", key="y_test")
    assert load_npz_labels(tmp_path / "d.npz", key="y_test", images="x_test").tolist() == [0, 1]


def test_npz_labels_without_their_images_say_no_images(tmp_path: Path) -> None:
    """Labels with no array ``images`` in the file: "for no x_train images", not "for None"."""
    np.savez(tmp_path / "d.npz", y_train=np.arange(2))
    with pytest.raises(ValueError, match=r"y_train holds 2 labels for no x_train images, where "
                                         r"one per image is needed$"):
        load_npz_labels(tmp_path / "d.npz")

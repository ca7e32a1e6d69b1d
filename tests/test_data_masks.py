"""Masks: loading and converting the shared .mat masks (skipped when absent), generated masks,
and the shape check."""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from _tiny import write_mat_v73
from stgconv.data.masks import (
    check_mask_matches,
    load_mask,
    load_mask_mat,
    missing_frames,
    occluded_region,
    salt_and_pepper,
)
from stgconv.io.video import load_video

CLIPS = ["flag", "ocean", "playing", "sea_world", "windmill"]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# The shared .mat masks
# ---------------------------------------------------------------------------------------------


@pytest.mark.shared_data("video/masks")
@pytest.mark.parametrize("clip", CLIPS)
def test_real_missing_frame_masks(clip, shared_data):
    path = shared_data / "video" / "masks" / f"{clip}_missing_frame_type.mat"
    known = load_mask_mat(path)
    assert known.shape == (3, 70, 150, 150) and known.dtype == torch.bool
    # The conversion: transpose (H, W, T, C) -> (C, T, H, W) and invert (1 = missing).
    raw = scipy.io.loadmat(path)["masks"]
    assert torch.equal(known, torch.from_numpy(raw.transpose(3, 2, 0, 1) == 0))
    assert (known == known[:1]).all()  # channels identical
    per_frame = known[0].float().mean(dim=(1, 2))
    assert set(per_frame.tolist()) == {0.0, 1.0}  # whole frames
    assert (per_frame == 0).sum() == 35  # 50% of 70
    assert 1 - known.float().mean().item() == pytest.approx(0.5)


@pytest.mark.shared_data("video/masks")
@pytest.mark.parametrize("clip", CLIPS)
def test_real_region_masks(clip, shared_data):
    known = load_mask_mat(shared_data / "video" / "masks" / f"{clip}_region_type.mat")
    assert known.shape == (3, 70, 150, 150)
    assert (known == known[:1]).all()
    missing = ~known[0]
    corners = []
    for t in range(70):
        rows, cols = torch.nonzero(missing[t], as_tuple=True)
        assert len(rows) == 60 * 60  # one full 60x60 block
        assert rows.max() - rows.min() == 59 and cols.max() - cols.min() == 59
        corners.append((rows.min().item(), cols.min().item()))
    assert len(set(corners)) > 60, "the block moves from frame to frame"
    assert 1 - known.float().mean().item() == pytest.approx(0.16)


def test_mat_loader_converts_and_validates(tmp_path):
    missing = np.zeros((4, 5, 3, 2), dtype=np.uint8)  # (H, W, T, C)
    missing[1, 2, 0, :] = 1
    scipy.io.savemat(tmp_path / "m.mat", {"masks": missing, "other": np.ones(2)})
    known = load_mask_mat(tmp_path / "m.mat")
    assert known.shape == (2, 3, 4, 5) and known.is_contiguous()  # not a transposed view
    assert not known[:, 0, 1, 2].any() and known.sum() == known.numel() - 2

    scipy.io.savemat(tmp_path / "m3.mat", {"occ": missing[..., 0]})
    assert load_mask_mat(tmp_path / "m3.mat", key="occ").shape == (1, 3, 4, 5)
    # Saved under another name: the file's one 3-D/4-D array (it was refused, naming 'masks').
    assert torch.equal(load_mask_mat(tmp_path / "m3.mat"), load_mask_mat(tmp_path / "m3.mat",
                                                                         key="occ"))
    scipy.io.savemat(tmp_path / "two.mat", {"a": missing, "b": missing})
    with pytest.raises(ValueError, match=r"no variable 'masks'; it holds: a, b \(and more than "
                                         r"one 3-D/4-D array"):
        load_mask_mat(tmp_path / "two.mat")

    with pytest.raises(ValueError, match=r"no variable 'nope'; it holds: masks, other$"):
        load_mask_mat(tmp_path / "m.mat", key="nope")
    scipy.io.savemat(tmp_path / "bad.mat", {"masks": missing * 2})
    with pytest.raises(ValueError, match=r"only 0 .* and 1 .*found values 0, 2"):
        load_mask_mat(tmp_path / "bad.mat")
    for shape in ((4, 5), (1, 2, 3, 4, 5)):
        scipy.io.savemat(tmp_path / "flat.mat", {"masks": np.zeros(shape)})
        with pytest.raises(ValueError, match=re.escape(f"shape {shape}; expected (H, W, T, C)")):
            load_mask_mat(tmp_path / "flat.mat")
    # A mask drawn as MATLAB text: letters are no 0/1 numbers.
    scipy.io.savemat(tmp_path / "text.mat", {"masks": np.array([[["0", "1"], ["1", "0"]]] * 2)})
    with pytest.raises(ValueError, match=r"text\.mat\['masks'\] has dtype <U1; expected 0/1 "
                                         r"numbers"):
        load_mask_mat(tmp_path / "text.mat")
    with pytest.raises(FileNotFoundError, match=r"mask file not found: .*absent\.mat"):
        load_mask_mat(tmp_path / "absent.mat")
    for folder in ("masks", "masks.npy"):  # read as a .mat file, and as an .npy array
        (tmp_path / folder).mkdir()
        with pytest.raises(ValueError, match=rf"{folder} is a folder, not a mask file "
                                             r"\(\.mat, \.npy or an image\)$"):
            load_mask(tmp_path / folder)
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(ValueError, match=r"cannot read MATLAB file .*junk\.mat: .*; masks are "
                                         r"\.mat \(H, W, T\[, C\]\)"):
        load_mask_mat(tmp_path / "junk.mat")


def test_a_mat_files_masks_variable_is_read_though_another_array_is_3d(tmp_path):
    scipy.io.savemat(tmp_path / "m.mat", {"masks": np.zeros((4, 5)), "occ": np.zeros((4, 5, 3))})
    with pytest.raises(ValueError, match=r"\['masks'\] has shape \(4, 5\)"):
        load_mask_mat(tmp_path / "m.mat")


@pytest.mark.parametrize("error", [IndexError("index out of range"),
                                   UnboundLocalError("local variable 'arr' referenced")])
def test_scipys_other_errors_on_a_damaged_mat_are_named(tmp_path, monkeypatch, error):
    """Fuzzing damaged .mat files, scipy also raised these (the voxel reader let them through
    as tracebacks)."""
    path = tmp_path / "damaged.mat"
    scipy.io.savemat(path, {"masks": np.zeros((2, 2, 2), np.uint8)})

    def damaged(*args, **kwargs):
        raise error

    monkeypatch.setattr(scipy.io, "loadmat", damaged)
    with pytest.raises(ValueError, match=r"cannot read MATLAB file .*damaged\.mat: "):
        load_mask_mat(path)


def test_a_mask_file_whose_compressed_bytes_are_damaged_is_named(tmp_path):
    """zlib's own error named no file."""
    path = tmp_path / "damaged.mat"
    missing = np.random.default_rng(0).integers(0, 2, (32, 32, 8), dtype=np.uint8)
    scipy.io.savemat(path, {"masks": missing}, do_compression=True)
    data = bytearray(path.read_bytes())
    data[200:400] = bytes(b ^ 0x55 for b in data[200:400])
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"damaged\.mat: the file is damaged or truncated"):
        load_mask_mat(path)


def test_a_matlab_v73_mask_reads_as_its_v5_twin(tmp_path):
    """MATLAB saves as v7.3 (HDF5, its arrays column-major) where a user made it the default:
    such masks were refused, telling the user to save them again."""
    missing = (np.random.default_rng(0).random((6, 5, 4, 3)) < 0.5).astype(np.uint8)
    scipy.io.savemat(tmp_path / "v5.mat", {"masks": missing})
    write_mat_v73(tmp_path / "v73.mat", {"masks": missing})
    known = load_mask_mat(tmp_path / "v73.mat")
    assert known.shape == (3, 4, 6, 5)
    assert torch.equal(known, load_mask_mat(tmp_path / "v5.mat"))


def test_npy_masks_are_read_in_the_video_layout(tmp_path):
    missing = np.zeros((2, 3, 4, 5), dtype=np.uint8)  # (C, T, H, W)
    missing[:, 1, 2, 3] = 1
    np.save(tmp_path / "m.npy", missing)
    known = load_mask(tmp_path / "m.npy")
    assert known.shape == (2, 3, 4, 5) and known.dtype == torch.bool
    assert not known[:, 1, 2, 3].any() and known.sum() == known.numel() - 2
    np.save(tmp_path / "m3.npy", missing[0].astype(bool))
    assert load_mask(tmp_path / "m3.npy").shape == (1, 3, 4, 5)
    assert torch.equal(load_mask(tmp_path / "m.npy"), known)
    with open(tmp_path / "upper.NPY", "wb") as file:  # the suffix in any case
        np.save(file, missing)  # (np.save given a path would add .npy)
    assert torch.equal(load_mask(tmp_path / "upper.NPY"), known)
    for name, array, message in [
            ("line.npy", np.zeros(5), r"shape \(5,\); expected \(H, W\) \(one mask for every "
                                      r"frame\), \(T, H, W\) or \(C, T, H, W\)"),
            ("batch.npy", np.zeros((1, 2, 3, 4, 5)),
             r"shape \(1, 2, 3, 4, 5\); expected \(H, W\) .*, \(T, H, W\) or \(C, T, H, W\)"),
            ("bad.npy", missing * 3, r"only 0 .* and 1 .*found values 0, 3"),
            # A mask drawn as an 8-bit picture: 255 is no "missing".
            ("picture.npy", missing * 255, r"only 0 .* and 1 .*found values 0, 255 \(an "
                                           r"8-bit picture's 0 and 255: save mask / 255\)$")]:
        np.save(tmp_path / name, array)
        with pytest.raises(ValueError, match=message):
            load_mask(tmp_path / name)
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    with pytest.raises(ValueError, match=r"junk\.npy: not a numeric \.npy array"):
        load_mask(tmp_path / "junk.npy")
    (tmp_path / "empty.npy").write_bytes(b"")  # numpy's EOFError was a traceback
    with pytest.raises(ValueError, match=r"empty\.npy: not a numeric \.npy array"):
        load_mask(tmp_path / "empty.npy")
    with pytest.raises(FileNotFoundError):
        load_mask(tmp_path / "absent.npy")


def test_one_frames_mask_holds_in_every_frame(tmp_path):
    """A fixed occluder drawn as an image (white = missing, as inpainting tools read masks) or
    saved as a 2-D array: an image was read as a MATLAB file ("cannot read MATLAB file
    m.png"), a 2-D array refused."""
    grey = np.zeros((4, 6), np.uint8)
    grey[1, 2], grey[2, 4], grey[3, 0] = 255, 128, 127  # 128 and up is white: missing
    Image.fromarray(grey).save(tmp_path / "m.png")
    expected = torch.ones(1, 3, 4, 6, dtype=torch.bool)
    expected[..., 1, 2] = expected[..., 2, 4] = False
    assert torch.equal(load_mask(tmp_path / "m.png", frames=3), expected)
    # Colour and 16-bit greys are made grey as images are; an RGB white pixel is missing.
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "rgb.PNG")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "16bit.png")
    # Drawn as a layer: white strokes, the rest transparent (whatever colour it stores) and so
    # observed; composited over white as pictures are, every pixel was missing.
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[..., 3] = np.where(grey >= 128, 255, 0)
    Image.fromarray(rgba).save(tmp_path / "layer.png")
    for name in ("rgb.PNG", "16bit.png", "layer.png"):
        assert torch.equal(load_mask(tmp_path / name, frames=3), expected), name
    np.save(tmp_path / "m.npy", (grey >= 128).astype(np.uint8))
    assert torch.equal(load_mask(tmp_path / "m.npy", frames=3), expected)
    assert torch.equal(load_mask(tmp_path / "m.npy", frames=3, size=(4, 6)), expected)
    # Not fitted as an image is, and named by its own shape, not the (1, 3, 4, 6) repeated.
    with pytest.raises(ValueError, match=r"m\.npy is one frame's mask \(H, W\) = \(4, 6\), "
                                         r"the clip's frames are \(4, 5\): a 2-D \.npy mask "
                                         r"must have their size \(an image mask is fitted to "
                                         r"it\)$"):
        load_mask(tmp_path / "m.npy", frames=3, size=(4, 5))
    with pytest.raises(ValueError, match=r"m\.png is one frame's mask, which holds in every "
                                         r"frame: give the number of frames"):
        load_mask(tmp_path / "m.png")


def test_an_image_mask_of_another_size_is_fitted_as_the_clips_frames_are(tmp_path):
    """Resized to the clip's (H, W) as its frames are, the aspect not kept: a pixel there is
    missing wherever the frames' bilinear resize blends a missing pixel of the image into it.
    Each of the 4 x 4 pixels reads the image rows and columns whose centres lie within 2 rows
    and 3 columns of its own (scales 2 and 3): the corner pixel reaches row 0 and column 0 only,
    the 2 x 3 block at rows 2-3, columns 3-5 reaches rows 0-2 and columns 0-2. A box filter
    (the image pixels inside each) marked (0, 0) and (1, 1) alone, the block's blended ring in
    the frames left observed."""
    grey = np.zeros((8, 12), np.uint8)
    grey[0, 0] = 255
    grey[2:4, 3:6] = 255
    Image.fromarray(grey).save(tmp_path / "m.png")
    known = load_mask(tmp_path / "m.png", frames=2, size=(4, 4))
    # One int is a square, as a clip's size is; it failed as "'int' object is not iterable".
    assert torch.equal(load_mask(tmp_path / "m.png", frames=2, size=4), known)
    with pytest.raises(ValueError, match=r"^size must be a positive int or a pair \(H, W\)"):
        load_mask(tmp_path / "m.png", frames=2, size=(0, 0))
    missing = torch.zeros(4, 4, dtype=torch.bool)
    missing[0:3, 0:3] = True
    assert known.shape == (1, 2, 4, 4) and torch.equal(~known[0, 1], missing)
    # The same pixels as those of frames of that occluder, white on black, read at that size.
    (tmp_path / "frames").mkdir()
    for name in ("f1.png", "f2.png"):
        Image.fromarray(grey).save(tmp_path / "frames" / name)
    frames = load_video(tmp_path / "frames", size=(4, 4))
    assert torch.equal(frames[0] > -1, ~known[0])


def test_one_missing_pixel_among_many_stays_missing_when_fitted(tmp_path):
    """Each of the 2 x 2 pixels blends hundreds of the 48 x 48 image pixels; one missing among
    them is a third of a grey level, which 8 bits rounded to 0: the pixel was observed."""
    grey = np.zeros((48, 48), np.uint8)
    grey[40, 5] = 255
    Image.fromarray(grey).save(tmp_path / "dot.png")
    expected = torch.tensor([[True, True], [False, True]])
    assert torch.equal(load_mask(tmp_path / "dot.png", frames=1, size=(2, 2))[0, 0], expected)


def test_an_image_of_levels_0_and_1_is_refused_as_all_black(tmp_path):
    """A 0/1 array saved as an image (1 = missing, as a .npy mask's) was read as observed
    everywhere: "the mask hides nothing", the cause not named."""
    grey = np.zeros((4, 6), np.uint8)
    grey[1, 2] = 1
    Image.fromarray(grey).save(tmp_path / "m.png")
    with pytest.raises(ValueError, match=r"^mask image .*m\.png holds only the grey levels 0 and "
                                         r"1, both black \(observed\): draw the missing pixels "
                                         r"white \(255; multiply a 0/1 array by 255 before "
                                         r"saving it as an image\)$"):
        load_mask(tmp_path / "m.png", frames=1)
    # One level above 1 and it is a picture like any other: its levels under 128 observed.
    grey[3, 0] = 2
    Image.fromarray(grey).save(tmp_path / "m.png")
    assert bool(load_mask(tmp_path / "m.png", frames=1).all())
    # Saved 16 bits deep, the 1s were scaled to the 8-bit level 0 before the check above saw
    # them, and the mask was again read as hiding nothing; white is 65535 there.
    grey[3, 0] = 0
    Image.fromarray(grey.astype(np.uint16)).save(tmp_path / "m16.png")
    with pytest.raises(ValueError, match=r"^mask image .*m16\.png holds only the grey levels 0 "
                                         r"and 1, both black \(observed\): draw the missing "
                                         r"pixels white \(65535; multiply a 0/1 array by 65535 "
                                         r"before saving it as an image\)$"):
        load_mask(tmp_path / "m16.png", frames=1)


def test_an_animated_image_mask_is_refused_naming_the_layout_of_a_mask_per_frame(tmp_path):
    """An animated GIF, a mask per frame as a user may draw one, was refused with "save the one
    wanted as an image": one frame then held in every frame, a fixed occluder, not the mask
    drawn."""
    frames = [np.zeros((8, 8), np.uint8) for _ in range(3)]
    for t, frame in enumerate(frames):
        frame[t:t + 2, t:t + 2] = 255
    first, *rest = (Image.fromarray(frame) for frame in frames)
    first.save(tmp_path / "m.gif", save_all=True, append_images=rest)
    with pytest.raises(ValueError, match=r"^mask image .*m\.gif is an animation \(several "
                                         r"frames\): an image mask is one frame's, held in every "
                                         r"frame; a mask per frame is a \.npy array \(T, H, W\), "
                                         r"1 = missing$"):
        load_mask(tmp_path / "m.gif", frames=3)


def test_a_multi_page_tiff_mask_with_a_page_pillow_cannot_decode_is_refused_naming_it(
        tmp_path):
    """A TIFF of two pages, one in a layout Pillow does not decode (1-bit
    PhotometricInterpretation 4), refused by read_image as a multi-page file, then failed with
    a bare SyntaxError ('unknown pixel mode') from the mask's test for an animation."""
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(np.full((8, 8), 200, np.uint8))
        tif.write(np.ones((8, 8), bool), photometric=4)
    with pytest.raises(ValueError, match=r"pages\.tif: it holds 2 frames"):
        load_mask(path, frames=3, size=(8, 8))


def test_a_mask_file_that_fails_to_read_is_a_value_error_naming_it(unreadable_npy):
    with pytest.raises(ValueError, match=r"unreadable\.npy: not a numeric \.npy array "
                                         r"\(\[Errno 5\]"):
        load_mask(unreadable_npy)


def test_an_npz_archive_named_npy_is_refused_as_a_mask(tmp_path):
    # np.load returned the archive, open, and the loader failed on it with AttributeError.
    np.savez(tmp_path / "masks.npz", missing=np.zeros((3, 4, 5), np.uint8))
    (tmp_path / "masks.npz").rename(tmp_path / "masks.npy")
    with pytest.raises(ValueError, match=r"masks\.npy: not a numeric \.npy array"):
        load_mask(tmp_path / "masks.npy")


def test_an_npz_archive_is_named_as_no_mask_file(tmp_path) -> None:
    """Read as a MATLAB file, it was "cannot read MATLAB file masks.npz: Unknown mat file
    type, version 44, 32"."""
    np.savez(tmp_path / "masks.npz", masks=np.zeros((1, 4, 5), np.uint8))
    with pytest.raises(ValueError, match=r"^.*masks\.npz: a \.npz file is no mask file; masks "
                                         r"are \.mat \(H, W, T\[, C\]\), \.npy"):
        load_mask(tmp_path / "masks.npz")
    with pytest.raises(FileNotFoundError, match="mask file not found"):
        load_mask(tmp_path / "absent.npz")


# ---------------------------------------------------------------------------------------------
# Generated masks
# ---------------------------------------------------------------------------------------------


def test_missing_frames():
    known = missing_frames(10, 6, 7, fraction=0.5, generator=gen(0))
    assert known.shape == (10, 6, 7) and known.dtype == torch.bool
    per_frame = known.float().mean(dim=(1, 2))
    assert set(per_frame.tolist()) <= {0.0, 1.0} and (per_frame == 0).sum() == 5
    assert torch.equal(known, missing_frames(10, 6, 7, fraction=0.5, generator=gen(0)))
    assert not torch.equal(known, missing_frames(10, 6, 7, fraction=0.5, generator=gen(1)))
    known[0, 0, 0] = ~known[0, 0, 0]  # a mask of its own: one entry changes alone
    assert (known != missing_frames(10, 6, 7, fraction=0.5, generator=gen(0))).sum() == 1


def test_missing_frames_keep_ends():
    for seed in range(5):
        known = missing_frames(6, 2, 2, fraction=4 / 6, keep_ends=True, generator=gen(seed))
        assert known[0].all() and known[-1].all() and (~known[1:-1]).all()
    with pytest.raises(ValueError, match=r"at most 4 frames"):
        missing_frames(6, 2, 2, fraction=5 / 6, keep_ends=True)
    for fraction in (1.5, "0.5", True):  # a string failed in a comparison, True was 1
        with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\]"):
            missing_frames(6, 2, 2, fraction=fraction)
    # A 0-d tensor passes the check as the number it holds: it failed after it, in round().
    for draw in (missing_frames, salt_and_pepper):
        assert torch.equal(draw(6, 2, 2, fraction=torch.tensor(0.5), generator=gen(0)),
                           draw(6, 2, 2, fraction=0.5, generator=gen(0)))


@pytest.mark.parametrize("moving", [True, False])
def test_occluded_region(moving):
    known = occluded_region(12, 20, 30, size=(5, 8), moving=moving, generator=gen(0))
    assert known.shape == (12, 20, 30) and known.dtype == torch.bool
    corners = set()
    for frame in ~known:
        rows, cols = torch.nonzero(frame, as_tuple=True)
        assert len(rows) == 40 and rows.max() - rows.min() == 4 and cols.max() - cols.min() == 7
        corners.add((rows.min().item(), cols.min().item()))
    assert (len(corners) > 1) == moving
    again = occluded_region(12, 20, 30, size=(5, 8), moving=moving, generator=gen(0))
    assert torch.equal(known, again)
    assert not torch.equal(known, occluded_region(12, 20, 30, size=(5, 8), moving=moving,
                                                  generator=gen(1)))


def test_occluded_region_shared_geometry_fraction():
    known = occluded_region(70, 150, 150, size=60, generator=gen(0))
    assert 1 - known.float().mean().item() == pytest.approx(0.16)
    with pytest.raises(ValueError, match=r"does not fit"):
        occluded_region(2, 10, 10, size=11)


@pytest.mark.parametrize("block", [1, 4])
def test_salt_and_pepper(block):
    known = salt_and_pepper(5, 16, 24, fraction=0.25, block=block, generator=gen(0))
    assert known.shape == (5, 16, 24) and known.dtype == torch.bool
    assert ((~known).float().mean(dim=(1, 2)) == 0.25).all()  # exact, per frame
    if block > 1:  # constant on every block x block tile
        tiles = known.reshape(5, 16 // block, block, 24 // block, block)
        assert (tiles == tiles[:, :, :1, :, :1]).all()
    assert torch.equal(known, salt_and_pepper(5, 16, 24, fraction=0.25, block=block,
                                              generator=gen(0)))
    assert not torch.equal(known, salt_and_pepper(5, 16, 24, fraction=0.25, block=block,
                                                  generator=gen(1)))
    assert not torch.equal(known[0], known[1])  # drawn per frame


def test_salt_and_pepper_rounds_its_count_of_tiles():
    known = salt_and_pepper(1, 1, 10, fraction=0.27, generator=gen(0))
    assert int((~known).sum()) == 3  # round(2.7), not 2


def test_salt_and_pepper_ragged_edges():
    known = salt_and_pepper(2, 10, 7, fraction=1.0, block=4)
    assert known.shape == (2, 10, 7) and not known.any()
    assert known.is_contiguous()  # not a view of the larger tiled mask


# ---------------------------------------------------------------------------------------------
# Shape check
# ---------------------------------------------------------------------------------------------


def test_check_mask_matches():
    video = torch.zeros(3, 4, 6, 8)
    check_mask_matches(torch.ones(4, 6, 8, dtype=torch.bool), video)
    check_mask_matches(torch.ones(3, 4, 6, 8, dtype=torch.bool), video)
    check_mask_matches(torch.ones(1, 4, 6, 8, dtype=torch.bool), video.unsqueeze(0))
    with pytest.raises(ValueError, match=r"known \(4, 6, 9\) does not match video \(3, 4, 6, 8\)"):
        check_mask_matches(torch.ones(4, 6, 9, dtype=torch.bool), video)
    with pytest.raises(ValueError, match=r"known \(2, 3, 4, 6, 8\) does not match"):
        check_mask_matches(torch.ones(2, 3, 4, 6, 8, dtype=torch.bool), video)  # would grow it
    with pytest.raises(ValueError, match=r"bool tensor .* got torch.float32"):
        check_mask_matches(torch.ones(4, 6, 8), video)


def test_missing_frames_rounds_half_frames() -> None:
    """round(0.5 * 7) = 4 frames: rounded, not truncated to 3."""
    known = missing_frames(7, 2, 2, fraction=0.5, generator=gen(0))
    assert int((~known[:, 0, 0]).sum()) == round(0.5 * 7) == 4


def test_fraction_zero_hides_nothing() -> None:
    """Fraction 0 is allowed ([0, 1] is closed) and hides nothing."""
    assert missing_frames(5, 3, 3, fraction=0.0, generator=gen(0)).all()
    assert salt_and_pepper(5, 3, 3, fraction=0.0, generator=gen(0)).all()


def test_occluded_region_reaches_the_last_position_and_fills_the_frame() -> None:
    """Corners span 0..H - h inclusive: a block the frame's size fits, and a smaller one
    reaches the last position (each corner of the frame is hidden in some frame)."""
    assert not occluded_region(2, 5, 6, size=(5, 6), generator=gen(0)).any()
    known = occluded_region(200, 5, 5, size=4, generator=gen(1))
    hidden_corner = ~known[:, [0, 4], :][:, :, [0, 4]]  # (T, 2, 2): the four corners
    assert hidden_corner.any(0).all()  # each corner hidden in some frame


def test_fixed_occluded_region_draws_row_and_column_independently() -> None:
    """moving=False: the corner's row and column are separate draws, not one draw for both
    (which would put every corner on the diagonal)."""
    corners = []
    for seed in range(20):
        hidden = ~occluded_region(3, 10, 10, size=2, moving=False, generator=gen(seed))[0]
        rows, cols = hidden.nonzero(as_tuple=True)
        corners.append((int(rows.min()), int(cols.min())))
    assert any(top != left for top, left in corners)


def test_occluded_region_names_a_bool_block_size() -> None:
    """True was taken for a block of 1; the sizes are checked as checks.as_size checks them
    everywhere else."""
    with pytest.raises(ValueError, match=r"size must be a positive int or a pair \(H, W\) of "
                                         r"them, got True"):
        occluded_region(2, 4, 4, size=True)


def test_occluded_region_takes_a_numpy_int_for_a_square_block() -> None:
    """It failed ("'numpy.int64' object is not iterable"), where as_int takes numpy ints."""
    assert torch.equal(occluded_region(3, 5, 5, size=np.int64(2), generator=gen(0)),
                       occluded_region(3, 5, 5, size=2, generator=gen(0)))


@pytest.mark.parametrize("make", [
    lambda: missing_frames(0, 4, 4, fraction=0.5),
    lambda: occluded_region(4, 0, 4, size=0),
    lambda: salt_and_pepper(4, 4, 0, fraction=0.5),
    lambda: salt_and_pepper(4, 4, 4, fraction=0.5, block=0),
])
def test_masks_of_an_empty_dimension_are_refused(make) -> None:
    with pytest.raises(ValueError, match=r"([THW]|block) must be an int >= 1, got 0"):
        make()

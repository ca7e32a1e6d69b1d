"""Video IO: round trips on tiny generated clips in tmp_path, frame folders, bad input, and the
real clips of ../shared/data/video (skipped when absent)."""

from __future__ import annotations

import gc
import multiprocessing
import os
import re
import struct
import threading
import time
import warnings
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch
from PIL import Image, ImageFont

from stgconv.io import video as video_io
from stgconv.io.image import from_levels
from stgconv.io.video import (
    COMPARISON_GAP,
    _shortfall,
    _wrap,
    available_codecs,
    check_fps,
    frame_rate,
    load_video,
    read_frames,
    save_comparison,
    save_video,
    to_uint8,
)

T, H, W = 8, 32, 32


def quantised(video: torch.Tensor) -> torch.Tensor:
    """What a lossless writer stores: the uint8 values, back in [-1, 1], as (3, T, H, W)."""
    return torch.from_numpy(to_uint8(video)).permute(3, 0, 1, 2).float() / 127.5 - 1.0


@pytest.fixture
def noise_clip() -> torch.Tensor:
    """(3, T, H, W) i.i.d. noise: every uint8 value matters, only a lossless codec keeps it."""
    return torch.rand(3, T, H, W, generator=torch.Generator().manual_seed(0)) * 2 - 1


@pytest.fixture
def smooth_clip() -> torch.Tensor:
    """(3, T, H, W) moving colour waves: what lossy codecs are made for."""
    t = torch.arange(T, dtype=torch.float32)[:, None, None]
    y = torch.arange(H, dtype=torch.float32)[None, :, None]
    x = torch.arange(W, dtype=torch.float32)[None, None, :]
    return torch.stack([0.8 * torch.sin(x / 5 + y / 9 + t / 3 + c) for c in range(3)])


@pytest.fixture
def few_colour_clip() -> torch.Tensor:
    """(3, T, H, W) with 100 colours per frame and two identical consecutive frames (2 and 3)."""
    g = torch.Generator().manual_seed(1)
    palette = torch.randint(0, 256, (100, 3), generator=g)
    index = torch.randint(0, 100, (T, H, W), generator=g)
    index[3] = index[2]
    return palette[index].permute(3, 0, 1, 2).float() / 127.5 - 1.0


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------


def test_ffv1_mkv_round_trip_is_exact(tmp_path, noise_clip):
    path = save_video(noise_clip, tmp_path / "clip.mkv")
    assert path == tmp_path / "clip.mkv"
    assert "ffv1" == available_codecs(".mkv")[0] == available_codecs(".MKV")[0]
    loaded = load_video(path)
    assert loaded.shape == (3, T, H, W) and loaded.dtype == torch.float32
    assert torch.equal(loaded, quantised(noise_clip))
    assert files_in(tmp_path) == ["clip.mkv"]  # no temporary file left beside it


def test_a_long_read_hands_freed_memory_back_every_few_frames(tmp_path, monkeypatch) -> None:
    """Each frame is converted through full-size arrays freed at once, which glibc kept in its
    heap: a 60 s 1080p clip read whole grew the process to 17.6 GB (1.06 GB trimmed; measured,
    in _release_freed_memory). A file's reader and a frame folder's hand it back every
    TRIM_EVERY frames made arrays, the frames read as before (counted by the frames decoded,
    a clip read at half its rate, every other frame kept, never reached a multiple)."""
    n = 2 * video_io.TRIM_EVERY + 3
    clip = torch.linspace(-1, 1, n).view(1, n, 1, 1).expand(3, n, 4, 4).contiguous()
    path = save_video(clip, tmp_path / "clip.mkv")
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, frame in enumerate(to_uint8(clip)):
        Image.fromarray(frame).save(folder / f"f{t}.png")
    trims = []
    monkeypatch.setattr(video_io, "_release_freed_memory", lambda: trims.append(None))
    for source in (path, folder):
        trims.clear()
        assert torch.equal(load_video(source), quantised(clip))
        assert len(trims) == 2, source
    trims.clear()
    assert torch.equal(load_video(path, fps=12.5), quantised(clip)[:, ::2])
    assert len(trims) == 1  # 34 frames made arrays


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_libx264rgb_qp0_round_trip_is_exact(tmp_path, noise_clip, suffix):
    if "libx264rgb" not in available_codecs(suffix):
        pytest.skip("this PyAV build has no libx264rgb encoder")
    path = save_video(noise_clip, tmp_path / f"clip{suffix}", codec="libx264rgb")
    assert torch.equal(load_video(path), quantised(noise_clip))


@pytest.mark.parametrize("name", ["a:b.mkv", "file:other.mkv", "concat:other.mkv"])
def test_a_name_with_a_colon_reads_that_file(tmp_path, noise_clip, monkeypatch, name):
    # FFmpeg takes the text before ':' for a protocol: "a:b.mkv" was "Protocol not found",
    # "file:other.mkv" read other.mkv.
    monkeypatch.chdir(tmp_path)
    save_video(noise_clip[:, :2], "other.mkv")
    save_video(noise_clip, name)
    assert torch.equal(load_video(name), quantised(noise_clip))
    assert frame_rate(name) == 25


def test_grey_video_round_trip(tmp_path, noise_clip):
    grey = noise_clip[:1]
    path = save_video(grey, tmp_path / "grey.mkv")
    assert torch.equal(load_video(path, channels=1), quantised(grey)[:1])
    rgb = load_video(path)  # written as RGB with equal channels
    assert rgb.shape == (3, T, H, W) and torch.equal(rgb[0], rgb[2])


@pytest.mark.parametrize(
    "name, codec", [("clip.mp4", None), ("clip.mp4", "mpeg4"), ("clip.mp4", "h264"),
                    ("clip.webm", None), ("clip.mkv", "libvpx")]
)
def test_lossy_round_trip_within_tolerance(tmp_path, smooth_clip, name, codec):
    if codec is None and not available_codecs(Path(name).suffix):
        pytest.skip(f"no encoder for {name} in this PyAV build")
    path = save_video(smooth_clip, tmp_path / name, codec=codec, fps=10)
    loaded = load_video(path)
    assert loaded.shape == smooth_clip.shape
    # Mean error measured here: 4.6-4.7/255 for the MP4 codecs, 2.2 for VP8/VP9 (chroma
    # subsampling dominates); MPEG-4 without the fixed quantiser 2: 7.5.
    error = (loaded - smooth_clip).abs().mean().item() * 127.5
    assert error < 6.0, f"{codec or 'default'} mean abs error {error:.1f}/255"


def test_gif_round_trip_is_exact_and_keeps_repeated_frames(tmp_path, few_colour_clip):
    path = save_video(few_colour_clip, tmp_path / "clip.gif", fps=20)
    loaded = load_video(path)
    # Pillow's GIF writer would merge frames 2 and 3 into one; ours keeps T.
    assert loaded.shape == (3, T, H, W)
    assert torch.equal(loaded, quantised(few_colour_clip))
    with Image.open(path) as image:
        assert image.n_frames == T  # and other readers agree


def test_values_outside_range_are_clamped(tmp_path, noise_clip):
    path = save_video(noise_clip * 3, tmp_path / "clip.mkv")
    assert torch.equal(load_video(path), quantised(noise_clip * 3).clamp(-1, 1))
    assert load_video(path).abs().max() == 1.0


def test_save_comparison_layout(tmp_path, noise_clip):
    narrow = noise_clip[:1, :, :, :19]  # grey and narrower: C and W may differ
    path = save_comparison([noise_clip, narrow], tmp_path / "cmp.mkv", fps=5)
    loaded = load_video(path)
    assert loaded.shape == (3, T, H, W + COMPARISON_GAP + 20)  # padded to an even width
    assert torch.equal(loaded[:, :, :, :W], quantised(noise_clip))
    assert (loaded[:, :, :, W:W + COMPARISON_GAP] == 1).all()  # white gap
    assert torch.equal(loaded[:, :, :, W + COMPARISON_GAP:-1], quantised(narrow))  # grey -> RGB
    assert (loaded[:, :, :, -1] == 1).all()  # white padding


def test_save_comparison_labels_and_even_canvas(tmp_path, smooth_clip):
    odd = smooth_clip[:, :, :, :15]
    path = save_comparison([smooth_clip, odd, smooth_clip], tmp_path / "cmp.mp4",
                           labels=["occluded", "recovered", "ground truth"])
    loaded = load_video(path)
    band = loaded.shape[2] - H
    assert band > 0, "labels add a band above the panels"
    assert loaded.shape[2] % 2 == 0 and loaded.shape[3] % 2 == 0  # padded for yuv420p
    assert loaded.shape[3] in (W + 15 + W + 2 * COMPARISON_GAP, W + 15 + W + 2 * COMPARISON_GAP + 1)
    assert (loaded[:, :, :band] < 0.9).any(), "label text is drawn"


def test_labels_wider_than_their_panel_wrap_onto_more_lines(tmp_path, smooth_clip):
    narrow_clip = smooth_clip[:, :, :, :20]
    short = load_video(save_comparison([narrow_clip] * 3, tmp_path / "short.mkv",
                                       labels=["a", "b", "c"]))
    long = load_video(save_comparison([narrow_clip] * 3, tmp_path / "long.mkv",
                                      labels=["occluded", "recovered", "ground truth"]))
    one_line, wrapped = short.shape[2] - H, long.shape[2] - H
    # "recovered" is about 50 pixels wide in the default font: 3 lines in an 18-pixel panel.
    assert wrapped >= 3 * one_line - 6, (one_line, wrapped)
    # Every line is drawn: the band has ink in its lower third too.
    assert (long[:, :, 2 * wrapped // 3:wrapped] < 0.5).any()


def test_each_label_is_drawn_above_its_own_panel(tmp_path):
    clip = torch.zeros(3, 2, 16, 32)
    loaded = load_video(save_comparison([clip] * 3, tmp_path / "cmp.mkv", labels=["", "", "x"]))
    ink = (loaded[:, 0, :loaded.shape[2] - 16] < -0.5).any(0)  # black in the white band
    _, columns = np.nonzero(ink.numpy())
    third = 2 * (32 + COMPARISON_GAP)  # where the third panel starts
    assert len(columns) and columns.min() >= third and columns.max() < third + 32
    # A label wider than its 4-pixel panel is cut at the panel's edge, not drawn into the gap.
    loaded = load_video(save_comparison([torch.zeros(3, 1, 16, 4), torch.zeros(3, 1, 16, 16)],
                                        tmp_path / "narrow.mkv", labels=["W", ""]))
    _, columns = np.nonzero((loaded[:, 0, :loaded.shape[2] - 16] < -0.5).any(0).numpy())
    assert len(columns) and columns.max() < 4
    # Panels of other widths: the label is above the second, narrow panel, not at the width
    # of the first panel's tile.
    loaded = load_video(save_comparison([torch.zeros(3, 2, 16, 40), torch.zeros(3, 2, 16, 8)],
                                        tmp_path / "two.mkv", labels=["", "x"]))
    _, columns = np.nonzero((loaded[:, 0, :loaded.shape[2] - 16] < -0.5).any(0).numpy())
    assert len(columns) and columns.min() >= 40 + COMPARISON_GAP


def test_a_label_band_is_as_high_as_the_label_of_most_lines() -> None:
    """Each line takes the font's height and 2 pixels between lines; the band (2 pixels in)
    is as high as the label wrapped onto most lines, wherever its panel is."""
    font = ImageFont.load_default()
    width = int(font.getlength("ab")) + 3  # "ab" fits 2 pixels in; "ab ab" takes two lines
    line = int(font.getbbox("Ag")[3]) + 2
    heights = [video_io._label_band(labels, [width] * len(labels)).shape[1]
               for labels in (["ab"], ["ab ab"], ["ab", "ab ab"], ["ab ab", "ab"])]
    assert heights == [line + 2] + [2 * line + 2] * 3


def test_a_label_wraps_before_it_reaches_its_panel_edge(tmp_path):
    """A label is drawn 2 pixels in from its panel's left edge: one as wide as the panel
    wraps, rather than losing its last pixels at the edge."""
    width = int(ImageFont.load_default().getlength("ab")) + 1
    clip = torch.zeros(3, 1, 8, width)
    one, two = (load_video(save_comparison([clip], tmp_path / f"{label}.mkv", labels=[label]))
                for label in ("a", "ab"))
    assert two.shape[2] > one.shape[2]


def test_wrap_keeps_every_character_within_the_width():
    font = ImageFont.load_default()
    for label, width in [("ground truth", 30), ("occluded", 18), ("a b c", 200),
                         ("motion compensated", 50), ("x", 1)]:
        lines = _wrap(label, width, font)
        assert "".join(lines).replace(" ", "") == label.replace(" ", "") and all(lines)
        assert all(font.getlength(line) <= width or len(line) == 1 for line in lines), lines
    assert _wrap("a b c", 200, font) == ["a b c"]
    assert _wrap(" a  b ", 200, font) == ["a b"]  # runs of spaces are one
    assert _wrap("", 10, font) == [""]


def test_save_comparison_rejects_mismatched_clips(tmp_path, noise_clip):
    with pytest.raises(ValueError, match=r"same T and H"):
        save_comparison([noise_clip, noise_clip[:, :4]], tmp_path / "cmp.mp4")
    with pytest.raises(ValueError, match=r"2 labels for 1 videos"):
        save_comparison([noise_clip], tmp_path / "cmp.mp4", labels=["a", "b"])
    with pytest.raises(ValueError, match=r"needs at least one video"):
        save_comparison([], tmp_path / "cmp.mp4")
    with pytest.raises(ValueError, match=r"^videos\[1\]: expected a video of shape"):
        save_comparison([noise_clip, noise_clip[:2]], tmp_path / "cmp.mp4")
    assert files_in(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# Frame range, count, resize, fps
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def ramp_file(tmp_path) -> Path:
    """Lossless clip whose frame t has the constant value of frame index t (0, 30, 60, ...)."""
    values = torch.arange(T, dtype=torch.float32) * 30 / 127.5 - 1.0
    video = values[None, :, None, None].expand(3, T, 12, 16).contiguous()
    return save_video(video, tmp_path / "ramp.mkv", fps=25)


def frame_ids(video: torch.Tensor) -> list[int]:
    return (((video[0, :, 0, 0] + 1) * 127.5).round() / 30).round().int().tolist()


def test_frame_range_and_count(ramp_file):
    assert frame_ids(load_video(ramp_file)) == list(range(T))
    assert frame_ids(load_video(ramp_file, start_frame=2, n_frames=3)) == [2, 3, 4]
    assert frame_ids(load_video(ramp_file, start_frame=5)) == [5, 6, 7]


def test_fps_resampling_picks_frames(ramp_file):
    # 25 -> 10 fps: output k is source floor(k * 2.5).
    assert frame_ids(load_video(ramp_file, fps=10)) == [0, 2, 5, 7]
    assert frame_ids(load_video(ramp_file, fps=50, n_frames=5)) == [0, 0, 1, 1, 2]
    assert frame_ids(load_video(ramp_file, fps=12.5, start_frame=1)) == [1, 3, 5, 7]


@pytest.mark.parametrize("source", ["file", "folder"])
def test_load_video_converts_the_frames_one_by_one(tmp_path, noise_clip, monkeypatch,
                                                   source: str) -> None:
    """The levels read_frames stacks, converted by from_levels, bit for bit and in the layout
    of their view as (C, T, H, W), but never stacked: stacked and converted whole they peaked
    at 13-14 bytes a value, 4-5 a frame at a time. Frames served twice (fps above the
    source's) and read-only Pillow frames (no warning) too."""
    if source == "file":
        path, options = save_video(noise_clip, tmp_path / "noise.mkv", fps=25), {"fps": 50}
    else:
        path, options = tmp_path / "frames", {}
        path.mkdir()
        for t, frame in enumerate(to_uint8(noise_clip)):
            Image.fromarray(frame).save(path / f"f{t}.png")
    expected = from_levels(torch.from_numpy(read_frames(path, **options)).permute(3, 0, 1, 2)
                           .float())
    stacked, stack = [], np.stack
    monkeypatch.setattr(np, "stack", lambda arrays, *args, **settings:
                        stacked.append(len(arrays)) or stack(arrays, *args, **settings))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clip = load_video(path, **options)
    assert torch.equal(clip, expected) and clip.stride() == expected.stride()
    assert stacked == []


def test_load_video_lets_each_frames_levels_go_once_converted(monkeypatch) -> None:
    """Each frame's levels are freed as soon as they are converted (last frame first), not
    held to the end beside the whole float clip."""
    import weakref

    from stgconv.io import video

    frames = [np.full((2, 3, 3), 10 * t, np.uint8) for t in range(4)]
    alive = [weakref.ref(frame) for frame in frames]
    monkeypatch.setattr(video, "_frames", lambda path, **options: frames)
    held = []
    monkeypatch.setattr(video, "from_levels", lambda levels: held.append(
        sum(frame() is not None for frame in alive)) or from_levels(levels))
    clip = load_video("clip.mkv")
    assert held == [3, 2, 1, 0]  # the frames not yet converted; none once each is
    assert clip[:, :, 0, 0].tolist() == [[from_levels(torch.tensor(10.0 * t)).item()
                                          for t in range(4)]] * 3


def test_load_video_is_float32_whatever_torchs_default_dtype(tmp_path, noise_clip) -> None:
    """float32 levels and clip, as before (float64 arithmetic rounds half the levels to other
    float32 pixels), under a caller's ``torch.set_default_dtype(torch.float64)``."""
    path = save_video(noise_clip, tmp_path / "noise.mkv")
    expected = from_levels(torch.from_numpy(read_frames(path)).float()).permute(3, 0, 1, 2)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        clip = load_video(path)
    finally:
        torch.set_default_dtype(default)
    assert clip.dtype == torch.float32 and torch.equal(clip, expected)


def test_resize_and_channels(ramp_file, tmp_path, smooth_clip):
    assert load_video(ramp_file, size=10).shape == (3, T, 10, 10)
    assert load_video(ramp_file, size=(6, 20), channels=1).shape == (1, T, 6, 20)
    assert load_video(ramp_file, size=(12, 20)).shape == (3, T, 12, 20)  # the width alone
    # The resize is Pillow's bilinear filter on the uint8 frames.
    path = save_video(smooth_clip, tmp_path / "smooth.mkv")
    frame0 = Image.fromarray(to_uint8(smooth_clip)[0]).resize((24, 16), Image.Resampling.BILINEAR)
    expected = torch.from_numpy(np.array(frame0)).permute(2, 0, 1).float() / 127.5 - 1.0
    assert torch.equal(load_video(path, size=(16, 24), n_frames=1)[:, 0], expected)


def test_a_size_is_height_then_width_for_frames_wider_than_tall(tmp_path) -> None:
    for name in ("f1.png", "f2.png"):
        Image.new("RGB", (6, 4)).save(tmp_path / name)  # W=6, H=4
    assert load_video(tmp_path, size=(6, 4)).shape == (3, 2, 6, 4)


@pytest.mark.parametrize("shape", [(3, 0, 4, 4), (3, 2, 0, 4), (1, 2, 4, 0)])
def test_a_video_with_an_empty_dimension_is_refused(tmp_path, shape) -> None:
    with pytest.raises(ValueError, match=r"video has an empty dimension"):
        save_video(torch.zeros(shape), tmp_path / "empty.mkv")
    assert not (tmp_path / "empty.mkv").exists()


def test_frame_folder(tmp_path, noise_clip):
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = to_uint8(noise_clip[:, :3])
    # Natural order: f2 before f10, whatever the creation order.
    for name, array in zip(["f2.png", "f10.png", "f1.png"], [frames[1], frames[2], frames[0]]):
        Image.fromarray(array).save(folder / name)
    (folder / "notes.txt").write_text("ignored")
    assert torch.equal(load_video(folder), quantised(noise_clip[:, :3]))
    assert torch.equal(load_video(folder, start_frame=1, n_frames=1), quantised(noise_clip[:, 1:2]))
    assert load_video(folder, size=8, channels=1).shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match=r"has 3 frames"):
        load_video(folder, n_frames=4)
    with pytest.raises(ValueError, match=r"has 3 frames \(2 from start_frame\)"):
        load_video(folder, start_frame=1, n_frames=3)
    with pytest.raises(ValueError, match=r"no frame rate"):
        load_video(folder, fps=10)
    assert frame_rate(folder) is None
    Image.fromarray(frames[0][:10]).save(folder / "f11.png")
    with pytest.raises(ValueError, match=r"f11.png.*share a size"):
        load_video(folder)
    with pytest.raises(ValueError, match=r"f11.png.*share a size"):  # resized or not
        load_video(folder, size=8)


def test_a_frame_too_large_to_decode_is_named(tmp_path) -> None:
    """A 60-byte GIF frame declaring 65535 x 65535 pixels: Pillow's guard against it stopped
    the folder's read with a traceback (DecompressionBombError is no OSError)."""
    Image.new("P", (2, 2)).save(tmp_path / "f000.gif")
    raw = bytearray((tmp_path / "f000.gif").read_bytes())
    descriptor = raw.index(b",")  # the image descriptor: left, top, width, height
    raw[6:10] = raw[descriptor + 5:descriptor + 9] = (65535).to_bytes(2, "little") * 2
    (tmp_path / "f000.gif").write_bytes(raw)
    with pytest.raises(ValueError, match=r"cannot read frame image .*f000\.gif: it is too large "
                                         r"to decode"):
        load_video(tmp_path)


def test_empty_frame_folder(tmp_path):
    with pytest.raises(ValueError, match=r"no frame images .* in folder \S+$"):
        load_video(tmp_path)


@pytest.mark.parametrize(("names", "listed"), [
    (["b.mp4", "a.avi"], "a.avi, b.mp4"),
    (["c.mkv", "a.mp4", "d.webm", "b.mov"], "a.mp4, b.mov, c.mkv, ..."),
])
def test_a_folder_of_videos_read_as_one_clip_names_them(tmp_path, names, listed):
    """Training reads such a folder one clip per file; where one clip is read (recover,
    fill-prior) the refusal said only that it holds no frame images."""
    for name in names:
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(ValueError, match=re.escape(
            f"in folder {tmp_path}: it holds videos ({listed}); give one of them")):
        load_video(tmp_path)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def test_an_ffmpeg_error_while_decoding_names_the_stage_and_the_frames_read(
        tmp_path, monkeypatch) -> None:
    """FFmpeg failing once frames decode (a stand-in raises its error as the first frame is
    looked at) is told as a decoding failure after that many frames, not as one to open."""
    import av

    path = save_video(torch.zeros(3, 3, 4, 4), tmp_path / "clip.mkv")

    def fails(frame, path):
        raise av.error.InvalidDataError(-1094995529, "Invalid data found when processing input")

    monkeypatch.setattr(video_io, "_display_turns", fails)
    with pytest.raises(ValueError, match=r"^cannot decode video .*clip\.mkv \(failed after 1 "
                                         r"frames\): .*Invalid data"):
        load_video(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere.mp4"):
        load_video(tmp_path / "nothere.mp4")


def test_garbage_file(tmp_path):
    path = tmp_path / "x.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match=r"cannot open video .*x\.mp4"):
        load_video(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.avi"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.avi: .*; the file is empty \(0 bytes\)$"):
        load_video(path)


def test_an_mp4_cut_before_its_index_is_named_truncated(tmp_path, noise_clip) -> None:
    """Its index written last, an MP4 cut short is no file FFmpeg opens ("Invalid data found
    when processing input", all it said): the boxes it keeps say that it is truncated."""
    data = save_video(noise_clip, tmp_path / "full.mp4").read_bytes()
    assert b"moov" not in data[:64]  # written at the end, as cameras and phones write it
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=r"^cannot open video .*cut\.mp4: .*; it is an MP4 \(or "
                                         r"QuickTime\) file without its index, the 'moov' box .*"
                                         r"it is truncated"):
        load_video(cut)
    # Cut half way through the index: it was opened no more than without it.
    moov = data.rindex(b"moov") - 4
    cut.write_bytes(data[:moov + (len(data) - moov) // 2])
    with pytest.raises(ValueError, match=r"cut\.mp4: .*; it is an MP4 \(or QuickTime\) file "
                                         r"whose last box \('moov'\) runs past the file's end: "
                                         r"it is truncated"):
        load_video(cut)
    # Garbage is told as FFmpeg tells it, with nothing added.
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"ftyp" + bytes(60))
    with pytest.raises(ValueError, match=r"garbage\.mp4: [^;]*$"):
        load_video(garbage)


def test_a_numpy_array_given_as_a_video_is_named_so(tmp_path) -> None:
    """A clip kept as an ``.npy`` array (``--video clip.npy``) was refused in FFmpeg's words
    alone ("Invalid data found when processing input"), which do not say that arrays are not
    read as videos."""
    path = tmp_path / "clip.npy"
    np.save(path, np.zeros((4, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"^cannot open video .*clip\.npy: .*; it is a NumPy "
                                         r"array \(\.npy\), not a video: save its frames as "
                                         r"images in a folder, or as a video file "
                                         r"\(stgconv\.io\.video\.save_video\)$"):
        load_video(path)


def test_an_hdf5_clip_cache_given_as_a_video_is_named_so(tmp_path) -> None:
    """``stgconv recover --video cache.h5`` (a cache of datasets/video/prepare.py) was refused in
    FFmpeg's words alone ("Invalid data found when processing input"), which did not say what
    the file is nor what reads it."""
    path = tmp_path / "cache.h5"
    with h5py.File(path, "w") as h5:
        h5["clips"] = np.zeros((1, 4, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=r"^cannot open video .*cache\.h5: .*; it is an HDF5 "
                                         r"file, not a video: a clip cache \(made by "
                                         r"stgconv\.data\.video\.build_clip_cache\) is training "
                                         r"data, read "
                                         r"as the data\.path of a video config \(data\.kind "
                                         r"video: stgconv train CONFIG --data FILE\)"):
        load_video(path)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".gif"])
def test_truncated_file(tmp_path, noise_clip, suffix):
    # mp4 loses its index (moov at the end); mkv/gif still decode a few frames, which the
    # header's frame count (mkv) or the missing GIF trailer byte give away.
    data = save_video(noise_clip, tmp_path / f"full{suffix}").read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"cut\{suffix}"):
        load_video(cut)


def test_the_first_frames_of_a_gif_cut_short_read(tmp_path, few_colour_clip) -> None:
    # Its missing trailer byte is a shortfall of the whole file: the frames before it are whole.
    data = save_video(few_colour_clip, tmp_path / "full.gif").read_bytes()
    cut = tmp_path / "cut.gif"
    cut.write_bytes(data[:-1])
    assert torch.equal(load_video(cut, n_frames=2), load_video(tmp_path / "full.gif", n_frames=2))
    with pytest.raises(ValueError, match=r"cut\.gif is truncated: it does not end with the GIF"):
        load_video(cut)


def _add_video_and_pcm_tracks(container, codec: str, pix_fmt: str):
    """A 16x16 video track at 10 frames/s and a mono 16-bit PCM track at 8 kHz, added to the
    PyAV ``container`` open for writing: ``(video, audio)`` streams."""
    video = container.add_stream(codec, rate=10)
    video.width = video.height = 16
    video.pix_fmt = pix_fmt
    return video, container.add_stream("pcm_s16le", rate=8000)


def _mux_silence(container, audio, seconds: int, *, chunk: int) -> None:
    """``seconds`` of silence into the PCM track ``audio`` of ``container``, ``chunk`` samples a
    frame, then the track flushed."""
    import av

    for first in range(0, 8000 * seconds, chunk):
        samples = av.AudioFrame.from_ndarray(np.zeros((1, chunk), np.int16), format="s16",
                                             layout="mono")
        samples.sample_rate, samples.pts = 8000, first
        container.mux(audio.encode(samples))
    container.mux(audio.encode())


def test_a_video_track_without_frames_is_named(tmp_path) -> None:
    import av

    # A video track and a second of silence: the file is written once a packet is.
    path = tmp_path / "empty.mkv"
    with av.open(str(path), "w") as container:
        video, audio = _add_video_and_pcm_tracks(container, "ffv1", "bgr0")
        _mux_silence(container, audio, 1, chunk=8000)
        container.mux(video.encode())
    with pytest.raises(ValueError, match=r"no decodable frames in .*empty\.mkv"):
        load_video(path)


def test_resampling_a_file_that_states_no_frame_rate_is_refused(ramp_file, monkeypatch):
    monkeypatch.setattr(video_io, "_rate", lambda stream, path=None: None)
    with pytest.raises(ValueError, match=r"ramp\.mkv does not state its frame rate; cannot "
                                         r"resample to fps=10$"):
        load_video(ramp_file, fps=10)


def test_frame_count_errors(ramp_file):
    with pytest.raises(ValueError, match=r"n_frames must be an int >= 1"):
        load_video(ramp_file, n_frames=0)
    with pytest.raises(ValueError, match=r"start_frame must be an int >= 0"):
        load_video(ramp_file, start_frame=-1)
    with pytest.raises(ValueError, match=rf"has {T} frames"):
        load_video(ramp_file, n_frames=T + 1)
    with pytest.raises(ValueError, match=rf"start_frame={T} but .* only {T} frames"):
        load_video(ramp_file, start_frame=T)
    with pytest.raises(ValueError, match=r"4 available from start_frame at fps=10"):
        load_video(ramp_file, fps=10, n_frames=5)
    with pytest.raises(ValueError, match=r"channels must be 1 or 3"):
        load_video(ramp_file, channels=4)
    with pytest.raises(ValueError, match=r"channels must be 1 or 3"):  # before the file
        load_video(ramp_file.with_name("missing.mp4"), channels=2)
    # Equal to 1, and read grey as if 1 were asked for, as n_frames and start_frame refuse them.
    for channels in (True, 1.0):
        with pytest.raises(ValueError, match=rf"channels must be 1 or 3, got {channels!r}"):
            load_video(ramp_file, channels=channels)
    with pytest.raises(ValueError, match=r"size must be"):
        load_video(ramp_file, size=(0, 4))


def test_unsupported_codec_leaves_no_file(tmp_path, noise_clip):
    with pytest.raises(ValueError, match=r"codec 'ffv1' .*\.mp4.*available: .*mpeg4"):
        save_video(noise_clip, tmp_path / "clip.mp4", codec="ffv1")
    with pytest.raises(ValueError, match=r"codec 'no-such-codec'"):
        save_video(noise_clip, tmp_path / "clip.webm", codec="no-such-codec")
    with pytest.raises(ValueError, match=r"'\.avi'.*\.mp4, \.mkv"):
        save_video(noise_clip, tmp_path / "clip.avi")
    assert files_in(tmp_path) == []


def test_bad_video_leaves_no_file(tmp_path, noise_clip):
    with pytest.raises(ValueError, match=r"even height and width; got H=31"):
        save_video(noise_clip[:, :, :31], tmp_path / "clip.mp4")
    with pytest.raises(ValueError, match=r"NaN"):
        save_video(noise_clip.clone().fill_(float("nan")), tmp_path / "clip.mkv")
    with pytest.raises(ValueError, match=r"\(C=1 or 3, T, H, W\), got \(2, 8, 32, 32\)"):
        save_video(noise_clip[:2], tmp_path / "clip.mkv")
    with pytest.raises(ValueError, match=r"\(C=1 or 3, T, H, W\), got \(1, 3, 8, 32, 32\)"):
        save_video(noise_clip[None], tmp_path / "clip.mkv")  # a batch of one
    assert files_in(tmp_path) == []
    # Odd sizes are fine for lossless mkv and gif.
    save_video(noise_clip[:, :, :31, :17], tmp_path / "odd.mkv")
    assert load_video(tmp_path / "odd.mkv").shape == (3, T, 31, 17)


def test_failed_write_keeps_previous_file(tmp_path, noise_clip):
    path = save_video(noise_clip, tmp_path / "clip.mkv")
    before = path.read_bytes()
    with pytest.raises(ValueError):
        save_video(noise_clip.clone().fill_(float("inf")), path)
    assert path.read_bytes() == before and files_in(tmp_path) == ["clip.mkv"]


# ---------------------------------------------------------------------------------------------
# Real clips (../shared/data/video)
# ---------------------------------------------------------------------------------------------


@pytest.mark.shared_data("video")
@pytest.mark.parametrize("name", ["fire_pot.avi", "flag.avi"])  # msmpeg4v2, mpeg4
def test_real_clip_recovery_protocol(name, shared_data):
    video = load_video(shared_data / "video" / name, n_frames=70, size=150)
    assert video.shape == (3, 70, 150, 150)
    assert video.min() >= -1 and video.max() <= 1
    assert video.std() > 0.05 and (video[:, 1:] - video[:, :-1]).abs().mean() > 0.001  # moves


@pytest.mark.shared_data("video/actions")
def test_real_action_mp4(shared_data):
    path = sorted((shared_data / "video" / "actions").glob("*.mp4"))[0]  # h264
    video = load_video(path, n_frames=12, fps=15, size=(48, 64), channels=1)
    assert video.shape == (1, 12, 48, 64)
    assert video.std() > 0.05


def test_folder_start_frame_at_the_end_names_the_frame_count(tmp_path) -> None:
    for i in range(3):
        Image.fromarray(np.full((4, 6, 3), 40 * i, dtype=np.uint8)).save(tmp_path / f"f{i}.png")
    assert load_video(tmp_path, start_frame=2).shape == (3, 1, 4, 6)
    with pytest.raises(ValueError, match="start_frame=3 but .* has only 3 frames"):
        load_video(tmp_path, start_frame=3)


def test_mkv_cut_after_most_of_its_frames_is_still_truncated(tmp_path) -> None:
    """An mkv states its length only as a duration: one cut at 70% decodes 27 of its 40 frames,
    which end well before it."""
    torch.manual_seed(0)
    data = save_video(torch.rand(3, 40, 16, 16) * 2 - 1, tmp_path / "full.mkv").read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: int(len(data) * 0.7)])
    with pytest.raises(ValueError, match=r"cut\.mkv is truncated or corrupt: its header says the "
                                         r"video ends at 1\.60 s, but the 27 frames"):
        load_video(cut)


@pytest.mark.parametrize("fps", [1e-7, float("inf"), float("nan"), 0, True])
def test_a_frame_rate_no_file_can_store_is_refused(ramp_file, tmp_path, fps) -> None:
    """Reading and writing refuse it alike (it was a ZeroDivisionError or OverflowError, or
    a file silently written at 24 fps)."""
    message = r"fps must be a finite number of at least 1e-6 frames per second"
    with pytest.raises(ValueError, match=message):
        load_video(ramp_file, fps=fps)
    with pytest.raises(ValueError, match=message):  # before the path is looked for
        load_video(tmp_path / "missing.mkv", fps=fps)
    with pytest.raises(ValueError, match=message):
        save_video(torch.zeros(3, 2, 4, 4), tmp_path / "out.mkv", fps=fps)
    assert not list(tmp_path.glob("out*"))


def test_writing_falls_back_to_the_codecs_this_build_has(tmp_path, monkeypatch) -> None:
    # A PyAV build without libx264 writes .mp4 as MPEG-4 Part 2 (the module's table).
    monkeypatch.setattr("stgconv.io.video._has_codec",
                        lambda name, mode: name != "libx264")
    assert available_codecs(".mp4") == ("mpeg4", "libx264rgb")
    with pytest.raises(ValueError, match="codec 'libx264' is not supported for .mp4 files"):
        save_video(torch.zeros(3, 2, 16, 16), tmp_path / "a.mp4", codec="libx264")
    monkeypatch.setattr("stgconv.io.video._has_codec", lambda name, mode: False)
    with pytest.raises(ValueError, match=r"^this PyAV build has no encoder for \.webm files$"):
        save_video(torch.zeros(3, 2, 16, 16), tmp_path / "a.webm")
    assert files_in(tmp_path) == []


def test_mp4_is_written_as_h264_where_the_build_has_it(tmp_path) -> None:
    """The module's table: libx264 first for .mp4, MPEG-4 Part 2 only as the fallback."""
    import av

    if not video_io._has_codec("libx264", "w"):
        pytest.skip("this PyAV build has no libx264")
    path = save_video(torch.zeros(3, 2, 16, 16), tmp_path / "clip.mp4")
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"


def test_a_suffix_in_capitals_is_written_in_its_container(tmp_path) -> None:
    path = save_video(torch.zeros(3, 2, 16, 16), tmp_path / "clip.MP4")
    assert load_video(path).shape == (3, 2, 16, 16)


def test_a_frame_rate_is_kept_as_the_fraction_files_store() -> None:
    # NTSC's 30000/1001 (29.97...) exactly, not 2997/100; the slowest rate taken is 1e-6.
    assert check_fps(30000 / 1001) == Fraction(30000, 1001)
    assert check_fps(1e-6) == Fraction(1, 1_000_000)
    assert check_fps(25) == 25
    # A numpy number (a rate computed with numpy) is taken as the number it is: float32's was
    # Fraction's TypeError, "argument should be a string or a Rational instance".
    assert check_fps(np.float32(12.5)) == Fraction(25, 2)
    assert check_fps(np.float64(30000 / 1001)) == Fraction(30000, 1001)
    assert check_fps(np.int64(24)) == 24


def test_a_gif_faster_than_its_delays_can_say_is_refused(tmp_path) -> None:
    """GIF delays are hundredths of a second: at 240 fps a viewer plays ~10 fps."""
    with pytest.raises(ValueError, match=r"a GIF plays at most 100 frames per second"):
        save_video(torch.zeros(3, 2, 4, 4), tmp_path / "fast.gif", fps=240)
    with pytest.raises(ValueError, match=r"a GIF plays at most 100 frames per second"):
        save_video(torch.zeros(3, 2, 4, 4), tmp_path / "fast.gif", fps=101)
    save_video(torch.zeros(3, 2, 4, 4), tmp_path / "ok.gif", fps=100)
    # A delay is a 16-bit count of hundredths: a slower rate was cut to 655.35 s a frame.
    with pytest.raises(ValueError, match=r"a GIF shows a frame for at most 655\.35 s"):
        save_video(torch.zeros(3, 2, 4, 4), tmp_path / "slow.gif", fps=0.001)
    save_video(torch.zeros(3, 2, 4, 4), tmp_path / "ok.gif", fps=100 / 65535)
    assert not (tmp_path / "slow.gif").exists()


@pytest.mark.parametrize("suffix", [".mkv", ".webm"])
def test_a_matroska_file_faster_than_its_milliseconds_can_say_is_refused(tmp_path,
                                                                         suffix) -> None:
    """Matroska and WebM time frames in whole milliseconds: at 2000 fps (a high-speed camera's
    clip) two frames shared each time, and the file written read back as "truncated or
    corrupt" (10,000 fps: said to be 30,000), where .mp4 keeps any rate."""
    clip = torch.zeros(3, 4, 4, 4)
    with pytest.raises(ValueError, match=rf"{suffix} files \(Matroska\) time frames in whole "
                                         r"milliseconds: at most 1000 frames per second, got "
                                         r"fps=2000; write \.mp4"):
        save_video(clip, tmp_path / f"fast{suffix}", fps=2000)
    assert list(tmp_path.iterdir()) == []
    assert load_video(save_video(clip, tmp_path / f"ok{suffix}", fps=1000)).shape[1] == 4
    assert frame_rate(tmp_path / f"ok{suffix}") == 1000
    assert frame_rate(save_video(clip, tmp_path / "fast.mp4", fps=2000)) == 2000


def test_an_animated_webp_is_named_as_such(tmp_path) -> None:
    """FFmpeg's WebP decoder reads still pictures only: an animated WebP (a web sticker, a GIF's
    modern replacement) failed with "Invalid data found when processing input:
    'avcodec_receive_frame()'", as a damaged file would. The message says what it is and what
    to do; a still WebP reads as a one-frame clip."""
    frames = [Image.new("RGB", (8, 6), (40 * k, 90, 200)) for k in range(3)]
    frames[0].save(tmp_path / "sticker.webp", save_all=True, append_images=frames[1:],
                   duration=100, loop=0)
    with pytest.raises(ValueError, match=r"sticker\.webp .*; it is an animated WebP, whose "
                                         r"frames FFmpeg does not decode; save it as a GIF"):
        load_video(tmp_path / "sticker.webp")
    frames[0].save(tmp_path / "still.webp", lossless=True)
    assert load_video(tmp_path / "still.webp").shape == (3, 1, 6, 8)


def test_a_folder_of_frames_beside_optical_flow_is_refused(tmp_path) -> None:
    """Extraction tools for action recognition write img_00001.jpg beside flow_x_00001.jpg and
    flow_y_00001.jpg: read as one clip in name order, it ran through the flow images first."""
    for i in range(1, 4):
        for series in ("img", "flow_x", "flow_y"):
            Image.new("L", (8, 8), 40 * i).save(tmp_path / f"{series}_{i:05d}.png")
    with pytest.raises(ValueError, match=r"holds frames of 3 series \(flow_x_#\.png, "
                                         r"flow_y_#\.png, img_#\.png\)"):
        load_video(tmp_path)
    for file in tmp_path.glob("flow_*"):
        if file.name != "flow_x_00001.png":
            file.unlink()
    # One flow image left beside the frames: no series of its own, but no frame either.
    with pytest.raises(ValueError, match=r"holds the frames img_#\.png and other images "
                                         r"\(flow_x_00001\.png\)"):
        load_video(tmp_path)
    (tmp_path / "flow_x_00001.png").unlink()
    assert torch.equal(load_video(tmp_path, channels=1)[0, :, 0, 0],
                       torch.tensor([40.0, 80.0, 120.0]) / 127.5 - 1)


def test_a_folder_of_two_short_series_is_refused(tmp_path) -> None:
    """Two cameras' frames, two each: a series is the name up to its last number (cam1_#.png),
    two files make one."""
    for camera in (1, 2):
        for i in range(1, 3):
            Image.new("L", (8, 8), 40 * i).save(tmp_path / f"cam{camera}_{i:03d}.png")
    with pytest.raises(ValueError, match=r"holds frames of 2 series \(cam1_#\.png, cam2_#\.png\)"):
        load_video(tmp_path)
    for file in tmp_path.glob("cam2_*"):
        file.unlink()
    assert load_video(tmp_path).shape == (3, 2, 8, 8)


def test_a_damaged_gif_among_frames_is_named(tmp_path) -> None:
    Image.new("L", (8, 8), 40).save(tmp_path / "f1.gif")
    (tmp_path / "f2.gif").write_bytes(b"GIF89a not really")
    with pytest.raises(ValueError, match=r"cannot read frame image .*f2\.gif"):
        load_video(tmp_path)


def test_a_folder_of_animated_gifs_is_no_folder_of_frames(tmp_path) -> None:
    """Read as frames, each GIF video gave its first frame only; single-frame GIFs remain
    frames."""
    for i, suffix in enumerate([".gif", ".GIF"]):
        save_video(torch.full((3, 4, 8, 8), 0.2 * i), tmp_path / "clips" / f"c{i}{suffix}")
        save_video(torch.full((3, 1, 8, 8), 0.2 * i), tmp_path / "frames" / f"f{i}{suffix}")
    with pytest.raises(ValueError, match=r"clips holds animated GIFs \(c0\.gif, c1\.GIF\), "
                                         r"which are videos"):
        load_video(tmp_path / "clips")
    assert load_video(tmp_path / "frames").shape == (3, 2, 8, 8)


def _write_random_frames(path: Path, n_frames: int, *, shift: int = 0, codec: str = "mpeg4",
                         container_format: str | None = None, size: int = 16,
                         **options: str) -> Path:
    """``n_frames`` random ``size`` x ``size`` frames as MPEG-4 (or ``codec``) at 25 fps in an MP4
    (or ``container_format``), timestamps moved ``shift`` frames earlier: frames before 0 are
    then outside the file's edit list, as in a trimmed MP4."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format=container_format, options=options) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        frames = [av.VideoFrame.from_ndarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
                                             format="rgb24") for _ in range(n_frames)]
        for frame in [*frames, None]:
            for packet in stream.encode(frame):
                packet.pts -= shift
                packet.dts -= shift
                container.mux(packet)
    return path


def test_a_trimmed_mp4_reads_as_the_frames_it_shows(tmp_path) -> None:
    """A trimmed MP4 (``ffmpeg -ss ... -c copy``, a phone's trim) keeps the cut frames in its
    index and hides them by its edit list: whole, read as the 40 frames it shows (it was
    refused as truncated, its index announcing 50)."""
    path = _write_random_frames(tmp_path / "trimmed.mp4", 50, shift=10)
    assert load_video(path).shape == (3, 40, 16, 16)


def test_an_mp4_with_its_index_first_cut_short_is_truncated(tmp_path) -> None:
    """With the index at the front (``movflags=faststart``, as streamed files have it), a cut
    file still announces its full length, and its last frame ends long before it."""
    data = _write_random_frames(tmp_path / "full.mp4", 40, movflags="faststart").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(ValueError, match=r"cut\.mp4 is truncated or corrupt: .*ends at 1\.60 s "
                                         r"\(40 frames\)"):
        load_video(cut)


def test_an_mp4_starting_late_cut_between_frames_is_truncated(tmp_path) -> None:
    """Its video starts at 2 s: the track ends at its start plus its duration (3.6 s), and
    30 whole frames ending at 3.2 s fall short of it (no damaged frame says so)."""
    import av

    path = _write_random_frames(tmp_path / "full.mp4", 40, shift=-50, movflags="faststart")
    with av.open(str(path)) as container:
        ends = sorted(packet.pos + packet.size for packet in container.demux(video=0)
                      if packet.size)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: ends[29]])
    with pytest.raises(ValueError, match=r"ends at 3\.60 s \(40 frames\), but the 30 frames "
                                         r"that decode end at 3\.20 s$"):
        load_video(cut)


def test_a_shortfall_is_judged_by_the_index_where_times_say_nothing() -> None:
    """The rules of _shortfall on stand-ins for a stream and its last frame: without a stated
    end (or frame times) 2% of an index's frames may be missing (at least 1); with every
    indexed frame decoded, an early last frame is no shortfall."""
    stream = SimpleNamespace(frames=100, average_rate=Fraction(25), guessed_rate=None)
    untimed = SimpleNamespace(time=None, duration=None, time_base=None)
    assert _shortfall(stream, None, 98, untimed) is None
    assert _shortfall(stream, None, 97, untimed) == ("its header announces 100 frames but only "
                                                     "97 decode")
    short = SimpleNamespace(frames=10, average_rate=Fraction(25), guessed_rate=None)
    assert _shortfall(short, None, 9, untimed) is None  # 2% of 10 frames rounds up to one
    early = SimpleNamespace(time=2.0, duration=None, time_base=None)  # ends at 2.04 s of 4 s
    assert _shortfall(stream, 4.0, 100, early) is None
    assert "header says the video ends at 4.00 s" in _shortfall(stream, 4.0, 99, early)


def test_a_shortfall_is_judged_by_where_the_last_frame_ends() -> None:
    """With a stated end, the last frame ends at its time plus its own duration (a frame at
    the rate only where it states none) and may end up to half a frame early; a frame
    without a time is judged by the index, whether or not an end is stated."""
    stream = SimpleNamespace(frames=0, average_rate=Fraction(25), guessed_rate=None)

    def last(time: float, duration: int | None = None) -> SimpleNamespace:
        return SimpleNamespace(time=time, duration=duration,
                               time_base=Fraction(1, 2) if duration else None)

    assert _shortfall(stream, 4.0, 10, last(3.5, duration=1)) is None  # 0.5 s: ends at 4 s
    assert _shortfall(stream, 4.0, 10, last(3.95)) is None  # 0.04 s: ends 0.01 s early
    assert _shortfall(stream, 4.0, 10, last(3.93)) == (
        "its header says the video ends at 4.00 s, but the 10 frames that decode end at 3.97 s")
    indexed = SimpleNamespace(frames=100, average_rate=Fraction(25), guessed_rate=None)
    untimed = SimpleNamespace(time=None, duration=None, time_base=None)
    assert _shortfall(indexed, 4.0, 97, untimed) == ("its header announces 100 frames but only "
                                                     "97 decode")


def test_to_uint8_clamps_out_of_range_values() -> None:
    video = torch.tensor([-3.0, -1.0, 0.0, 1.0, 2.0, 3.0]).reshape(1, 1, 2, 3)
    frames = to_uint8(video)
    assert frames.shape == (1, 2, 3, 3)
    np.testing.assert_array_equal(frames[0, ..., 0], [[0, 0, 128], [255, 255, 255]])


def test_a_half_precision_video_converts_as_its_float32_values() -> None:
    """Rounded in half precision, (x + 1) * 127.5 lands a level off for about 4% of values."""
    video = torch.linspace(-1, 1, 1001).reshape(1, 1, 1, 1001)
    for dtype in (torch.float16, torch.bfloat16):
        exact = video.to(dtype).float()
        np.testing.assert_array_equal(to_uint8(video.to(dtype)), to_uint8(exact))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.bool], ids=str)
def test_a_video_that_is_not_floating_point_is_refused(tmp_path, dtype) -> None:
    """Grey levels 0-255 were clamped to white without a word."""
    levels = torch.full((1, 2, 4, 4), 128).to(dtype)
    with pytest.raises(ValueError, match=rf"video must be floating point pixels in \[-1, 1\], "
                                         rf"got {dtype}"):
        to_uint8(levels)
    with pytest.raises(ValueError, match=r"floating point pixels"):
        save_video(levels, tmp_path / "clip.mkv")
    with pytest.raises(ValueError, match=r"videos\[1\]: video must be floating point"):
        save_comparison([levels.float() / 127.5 - 1, levels], tmp_path / "pair.mkv")
    assert files_in(tmp_path) == []


def test_an_encoder_failure_names_the_file_and_codec_and_leaves_no_file(tmp_path,
                                                                        monkeypatch) -> None:
    """FFmpeg's failure to open an encoder (mpeg4 handed yuv444p, which it does not take), or
    to write a rate its container cannot store, is told with the file and codec, and nothing
    is written."""
    monkeypatch.setitem(video_io._ENCODERS, "mpeg4", video_io._Encoder("yuv444p", {}))
    with pytest.raises(ValueError, match=r"^cannot write .*clip\.mp4 with codec mpeg4: "):
        save_video(torch.zeros(3, 2, 16, 16), tmp_path / "clip.mp4", codec="mpeg4")
    assert files_in(tmp_path) == []
    # An MP4 of a frame every 11.6 days: FFmpeg's reason named the temporary it had opened,
    # '.slow.mp4.<pid>-<random>.tmp', a file the user never asked for.
    with pytest.raises(ValueError, match=r"^cannot write .*slow\.mp4 with codec \S+: Invalid "
                                         r"argument$"):
        save_video(torch.zeros(3, 2, 16, 16), tmp_path / "slow.mp4", fps=1e-6)
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("fps, stored", [(65.535, True), (65.536, True), (65.537, False),
                                         (29.97003, False), (65535, True), (65536, False)])
def test_mpeg4_refuses_up_front_a_rate_its_16_bits_cannot_store(tmp_path, fps: float,
                                                                stored: bool) -> None:
    """The rate's exact fraction needs a numerator of at most 65535 (65.536 is 8192/125):
    a rate past it is named before FFmpeg's bare "Invalid argument", and nothing is written."""
    path = tmp_path / "clip.mp4"
    if stored:
        save_video(torch.zeros(3, 2, 16, 16), path, codec="mpeg4", fps=fps)
        assert frame_rate(path) == check_fps(fps)
    else:
        with pytest.raises(ValueError, match=rf"^codec mpeg4 stores the frame rate as a fraction "
                                             rf"whose numerator is at most 65535; fps={fps} is "
                                             rf"{check_fps(fps)}: give it with fewer"):
            save_video(torch.zeros(3, 2, 16, 16), path, codec="mpeg4", fps=fps)
        assert files_in(tmp_path) == []


def test_yuv420p_refuses_an_odd_width_up_front(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"needs even height and width; got H=4, W=5"):
        save_video(torch.zeros(3, 2, 4, 5), tmp_path / "odd.mp4")
    assert not (tmp_path / "odd.mp4").exists()


def _write_turned(path: Path, frames: np.ndarray, degrees: float, **mirror: bool) -> Path:
    """uint8 ``(T, H, W, 3)`` ``frames`` stored losslessly (FFV1 in MKV) with a display matrix
    asking players to turn them ``degrees`` counter-clockwise, then mirror them, as phones do."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        if not hasattr(stream, "set_display_rotation"):
            pytest.skip("this PyAV cannot write a display matrix (set_display_rotation)")
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "bgr0"
        stream.set_display_rotation(degrees, **mirror)
        for frame in [*frames, None]:
            image = None if frame is None else av.VideoFrame.from_ndarray(frame, format="rgb24")
            for packet in stream.encode(image):
                container.mux(packet)
    return path


@pytest.mark.parametrize(("degrees", "mirror", "upright"), [
    (90, {}, lambda x: np.rot90(x, 1, axes=(1, 2))),
    (-90, {}, lambda x: np.rot90(x, -1, axes=(1, 2))),
    (180, {}, lambda x: x[:, ::-1, ::-1]),
    (0, {"hflip": True}, lambda x: x[:, :, ::-1]),
    (0, {"vflip": True}, lambda x: x[:, ::-1]),
    (90, {"hflip": True}, lambda x: np.rot90(x, 1, axes=(1, 2))[:, :, ::-1]),
])
def test_a_clip_with_a_display_matrix_reads_upright(tmp_path, degrees, mirror, upright) -> None:
    """A phone stores portrait video as landscape frames with a display matrix saying how to
    turn them: read as players show it (it was read sideways), its size the upright frame's."""
    frames = np.random.default_rng(0).integers(0, 256, (3, 8, 12, 3), dtype=np.uint8)
    path = _write_turned(tmp_path / "turned.mkv", frames, degrees, **mirror)
    expected = upright(frames)
    video = load_video(path)
    assert video.shape == (3, 3, *expected.shape[1:3])
    assert torch.equal(video, torch.from_numpy(expected.copy()).permute(3, 0, 1, 2) / 127.5 - 1)
    assert load_video(path, size=(4, 6)).shape == (3, 3, 4, 6)


def test_decoded_frames_are_freed_as_they_are_read(tmp_path, noise_clip) -> None:
    """Reading a frame's display matrix (PyAV's ``frame.side_data``) ties the frame into a
    reference cycle only the cyclic collector frees: read on every frame, a long clip held
    hundreds of full-resolution frames at once. Read once per file, at most that one waits."""
    import av

    path = save_video(noise_clip, tmp_path / "clip.mkv")
    gc.collect()
    gc.disable()
    try:
        load_video(path, size=8)
        # type(), not isinstance(): that reads __class__, and deprecated torch aliases among
        # the objects warn when read.
        waiting = sum(issubclass(type(thing), av.VideoFrame) for thing in gc.get_objects())
    finally:
        gc.enable()
        gc.collect()
    assert waiting <= 1, f"{waiting} of the clip's {T} decoded frames wait for the collector"


def test_a_forked_worker_never_frees_a_decoder_left_to_the_collector(tmp_path,
                                                                    noise_clip) -> None:
    """A decoder in a reference cycle (PyAV leaves such garbage; here a caller's code made
    it) freed by a forked DataLoader worker's collector waited forever for its threads, which
    stayed in the parent; once stgconv has used PyAV, a fork collects the cycles first."""
    import av
    from torch.utils.data import DataLoader

    path = save_video(noise_clip, tmp_path / "clip.mp4")
    gc.disable()
    try:
        reading = av.open(str(path))  # never closed: left open, with its threads, in a cycle
        stream = reading.streams.video[0]
        stream.thread_type = "AUTO"  # decoder threads, as load_video starts them
        frames = reading.decode(stream)
        next(frames)
        cycle = [reading, frames]
        cycle.append(cycle)
        del reading, stream, frames, cycle
        # fork named: Python 3.14's default on Linux (forkserver) and macOS's (spawn) start a
        # fresh interpreter, which holds no decoder, and cannot pickle the lambda.
        loader = DataLoader(list(range(4)), batch_size=2, num_workers=1, timeout=30,
                            multiprocessing_context="fork",
                            worker_init_fn=lambda _: gc.collect())
        assert len(list(loader)) == 2
    finally:
        gc.enable()


def test_pyav_registers_its_fork_hook_once_per_process(tmp_path, noise_clip,
                                                       monkeypatch) -> None:
    """Every read and write imports PyAV through one cached function: a hook registered per
    call would make each later fork collect the cycles once per file ever read."""
    path = save_video(noise_clip, tmp_path / "clip.mkv")  # PyAV used: its hook is in place
    registered = []
    monkeypatch.setattr(os, "register_at_fork", lambda **hooks: registered.append(hooks))
    load_video(path)
    frame_rate(path)
    save_video(noise_clip, tmp_path / "again.mkv")
    assert registered == []


def test_video_is_read_and_written_where_there_is_no_fork(tmp_path, noise_clip,
                                                         monkeypatch) -> None:
    """Windows has no fork, nor ``os.register_at_fork``: PyAV's first use there failed every
    video read and write (AttributeError)."""
    monkeypatch.delattr(video_io.os, "register_at_fork")
    monkeypatch.setattr(video_io, "_fork_collects", False)
    path = save_video(noise_clip, tmp_path / "clip.mkv")
    assert load_video(path).shape == noise_clip.shape


def test_read_frames_are_the_decoded_levels_load_video_scales(tmp_path, noise_clip) -> None:
    """uint8 ``(T, H, W, C)``, as decoded (a quarter of the float clip's memory): the levels
    load_video maps to [-1, 1], exactly those written losslessly."""
    path = save_video(noise_clip, tmp_path / "clip.mkv")
    frames = read_frames(path)
    assert frames.dtype == np.uint8 and frames.shape == (T, H, W, 3)
    assert np.array_equal(frames, to_uint8(noise_clip))
    assert torch.equal(load_video(path), from_levels(torch.from_numpy(frames).float()
                                                     .permute(3, 0, 1, 2)))


def test_threads_first_using_pyav_at_once_register_the_fork_hook_once(monkeypatch) -> None:
    """Two hooks would collect twice per fork; the slow registration below widens the window
    in which a second thread's first use used to register another."""
    registered = []

    def slow_register(**hooks) -> None:
        time.sleep(0.05)
        registered.append(hooks)

    monkeypatch.setattr(video_io.os, "register_at_fork", slow_register)
    monkeypatch.setattr(video_io, "_fork_collects", False)
    start = threading.Barrier(4)

    def first_use() -> None:
        start.wait()
        video_io._pyav()

    threads = [threading.Thread(target=first_use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert registered == [{"before": gc.collect}]


@pytest.mark.parametrize("degrees", [30, 10])
def test_a_display_matrix_turning_by_an_odd_angle_is_refused(tmp_path, degrees) -> None:
    frames = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    path = _write_turned(tmp_path / "tilted.mkv", frames, degrees)
    with pytest.raises(ValueError, match=rf"tilted\.mkv asks players to turn its frames by "
                                         rf"{degrees}\.0 degrees; only quarter turns and mirrors"):
        load_video(path)


def test_a_duration_tag_of_hours_and_minutes_is_read_in_seconds(tmp_path) -> None:
    """Matroska states where a track ends as a DURATION tag, HH:MM:SS.fraction."""
    stream = SimpleNamespace(time_base=None, start_time=None, duration=None, average_rate=None,
                             guessed_rate=None, metadata={"DURATION": "01:02:03.500000000"})
    container = SimpleNamespace(format=SimpleNamespace(name="matroska"), streams=[stream],
                                duration=None)
    assert video_io._said_end(stream, container, tmp_path / "clip.mkv") == 3723.5


def test_an_avi_stream_header_after_a_chunk_of_odd_size_is_read(tmp_path) -> None:
    """RIFF pads a chunk of odd size to an even one; the stream's start is still found."""
    strh = b"vids" + bytes(16) + struct.pack("<3I", 1, 25, 50) + bytes(24)  # scale, rate, start
    strl = b"strl" + b"strh" + struct.pack("<I", len(strh)) + strh
    hdrl = (b"hdrl" + b"JUNK" + struct.pack("<I", 3) + b"odd\0"
            + b"LIST" + struct.pack("<I", len(strl)) + strl)
    path = tmp_path / "odd.avi"
    path.write_bytes(b"RIFF" + struct.pack("<I", 12 + len(hdrl)) + b"AVI "
                     + b"LIST" + struct.pack("<I", len(hdrl)) + hdrl)
    assert video_io._avi_start(path, 0) == 50 / 25


def test_each_avi_streams_start_is_read_from_its_own_header(tmp_path) -> None:
    """An AVI whose audio stream's header comes first: the video stream's start is its own."""
    def stream_list(kind: bytes, start: int) -> bytes:
        strh = kind + bytes(16) + struct.pack("<3I", 1, 25, start) + bytes(24)  # scale, rate
        strl = b"strl" + b"strh" + struct.pack("<I", len(strh)) + strh
        return b"LIST" + struct.pack("<I", len(strl)) + strl

    hdrl = b"hdrl" + stream_list(b"auds", 0) + stream_list(b"vids", 50)
    path = tmp_path / "two.avi"
    path.write_bytes(b"RIFF" + struct.pack("<I", 12 + len(hdrl)) + b"AVI "
                     + b"LIST" + struct.pack("<I", len(hdrl)) + hdrl)
    assert (video_io._avi_start(path, 0), video_io._avi_start(path, 1)) == (0.0, 50 / 25)


def _write_timed_mkv(path: Path, times_ms: list[int], *, audio_s: float = 0.0) -> Path:
    """Grey FFV1 frames shown at ``times_ms`` (variable rate allowed), then ``audio_s`` seconds
    of silent Opus audio: a Matroska file states its video's length only per track."""
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("ffv1", rate=10)
        video.width, video.height, video.pix_fmt = 16, 16, "bgr0"
        video.time_base = video.codec_context.time_base = Fraction(1, 1000)
        audio = container.add_stream("libopus", rate=48000) if audio_s else None
        for i, pts in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 10 * i, np.uint8),
                                               format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio is not None:
            size = audio.codec_context.frame_size
            for first in range(0, int(48000 * audio_s), size):
                samples = av.AudioFrame.from_ndarray(np.zeros((1, size), np.float32),
                                                     format="fltp", layout="mono")
                samples.sample_rate, samples.pts = 48000, first
                for packet in audio.encode(samples):
                    container.mux(packet)
            for packet in audio.encode():
                container.mux(packet)
    return path


def test_an_mkv_whose_audio_runs_longer_is_whole(tmp_path) -> None:
    """20 frames (2 s) and 2.3 s of audio: whole (it was refused as truncated, the container's
    length, the audio's, taken for the video's)."""
    path = _write_timed_mkv(tmp_path / "talk.mkv", [100 * i for i in range(20)], audio_s=2.3)
    assert load_video(path).shape[1] == 20


@pytest.mark.parametrize(("times", "audio_s"), [
    ([10_000 + 100 * i for i in range(12)], 0.0),  # cut with -c copy: timestamps from 10 s
    ([120 + 100 * i for i in range(12)], 1.5),  # the audio starts first (a camera's file)
])
def test_an_mkv_whose_video_starts_late_is_whole(tmp_path, times, audio_s) -> None:
    """Matroska's DURATION tag is where the track ends, not how long it lasts: a track that
    starts late is whole (it was refused as truncated, its start counted twice)."""
    path = _write_timed_mkv(tmp_path / "late.mkv", times, audio_s=audio_s)
    assert load_video(path).shape[1] == 12
    with pytest.raises(ValueError, match=r"late\.mkv has 12 frames"):
        load_video(path, n_frames=20)


def test_a_clip_changing_its_frame_size_is_named_or_read_at_a_size(tmp_path) -> None:
    """Motion-JPEG frames carry their own size: one that changes mid-clip is named as such
    without ``size`` (it was numpy's "all input arrays must have the same shape"), and read
    at ``size`` with it."""
    import av

    path = tmp_path / "resized.avi"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuvj420p"
        small = av.CodecContext.create("mjpeg", "w")
        small.width, small.height, small.pix_fmt = 16, 12, "yuvj420p"
        small.time_base = Fraction(1, 10)
        for index in range(6):
            encoder, (height, width) = (stream, (24, 32)) if index < 3 else (small, (12, 16))
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 40 * index, np.uint8),
                                               format="rgb24").reformat(format="yuvj420p")
            frame.pts = index
            for packet in encoder.encode(frame):
                packet.stream, packet.pts, packet.dts = stream, index, index
                container.mux(packet)
    with pytest.raises(ValueError, match=r"resized\.avi changes its frame size at frame 3, from "
                                         r"32x24 to 16x12 \(WxH\)"):
        load_video(path)
    assert load_video(path, size=8).shape == (3, 6, 8, 8)


def _mux_ten_flat_frames(container, video) -> None:
    """Ten flat 16x16 frames (grey levels 0, 20, ..., 180), one a tick, into ``video``."""
    import av

    for i in range(10):
        frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 20 * i, np.uint8), format="rgb24")
        frame.pts = i
        container.mux(video.encode(frame))
    container.mux(video.encode())


def test_a_nut_file_whose_audio_runs_longer_is_whole(tmp_path) -> None:
    """NUT states no length per track, only the file's, which its 3 s of audio set: a 1 s
    video beside it is whole (the file's length is the video's only when it is alone)."""
    import av

    path = tmp_path / "clip.nut"
    with av.open(str(path), "w") as container:
        video, audio = _add_video_and_pcm_tracks(container, "mpeg4", "yuv420p")
        _mux_ten_flat_frames(container, video)
        _mux_silence(container, audio, 3, chunk=1000)
    assert load_video(path).shape == (3, 10, 16, 16)


def test_a_nut_file_of_video_alone_is_whole(tmp_path) -> None:
    """The file's length (microseconds, FFmpeg's time base) is the video's end when the video
    is its one stream: 10 frames at 10 fps read whole."""
    import av

    path = tmp_path / "alone.nut"
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 16, 16, "yuv420p"
        _mux_ten_flat_frames(container, video)
    assert load_video(path).shape == (3, 10, 16, 16)


def test_a_variable_rate_mkv_is_whole(tmp_path) -> None:
    """10 frames, a 5 s pause, 10 frames: whole (it was refused as truncated, a frame count
    estimated from its length at the first frames' rate)."""
    times = [100 * i for i in range(10)] + [5900 + 100 * i for i in range(10)]
    assert load_video(_write_timed_mkv(tmp_path / "vfr.mkv", times)).shape[1] == 20


@pytest.mark.parametrize("start, ends", [(0, "4.00"), (20, "6.00")])
def test_an_avi_cut_before_its_last_frames_is_truncated(tmp_path, start: int, ends: str
                                                        ) -> None:
    """An AVI cut before its index: FFmpeg measures its duration from the chunks left, so only
    the header's frame count tells (cut to 95%, it was read as 39 of 40 frames without a word).
    A stream header starting the video 20 frames late (dwStart): FFmpeg times the frames from
    there but says the stream starts at 0, and the file cut to 90% or 70% was read as 35 or 20
    of its 40 frames."""
    import av

    full = tmp_path / "full.avi"
    rng = np.random.default_rng(0)
    with av.open(str(full), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for array in [*rng.integers(0, 256, (40, 24, 32, 3), dtype=np.uint8), None]:
            frame = None if array is None else av.VideoFrame.from_ndarray(array, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
    data = bytearray(full.read_bytes())
    strh = data.index(b"strh") + 8  # the video stream's header: dwStart 28 bytes in
    data[strh + 28:strh + 32] = start.to_bytes(4, "little")
    full.write_bytes(data)
    assert load_video(full).shape[1] == 40
    cut = tmp_path / "cut.avi"
    for fraction in (0.95, 0.9, 0.85, 0.7):
        cut.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(ValueError, match=r"cut\.avi is truncated or corrupt: its header says "
                                             rf"the video ends at {ends} s \(40 frames\)"):
            load_video(cut)


def test_save_comparison_refuses_panels_of_different_heights(tmp_path) -> None:
    videos = [torch.zeros(3, 2, 8, 8), torch.zeros(3, 2, 6, 8)]
    with pytest.raises(ValueError, match="same T and H"):
        save_comparison(videos, tmp_path / "c.mkv")
    assert not (tmp_path / "c.mkv").exists()


def test_an_mp4_with_its_index_first_missing_its_last_frames_is_truncated(tmp_path) -> None:
    data = _write_random_frames(tmp_path / "full.mp4", 40, movflags="faststart").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.85)])
    with pytest.raises(ValueError, match=r"cut\.mp4 is truncated or corrupt: .*\(40 frames\)"):
        load_video(cut)


def _drop_and_exit(held: list) -> None:
    held.clear()  # frees what the parent's error kept: its decoded frames
    gc.collect()


def test_frames_an_error_keeps_can_be_freed_in_a_forked_process(tmp_path) -> None:
    """A DataLoader worker forked while an error of load_video was kept (pytest keeps them)
    froze freeing the decoded frames its traceback held: each frame's scaler had a thread
    pool, which a forked process has no threads for."""
    data = save_video(torch.rand(3, 40, 16, 16, generator=torch.Generator().manual_seed(0)) * 2
                      - 1, tmp_path / "full.mkv").read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: int(len(data) * 0.7)])
    with pytest.raises(ValueError, match="truncated") as caught:
        load_video(cut)
    worker = multiprocessing.get_context("fork").Process(target=_drop_and_exit,
                                                         args=([caught],))
    worker.start()
    worker.join(timeout=60)
    if worker.exitcode is None:
        worker.kill()
    assert worker.exitcode == 0


def _write_ffv1_yuv(path: Path, image: np.ndarray, pix_fmt: str) -> Path:
    """One frame of ``image`` ``(H, W, 3)`` uint8 as lossless FFV1 in the YUV format ``pix_fmt``:
    what is read back differs from ``image`` only by the conversion to and from YUV."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.height, stream.width, _ = image.shape
        stream.pix_fmt = pix_fmt
        for frame in (av.VideoFrame.from_ndarray(image, format="rgb24"), None):
            container.mux(stream.encode(frame))
    return path


def _flat_patches() -> tuple[np.ndarray, np.ndarray]:
    """16 patches of 32x32 pixels, each one colour (white and black among them), and where the
    patches' insides are (8 pixels from every edge: no chroma is shared with a neighbour)."""
    colours = np.random.default_rng(1).integers(0, 256, (16, 3))
    colours[0], colours[1] = 255, 0
    image = colours.reshape(4, 4, 1, 1, 3).repeat(32, 2).repeat(32, 3)
    image = image.transpose(0, 2, 1, 3, 4).reshape(128, 128, 3).astype(np.uint8)
    inside = np.zeros((4, 32, 4, 32), bool)
    inside[:, 8:24, :, 8:24] = True
    return image, inside.reshape(128, 128)


@pytest.mark.parametrize("pix_fmt", ["yuv420p10le", "yuv422p10le", "yuv420p12le"])
def test_flat_colours_of_high_bit_depth_video_read_exactly(tmp_path, pix_fmt) -> None:
    """10- and 12-bit YUV hold an 8-bit colour exactly: it reads back as it was (FFmpeg's fast
    conversion read 10-bit white as 253 and every colour up to 2 grey levels off)."""
    image, inside = _flat_patches()
    clip = load_video(_write_ffv1_yuv(tmp_path / "flat.mkv", image, pix_fmt))
    read = np.round((clip[:, 0].permute(1, 2, 0).numpy() + 1) * 127.5).astype(int)
    np.testing.assert_array_equal(read[inside], image[inside])


def test_8_bit_yuv420p_reads_within_the_rounding_of_its_values(tmp_path) -> None:
    """The common case (H.264 and MPEG-4 files are 8-bit 4:2:0): a flat colour is stored to the
    nearest YUV step, so it reads back within one grey level; a smooth image, whose chroma is
    shared by 2x2 pixels, within 0.7 on average (the fast conversion: 3 and 2.7)."""
    image, inside = _flat_patches()
    clip = load_video(_write_ffv1_yuv(tmp_path / "flat.mkv", image, "yuv420p"))
    error = np.abs((clip[:, 0].permute(1, 2, 0).numpy() + 1) * 127.5 - image)
    assert error[inside].max() <= 1.0 + 1e-4
    y, x = np.mgrid[:128, :128]
    smooth = np.stack([127 + 120 * np.sin(x / 9 + c) * np.cos(y / 11 - c) for c in range(3)], -1)
    smooth = smooth.round().astype(np.uint8)
    clip = load_video(_write_ffv1_yuv(tmp_path / "smooth.mkv", smooth, "yuv420p"))
    error = np.abs((clip[:, 0].permute(1, 2, 0).numpy() + 1) * 127.5 - smooth)
    assert error.mean() < 0.7


def _mpeg2_stream(path: Path, container_format: str) -> tuple[bytes, list[int]]:
    """40 random 32x32 frames of MPEG-2 in ``container_format`` at ``path``: the file's bytes and
    where each picture starts (MPEG-2's picture start code 00 00 01 00; about 200 bytes each)."""
    _write_random_frames(path, 40, codec="mpeg2video", container_format=container_format, size=32)
    assert load_video(path).shape[1] == 40
    data = path.read_bytes()
    pictures = [i for i in range(len(data) - 3) if data[i:i + 4] == b"\x00\x00\x01\x00"]
    assert len(pictures) == 40
    return data, pictures


@pytest.mark.parametrize("container_format, suffix", [("mpegts", ".ts"), ("mpeg", ".mpg")])
def test_a_stream_cut_part_way_through_a_frame_is_truncated(tmp_path, container_format,
                                                            suffix) -> None:
    """Transport and program streams state no length, so a cut one reads as a shorter stream;
    cut inside a frame's data, that last frame decodes damaged (read without a word before).
    The frames before it are whole, and the error says how to read them."""
    whole = tmp_path / f"whole{suffix}"
    data, pictures = _mpeg2_stream(whole, container_format)
    # The transport stream on the boundary of its 188-byte packets after the picture's first.
    end = -(-(pictures[20] + 1) // 188) * 188 if suffix == ".ts" else pictures[20] + 100
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[:end])
    with pytest.raises(ValueError, match=rf"cut\{suffix} is truncated or corrupt: its frame "
                                         r"(\d+) decoded with errors \(n_frames=\1 reads") as err:
        load_video(cut)
    kept = int(str(err.value).split("n_frames=")[1].split()[0])
    np.testing.assert_array_equal(load_video(cut, n_frames=kept).numpy(),
                                  load_video(whole, n_frames=kept).numpy())


@pytest.mark.parametrize("frame, whole_before", [(10, r" \(n_frames=10 reads"), (0, "$")])
def test_a_stream_damaged_part_way_names_its_first_damaged_frame(tmp_path, frame: int,
                                                                 whole_before: str) -> None:
    """Bytes lost inside frame 10 of a program stream damage it and frames after it (to 18
    here): the error names frame 10, the first, and the whole frames before it. Frame 0
    damaged is named too, with no frames before it to read."""
    data, pictures = _mpeg2_stream(tmp_path / "whole.mpg", "mpeg")
    damaged = tmp_path / "damaged.mpg"
    damaged.write_bytes(data[:pictures[frame] + 60] + data[pictures[frame + 1]:])
    with pytest.raises(ValueError, match=rf"damaged\.mpg is truncated or corrupt: its frame "
                                         rf"{frame} decoded with errors{whole_before}"):
        load_video(damaged)


def test_a_blu_ray_transport_stream_of_192_byte_packets_is_whole(tmp_path) -> None:
    # M2TS puts a 4-byte time stamp before each 188-byte packet.
    path = _write_random_frames(tmp_path / "clip.m2ts", 10, codec="mpeg2video",
                                container_format="mpegts", size=32, mpegts_m2ts_mode="1")
    assert path.stat().st_size % 192 == 0 and path.stat().st_size % 188
    assert load_video(path).shape == (3, 10, 32, 32)


def test_a_transport_stream_cut_part_way_through_a_packet_is_truncated(tmp_path) -> None:
    """Cut inside a 188-byte packet, the demuxer drops the packet and every frame that decodes
    is whole: the file's size is what tells."""
    data, pictures = _mpeg2_stream(tmp_path / "whole.ts", "mpegts")
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[:pictures[20] + 100])
    assert len(data[:pictures[20] + 100]) % 188
    with pytest.raises(ValueError, match=r"cut\.ts is truncated: it ends part way through a "
                                         r"transport packet .* 20 frames could be decoded"):
        load_video(cut)
    assert load_video(cut, n_frames=20).shape[1] == 20  # asked for fewer: read without a look


@pytest.mark.parametrize(("container_format", "codec", "pix_fmt"), [
    ("matroska", "ffv1", "bgra"), ("mov", "png", "rgba")])
def test_frames_with_alpha_read_over_white_as_the_same_png_frames_do(
        tmp_path, container_format, codec, pix_fmt) -> None:
    """A clip with an alpha channel (stickers, renders) reads as a folder of its frames as PNGs:
    composited over white. Alpha was dropped, showing what a transparent pixel stored (black)."""
    import av

    rgba = np.random.default_rng(2).integers(0, 256, (2, 6, 8, 4), dtype=np.uint8)
    rgba[:, :3, :, 3] = 0  # transparent rows, partly transparent and opaque pixels below
    rgba[:, 3:, :4, 3] = 255
    path = tmp_path / f"alpha.{'mkv' if codec == 'ffv1' else 'mov'}"
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=10)
        stream.height, stream.width, stream.pix_fmt = 6, 8, pix_fmt
        for frame in [*rgba, None]:
            image = None if frame is None else av.VideoFrame.from_ndarray(frame, format="rgba")
            container.mux(stream.encode(image))
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(rgba):
        Image.fromarray(frame).save(folder / f"f{i}.png")
    clip = load_video(path)
    assert torch.equal(clip, load_video(folder))
    assert (clip[:, :, :3] == 1).all()  # white where nothing is


def _transparent_webm(path: Path) -> Path:
    """Two 16x16 frames of VP9 with alpha (WebM's alpha_mode 1, as transparent web video is
    written), lossless: red, transparent in the top half, opaque in the bottom half."""
    import av

    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[8:, :, 3] = 255
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libvpx-vp9", rate=10, options={"lossless": "1"})
        stream.height, stream.width, stream.pix_fmt = 16, 16, "yuva420p"
        for image in [rgba, rgba, None]:
            frame = None if image is None else av.VideoFrame.from_ndarray(image, format="rgba")
            container.mux(stream.encode(frame))
    return path


@pytest.mark.skipif(not video_io._has_codec("libvpx-vp9", "w")
                    or not video_io._has_codec("libvpx-vp9", "r"),
                    reason="this PyAV build has no libvpx-vp9 encoder and decoder")
def test_a_webm_with_alpha_reads_over_white(tmp_path, monkeypatch) -> None:
    """FFmpeg's own VP9 decoder drops the alpha WebM carries beside each frame: the transparent
    half read red, the colour it hides, where every other clip with alpha reads over white."""
    clip = (load_video(_transparent_webm(tmp_path / "sticker.webm")) + 1) * 127.5
    assert clip.shape == (3, 2, 16, 16)
    assert (clip[:, :, :8] == 255).all()  # transparent: white
    red = torch.tensor([255.0, 0.0, 0.0])[:, None, None, None]
    assert (clip[:, :, 8:] - red).abs().max() <= 2  # opaque red (YUV rounding)
    # A build without libvpx's decoder says that it reads the hidden colour.
    has_codec = video_io._has_codec
    monkeypatch.setattr(video_io, "_has_codec", lambda name, mode: mode == "w"
                        and has_codec(name, mode))
    with pytest.warns(UserWarning, match=r"sticker\.webm has an alpha channel \(transparency\) "
                                         r"that this FFmpeg build cannot decode \(it lacks "
                                         r"libvpx-vp9\)"):
        hidden = (load_video(tmp_path / "sticker.webm") + 1) * 127.5
    assert (hidden - red).abs().max() <= 2


@pytest.mark.parametrize(("transfer", "name"), [(18, "HLG"), (16, "PQ")])
def test_hdr_video_is_said_to_be_read_without_tone_mapping(tmp_path, transfer, name) -> None:
    """A phone's HDR clip (10-bit BT.2020 with the HLG or PQ transfer) read as SDR, its
    colours flatter or darker than a player shows them, without a word."""
    import av

    path = tmp_path / "hdr.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 8, 8, "yuv420p10le"
        context = stream.codec_context
        context.color_trc, context.color_primaries, context.colorspace = transfer, 9, 9
        frame = av.VideoFrame.from_ndarray(np.full((8, 8, 3), 100, np.uint8), format="rgb24")
        container.mux(stream.encode(frame.reformat(format="yuv420p10le")))
        container.mux(stream.encode())
    with pytest.warns(UserWarning, match=rf"hdr\.mkv is HDR video \({name} transfer\): its "
                                         r"frames are read without tone mapping") as caught:
        assert load_video(path).shape == (3, 1, 8, 8)
    assert len(caught) == 1 and caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_video(save_video(torch.zeros(3, 2, 8, 8), tmp_path / "sdr.mkv"))


@pytest.mark.parametrize(("pix_fmt", "given", "channels"), [
    ("gray16be", "gray16le", 1), ("rgb48be", "rgb48le", 3)])
def test_16_bit_frames_read_as_their_levels_times_255_over_65535_rounded(
        tmp_path, pix_fmt, given, channels) -> None:
    """16-bit grey or RGB frames (PNG in MOV, as scientific and thermal cameras write) read as
    16-bit image files do, each level v as round(v * 255 / 65535): FFmpeg's (v + 128) >> 8 read
    every 8-bit level past 127 stored as level * 257 one grey level high."""
    import av

    shape = (2, 8, 16) if channels == 1 else (2, 8, 16, 3)
    levels = np.random.default_rng(3).integers(0, 65536, shape, dtype=np.uint16)
    levels.flat[:256] = np.arange(256) * 257  # every 8-bit level as such a file stores it
    path = tmp_path / "wide.mov"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png", rate=10)
        stream.height, stream.width, stream.pix_fmt = 8, 16, pix_fmt
        for frame in [*levels, None]:
            image = None if frame is None else av.VideoFrame.from_ndarray(frame, format=given)
            container.mux(stream.encode(image))
    expected = np.floor(levels.astype(np.float64) * 255 / 65535 + 0.5)
    clip = load_video(path, channels=channels)
    read = np.round(((clip + 1) * 127.5).permute(1, 2, 3, 0).numpy())
    np.testing.assert_array_equal(read, expected.reshape(read.shape))


def test_the_clip_is_the_stream_ffmpeg_would_play_not_the_first(tmp_path) -> None:
    """A one-frame thumbnail track stored before the clip (a converter's cover) was read as
    the clip ("has 1 frames"), and its rate as the clip's."""
    import av

    levels = np.random.default_rng(5).integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    path = tmp_path / "two.mkv"
    with av.open(str(path), "w") as container:
        # Both streams added before the first packet is written (the header comes first).
        thumbnail, clip = (container.add_stream("ffv1", rate=rate) for rate in (1, 10))
        for stream in (thumbnail, clip):
            stream.width = stream.height = 16
            stream.pix_fmt = "bgr0"
        cover = av.VideoFrame.from_ndarray(levels[0] // 2, format="rgb24")
        container.mux([*thumbnail.encode(cover), *thumbnail.encode()])
        for frame in [*levels, None]:
            image = None if frame is None else av.VideoFrame.from_ndarray(frame, format="rgb24")
            container.mux(clip.encode(image))
    read = np.round(((load_video(path) + 1) * 127.5).permute(1, 2, 3, 0).numpy())
    np.testing.assert_array_equal(read, levels)
    assert frame_rate(path) == 10


def test_a_file_without_a_video_stream_says_what_it_holds(tmp_path) -> None:
    import av

    sound = tmp_path / "sound.mkv"
    with av.open(str(sound), "w") as container:
        _mux_silence(container, container.add_stream("pcm_s16le", rate=8000), 1, chunk=8000)
    for read in (load_video, frame_rate):  # frame_rate: an IndexError from PyAV's stream list
        with pytest.raises(ValueError, match=r"sound\.mkv has no video stream \(only audio\)"):
            read(sound)
    # Streams of another kind than audio are named too (not taken for a file of none).
    data_only = tmp_path / "data.ts"
    with av.open(str(data_only), "w") as container:
        packet = av.Packet(b"stgconv")
        packet.stream = container.add_data_stream()
        packet.pts = packet.dts = 0
        container.mux(packet)
    with pytest.raises(ValueError, match=r"data\.ts has no video stream \(only data\)"):
        load_video(data_only)
    # An MP4 cut before its index (written last) opens as a file of no streams at all.
    data = save_video(torch.zeros(3, 2, 16, 16), tmp_path / "whole.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.mp4 has no video stream, nor any other: it is "
                                         r"truncated"):
        load_video(cut)


@pytest.mark.parametrize("codec", ["libx264", "mpeg4", "libvpx-vp9"])  # VP8 is BT.601 by spec
def test_written_yuv_states_the_matrix_and_range_it_was_converted_with(tmp_path, codec) -> None:
    """Untagged, a player guesses the matrix (mpv takes frames over 576 lines for BT.709): the
    file says BT.601 (5) with limited range (1), the conversion save_video uses."""
    import av

    suffix = ".webm" if codec == "libvpx-vp9" else ".mp4"
    if codec not in available_codecs(suffix):
        pytest.skip(f"this PyAV build has no {codec} encoder")
    clip = torch.linspace(-1, 1, 3 * 2 * 16 * 16).reshape(3, 2, 16, 16)
    path = save_video(clip, tmp_path / f"clip{suffix}", codec=codec)
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
    assert (frame.colorspace, frame.color_range) == (5, 1)
    # The values are those of the same conversion untagged (the decoder's default).
    error = (load_video(path) - quantised(clip)).abs().mul(127.5)
    assert error.mean() < 3


@pytest.mark.parametrize("fps", [30, 60, 12])
def test_a_gif_reads_at_the_rate_of_its_every_delay(tmp_path, fps) -> None:
    """A GIF stores each frame's delay in hundredths of a second, so a 30 fps GIF alternates
    3, 3 and 4: FFmpeg's average rate, from the first delays, said 100/3 (60 fps: 100), and a
    clip read at its own rate lost 3 of 30 frames (60 fps: 12), as training at data.fps 30
    would have read it. The rate is every frame's over their delays' sum."""
    clip = torch.linspace(-1, 1, 30).view(1, 30, 1, 1).expand(3, 30, 4, 4).contiguous()
    path = save_video(clip, tmp_path / "clip.gif", fps=fps)
    assert frame_rate(path) == fps
    assert torch.equal(load_video(path, fps=fps), quantised(clip))
    assert torch.equal(load_video(path, fps=fps / 2), quantised(clip)[:, ::2])

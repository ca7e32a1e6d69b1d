"""Video datasets: the HDF5 clip cache, VideoClips and load_training_clips on tiny clips written
to tmp_path (lossless ffv1 .mkv, so every uint8 value survives), the prepare script, bad input,
and the real action clips of ../shared/data/video (skipped when absent)."""

from __future__ import annotations

import errno
import os
import pickle
import re
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from _tiny import (
    ANOTHER_CACHE,
    cache_written_meanwhile,
    file_size_limit,
    fill,
    linked_copy,
    refused_before_building,
)
from PIL import Image
from torch.utils.data import DataLoader

import stgconv
from stgconv.data.video import (
    CacheSettingsError,
    VideoClips,
    build_clip_cache,
    list_videos,
    load_training_clips,
    source_rate,
)
from stgconv.io.atomic import WriteError
from stgconv.io.h5 import stream_h5
from stgconv.io.video import TooFewFramesError, load_video, read_frames, save_video, to_uint8

REPO = Path(__file__).resolve().parents[1]

T, H, W = 6, 16, 16


def noise(frames: int, seed: int, *, channels: int = 3, size: tuple[int, int] = (H, W)
          ) -> torch.Tensor:
    """(C, T, H, W) i.i.d. noise in [-1, 1]: any change of a uint8 value shows."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(channels, frames, *size, generator=g) * 2 - 1


@pytest.fixture
def video_dir(tmp_path: Path) -> Path:
    """Three lossless clips named so that natural order differs from plain sorting."""
    folder = tmp_path / "videos"
    for seed, (name, frames) in enumerate([("c10.mkv", T + 2), ("c2.mkv", T), ("c1.mkv", T + 1)]):
        save_video(noise(frames, seed), folder / name)
    (folder / "notes.txt").write_text("not a video")  # ignored
    return folder


def stack(dataset: VideoClips) -> torch.Tensor:
    return torch.stack([dataset[i] for i in range(len(dataset))])


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ------------------------------------------------------------------------------------------
# Round trip and metadata
# ------------------------------------------------------------------------------------------


def test_cache_round_trip_equals_decoding(video_dir: Path, tmp_path: Path) -> None:
    cache = build_clip_cache(video_dir, tmp_path / "clips.h5", n_frames=4, size=12)
    dataset = VideoClips(cache)
    decoded = load_training_clips(video_dir, n_frames=4, size=12)
    assert decoded.shape == (3, 3, 4, 12, 12)
    # The cache stores the decoded uint8 frames; both sides map them to [-1, 1] the same way.
    assert torch.equal(stack(dataset), decoded)
    assert torch.equal(load_training_clips(cache, n_frames=4, size=12), decoded)
    assert torch.equal(load_training_clips(cache, n_frames=4, size=12, max_clips=2), decoded[:2])
    # More clips asked than the cache holds: all of them, as from the folder.
    assert torch.equal(load_training_clips(cache, n_frames=4, size=12, max_clips=5), decoded)
    # ... and the quantisation itself is lossless for decoded frames.
    for clip in decoded:
        assert torch.equal(torch.from_numpy(to_uint8(clip)).permute(3, 0, 1, 2).float()
                           / 127.5 - 1.0, clip)


def test_cache_metadata(video_dir: Path, tmp_path: Path) -> None:
    cache = build_clip_cache(video_dir, tmp_path / "clips.h5", n_frames=4, size=(12, 10),
                             start_frame=1)
    with h5py.File(cache, "r") as h5:
        clips = h5["clips"]
        assert clips.dtype == np.uint8 and clips.shape == (3, 4, 12, 10, 3)
        assert clips.chunks == (1, 4, 12, 10, 3)
        assert clips.compression == "gzip" and clips.compression_opts == 4
        assert list(h5["source"].asstr()[()]) == [str(video_dir / n)
                                                 for n in ("c1.mkv", "c2.mkv", "c10.mkv")]
        assert list(h5["start_frame"][()]) == [1, 1, 1]
        assert list(h5["source_fps"][()]) == [25.0, 25.0, 25.0]
        attrs = dict(h5.attrs)
    assert attrs["n_frames"] == 4 and list(attrs["size"]) == [12, 10]
    assert attrs["channels"] == 3 and attrs["fps"] == 0.0 and attrs["start_frame"] == 1
    assert attrs["clips_per_video"] == 1 and attrs["stride"] == 4
    assert attrs["layout"] == "(N, T, H, W, C)" and "127.5" in attrs["value_range"]
    assert attrs["created_by"] == f"stgconv {stgconv.__version__}"
    assert attrs["format_version"] == 1 and len(attrs["skipped"]) == 0
    with h5py.File(cache, "r+") as h5:
        del h5.attrs["format_version"]
    with pytest.raises(ValueError, match="format version None, this stgconv reads version 1"):
        VideoClips(cache)

    # The suffix in any case, as load_training_clips tells a cache by it.
    lzf = build_clip_cache([video_dir / "c2.mkv"], tmp_path / "lzf.HDF5", n_frames=4, size=8,
                           compression="lzf")
    with h5py.File(lzf, "r") as h5:
        assert h5["clips"].compression == "lzf" and h5["clips"].shape[0] == 1
    assert torch.equal(load_training_clips(lzf, n_frames=4, size=8),
                       VideoClips(lzf)[0][None])


def test_the_cache_keeps_the_decoded_levels_without_a_float_clip(tmp_path: Path,
                                                                monkeypatch) -> None:
    """A whole source (clips_per_video=None) decoded to a float clip and quantised back took 7x
    its uint8 frames' memory; the cache takes the uint8 frames as decoded, the same clips."""
    import stgconv.data.video as video_data

    source = save_video(noise(10, 7), tmp_path / "long.mkv")
    full = load_video(source, size=8)

    def refused(*args, **kwargs):
        raise AssertionError("the cache builder made a float clip")

    monkeypatch.setattr(video_data, "load_video", refused)
    every = VideoClips(build_clip_cache([source], tmp_path / "all.h5", n_frames=4, size=8,
                                        clips_per_video=None))
    assert torch.equal(stack(every), torch.stack([full[:, s:s + 4] for s in (0, 4)]))


def test_clips_per_video_stride_and_fps(tmp_path: Path) -> None:
    source = save_video(noise(10, 7), tmp_path / "long.mkv")  # 25 fps
    full = load_video(source, size=8)

    every = VideoClips(build_clip_cache([source], tmp_path / "all.h5", n_frames=4, size=8,
                                        clips_per_video=None, stride=3))
    assert every.start_frames == [0, 3, 6] and every.sources == [str(source)] * 3
    with h5py.File(every.root, "r") as h5:  # 0: as many as fit
        assert h5.attrs["clips_per_video"] == 0 and h5.attrs["stride"] == 3
    assert torch.equal(stack(every), torch.stack([full[:, s:s + 4] for s in (0, 3, 6)]))

    two = VideoClips(build_clip_cache([source], tmp_path / "two.h5", n_frames=4, size=8,
                                      clips_per_video=2))  # stride defaults to n_frames
    assert two.start_frames == [0, 4]
    assert torch.equal(stack(two), torch.stack([full[:, :4], full[:, 4:8]]))

    # 12.5 fps from 25 fps keeps every other frame; start frames count source frames.
    slow = VideoClips(build_clip_cache([source], tmp_path / "slow.h5", n_frames=2, size=8,
                                       fps=12.5, start_frame=1, clips_per_video=None))
    assert slow.fps == 12.5 and slow.start_frames == [1, 5]
    assert torch.equal(stack(slow), torch.stack([full[:, [1, 3]], full[:, [5, 7]]]))

    with pytest.raises(ValueError, match=r"long\.mkv is too short for clips_per_video=3"):
        build_clip_cache([source], tmp_path / "x.h5", n_frames=4, size=8, clips_per_video=3)
    # A start past the end is as short: named so too (a TooFewFramesError still), though the
    # reader's message names no n_frames.
    with pytest.raises(TooFewFramesError, match=r"long\.mkv is too short for "
                                                r"clips_per_video=2 .*start_frame=50 but"):
        build_clip_cache([source], tmp_path / "x.h5", n_frames=4, size=8, clips_per_video=2,
                         start_frame=50)
    assert not (tmp_path / "x.h5").exists() and leftovers(tmp_path) == []


def test_grey_clips(video_dir: Path, tmp_path: Path) -> None:
    cache = build_clip_cache(video_dir, tmp_path / "grey.h5", n_frames=3, size=8, channels=1)
    dataset = VideoClips(cache)
    assert dataset.channels == 1 and dataset[0].shape == (1, 3, 8, 8)
    assert torch.equal(stack(dataset),
                       load_training_clips(video_dir, n_frames=3, size=8, channels=1))


# ------------------------------------------------------------------------------------------
# load_training_clips on files and folders
# ------------------------------------------------------------------------------------------


def test_load_training_clips_sources(video_dir: Path, tmp_path: Path) -> None:
    assert [p.name for p in list_videos(video_dir)] == ["c1.mkv", "c2.mkv", "c10.mkv"]
    for not_a_folder in (video_dir / "c1.mkv", tmp_path / "absent"):
        with pytest.raises(FileNotFoundError, match=r"^video folder not found: "):
            list_videos(not_a_folder)
    one = load_training_clips(video_dir / "c1.mkv", n_frames=T, size=H)
    assert one.shape == (1, 3, T, H, W) and one.dtype == torch.float32
    assert torch.equal(one[0], load_video(video_dir / "c1.mkv", n_frames=T))
    first_two = load_training_clips(video_dir, n_frames=T, size=H, max_clips=2)
    assert torch.equal(first_two[0], one[0])
    # A video's frames start_frame on, at another rate, grey: as load_video reads them.
    options = dict(start_frame=1, n_frames=3, size=H, fps=12.5, channels=1)
    assert torch.equal(load_training_clips(video_dir / "c10.mkv", **options)[0],
                       load_video(video_dir / "c10.mkv", **options))

    frames = tmp_path / "frames"
    frames.mkdir()
    for t, frame in enumerate(to_uint8(noise(5, 3))):  # the suffix in any case
        Image.fromarray(frame).save(frames / f"f{t}.PNG")
    clip = load_training_clips(frames, n_frames=4, size=8, start_frame=1)
    assert clip.shape == (1, 3, 4, 8, 8)
    assert torch.equal(clip[0], load_video(frames, start_frame=1, n_frames=4, size=8))
    # The cache of that one folder holds the same clip (it was read as a folder of videos,
    # and refused: "no video files").
    cache = build_clip_cache(frames, tmp_path / "frames.h5", n_frames=4, size=8, start_frame=1)
    assert torch.equal(load_training_clips(cache, n_frames=4, size=8, start_frame=1), clip)
    with h5py.File(cache, "r") as h5:
        assert np.isnan(h5["source_fps"][0])  # a frame folder has no frame rate

    # A folder of GIFs only holds videos (.gif is both a video and an image suffix).
    gifs = tmp_path / "gifs"
    for seed in range(2):
        save_video(noise(4, seed), gifs / f"g{seed}.gif")
    assert load_training_clips(gifs, n_frames=4, size=8).shape == (2, 3, 4, 8, 8)


def test_a_folder_of_still_gifs_is_one_clips_frames(tmp_path: Path) -> None:
    """GIFs none of which moves are frames, as a tool exports them and as load_video reads
    them; they were read as one-frame videos and refused ("f0.gif has 1 frames")."""
    still = tmp_path / "still_gifs"
    still.mkdir()
    for t, frame in enumerate(to_uint8(noise(5, 4))):
        Image.fromarray(frame).save(still / f"f{t}.gif")
    clip = load_training_clips(still, n_frames=4, size=8, start_frame=1)
    assert torch.equal(clip[0], load_video(still, start_frame=1, n_frames=4, size=8))
    cache = build_clip_cache(still, tmp_path / "still.h5", n_frames=4, size=8, start_frame=1)
    assert VideoClips(cache).sources == [str(still)]
    # Beside an animated GIF they are videos, and the still one is named as too short.
    save_video(noise(4, 5), still / "f9.gif")
    with pytest.raises(TooFewFramesError, match="f0.gif has 1 frames"):
        load_training_clips(still, n_frames=4, size=8)


def test_a_folder_lists_its_videos_of_every_documented_suffix(tmp_path: Path) -> None:
    """Phones' .m4v and .mov, MPEG's .mpg and .mpeg, camcorders' .mts and .m2ts, and the rest
    io.video names (a folder of .mts clips was refused as holding no video files)."""
    suffixes = (".mp4", ".avi", ".mkv", ".webm", ".gif", ".mov", ".m4v", ".mpg", ".mpeg", ".ts",
                ".mts", ".m2ts", ".3gp", ".wmv", ".flv", ".ogv", ".y4m")
    names = [f"c{i}{suffix}" for i, suffix in enumerate(suffixes)]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert [path.name for path in list_videos(tmp_path)] == names


def test_a_folder_of_camcorder_clips_is_read(tmp_path: Path) -> None:
    """AVCHD camcorders write MPEG transport streams named .MTS: a folder of them is a folder of
    videos, each read as load_video reads it."""
    import av

    folder = tmp_path / "camcorder"
    folder.mkdir()
    for name, seed in (("00001.MTS", 0), ("00002.MTS", 1)):
        with av.open(str(folder / name), "w", format="mpegts") as container:
            stream = container.add_stream("mpeg2video", rate=25)
            stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
            for frame in to_uint8(noise(4, seed)):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
    clips = load_training_clips(folder, n_frames=3, size=8)
    assert clips.shape == (2, 3, 3, 8, 8)
    assert torch.equal(clips[1], load_video(folder / "00002.MTS", n_frames=3, size=8))


def test_a_folder_of_y4m_clips_is_read(tmp_path: Path) -> None:
    """Uncompressed YUV4MPEG clips (.y4m: Xiph's test media, the sequences video research
    works on) read one by one, but a folder of them was 'holds neither video files nor frame
    images'."""
    import av

    folder = tmp_path / "derf"
    folder.mkdir()
    for name, seed in (("akiyo.y4m", 0), ("foreman.y4m", 1)):
        with av.open(str(folder / name), "w", format="yuv4mpegpipe") as container:
            stream = container.add_stream("wrapped_avframe", rate=25)
            stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
            for frame in to_uint8(noise(4, seed)):
                frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
                container.mux(stream.encode(frame.reformat(format="yuv420p")))
            container.mux(stream.encode())
    clips = load_training_clips(folder, n_frames=3, size=8)
    assert clips.shape == (2, 3, 3, 8, 8)
    assert torch.equal(clips[1], load_video(folder / "foreman.y4m", n_frames=3, size=8))


def test_load_training_clips_bad_input(video_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        load_training_clips(tmp_path / "nope.mp4", n_frames=4, size=8)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="neither video files .* nor frame images"):
        load_training_clips(empty, n_frames=4, size=8)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a.mp4").write_bytes(b"")
    (mixed / "b.png").write_bytes(b"")
    with pytest.raises(ValueError, match="both video files"):
        load_training_clips(mixed, n_frames=4, size=8)
    # c2.mkv has T = 6 frames: the message names the clip and its length.
    with pytest.raises(ValueError, match=r"c2\.mkv has 6 frames"):
        load_training_clips(video_dir, n_frames=7, size=8)
    for bad in ({"n_frames": 0, "size": 8}, {"n_frames": 4, "size": 0},
                {"n_frames": 4, "size": (8, 8, 8)}, {"n_frames": 4, "size": 8, "fps": -1.0},
                {"n_frames": 4, "size": 8, "channels": 2},
                {"n_frames": 4, "size": 8, "max_clips": 0}):
        with pytest.raises(ValueError):
            load_training_clips(video_dir, **bad)

    cache = build_clip_cache(video_dir, tmp_path / "c.h5", n_frames=4, size=8)
    # A setting no cache can have is named as such, not as one this cache lacks.
    for bad, message in (({"start_frame": -1}, "start_frame must be an int >= 0"),
                         ({"channels": 2}, "channels must be 1 or 3"),
                         ({"channels": True}, "channels must be 1 or 3, got True"),
                         ({"fps": -1.0}, "fps must be a finite number of at least 1e-6")):
        with pytest.raises(ValueError, match=message):
            load_training_clips(cache, n_frames=4, size=8, **bad)
    with pytest.raises(ValueError, match="n_frames must be an int >= 1, got 0"):
        load_training_clips(cache, n_frames=0, size=8)
    with pytest.raises(CacheSettingsError, match=r"other settings: n_frames=5 \(cache: 4\)"):
        load_training_clips(cache, n_frames=5, size=8)
    with pytest.raises(ValueError, match=r"size=\(9, 9\) \(cache: \(8, 8\)\).*fps=10.0"):
        load_training_clips(cache, n_frames=4, size=9, fps=10)
    with pytest.raises(ValueError, match=r"other settings: channels=1 \(cache: 3\)"):
        load_training_clips(cache, n_frames=4, size=8, channels=1)
    with pytest.raises(ValueError, match=r"other settings: start_frame=1 \(cache: 0\)"):
        load_training_clips(cache, n_frames=4, size=8, start_frame=1)
    # One clip asked of each source: a short one fails with load_video's own message.
    with pytest.raises(ValueError, match=r"asked for n_frames=7 .*c2\.mkv has 6 frames") as err:
        build_clip_cache(video_dir, tmp_path / "short.h5", n_frames=7, size=8)
    assert "clips_per_video" not in str(err.value)
    with pytest.raises(ValueError, match=r"c2\.mkv has 6 frames from start_frame=0, fewer than "
                                         r"n_frames=7"):
        build_clip_cache(video_dir, tmp_path / "short.h5", n_frames=7, size=8,
                         clips_per_video=None)
    assert not (tmp_path / "short.h5").exists()


def test_a_folder_of_folders_is_refused_naming_them(video_dir: Path, tmp_path: Path) -> None:
    """UCF101's root (<Class>/v_<Class>_g01_c01.avi) and a DynTex folder of frame folders hold
    only folders: the refusal names them (not macOS's __MACOSX) and says how to give them,
    rather than listing the suffixes of files the user does have."""
    ucf = tmp_path / "UCF-101"
    for name in ("ApplyEyeMakeup", "Basketball"):
        (ucf / name).mkdir(parents=True)
        save_video(noise(T, 0), ucf / name / f"v_{name}_g01_c01.mkv")
    (ucf / "__MACOSX").mkdir()
    (ucf / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    with pytest.raises(ValueError, match=r"only folders \(ApplyEyeMakeup, Basketball\), and "
                                         r"folders inside are not read.*prepare\.py"):
        load_training_clips(ucf, n_frames=4, size=8)
    dyntex = tmp_path / "dyntex"
    frames = dyntex / "645a940"
    frames.mkdir(parents=True)
    for k in range(T):
        Image.new("RGB", (W, H), (k, 0, 0)).save(frames / f"{k:03d}.png")
    with pytest.raises(ValueError, match=r"only folders \(645a940\)"):
        build_clip_cache(dyntex, tmp_path / "c.h5", n_frames=4, size=8)
    # As the message says: the frame folders listed are read, one clip each.
    cache = build_clip_cache([frames], tmp_path / "c.h5", n_frames=4, size=8)
    assert len(VideoClips(cache)) == 1


# ------------------------------------------------------------------------------------------
# build_clip_cache: bad input, atomicity, skipping
# ------------------------------------------------------------------------------------------


def test_a_folder_s_link_to_its_own_video_is_read_once(video_dir: Path, tmp_path: Path) -> None:
    """A folder holding a video and a link to it (latest.mkv -> c2.mkv) gave that video's clips
    twice, to the cache and to training, without a word: each file is read once, as its first
    name in the folder's order, with a warning naming both; a hard link as a symbolic one."""
    (video_dir / "c3.mkv").symlink_to(video_dir / "c2.mkv")
    os.link(video_dir / "c1.mkv", video_dir / "c4.mkv")
    said = [f"{video_dir / 'c3.mkv'} and {video_dir / 'c2.mkv'} are one video (a link): it is "
            "read once, as c2.mkv",
            f"{video_dir / 'c4.mkv'} and {video_dir / 'c1.mkv'} are one video (a link): it is "
            "read once, as c1.mkv"]
    with pytest.warns(UserWarning) as caught:
        assert [p.name for p in list_videos(video_dir)] == ["c1.mkv", "c2.mkv", "c10.mkv"]
    assert [str(w.message) for w in caught] == said
    with pytest.warns(UserWarning) as caught:
        out = build_clip_cache(video_dir, tmp_path / "clips.h5", n_frames=4, size=8)
    assert [str(w.message) for w in caught] == said
    with h5py.File(out) as h5:
        assert list(h5["source"].asstr()[()]) == [
            str(video_dir / name) for name in ("c1.mkv", "c2.mkv", "c10.mkv")]
    with pytest.warns(UserWarning) as caught:
        assert load_training_clips(video_dir, n_frames=4, size=8).shape[0] == 3
    assert [str(w.message) for w in caught] == said


def test_the_source_rate_is_the_one_rate_the_clips_share(tmp_path: Path) -> None:
    """Previews of clips read at their own rates play at it (:func:`source_rate`): a file's,
    a folder's or a cache's shared rate; none where they differ or none is known."""
    folder = tmp_path / "videos"
    for name in ("a.mkv", "b.mkv"):
        save_video(noise(T, 0), folder / name, fps=10)
    assert source_rate(folder / "a.mkv") == 10.0
    assert source_rate(folder) == 10.0
    assert source_rate(build_clip_cache(folder, tmp_path / "clips.h5", n_frames=4,
                                        size=8)) == 10.0
    # A cache built at a rate: that one.
    assert source_rate(build_clip_cache(folder, tmp_path / "at5.h5", n_frames=2, size=8,
                                        fps=5)) == 5.0
    save_video(noise(T, 1), folder / "c.mkv", fps=20)
    assert source_rate(folder) is None
    assert source_rate(folder, max_clips=2) == 10.0  # the clips read: a.mkv and b.mkv
    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(T):
        Image.new("L", (W, H), 40 * t).save(frames / f"{t}.png")
    assert source_rate(frames) is None
    # A cache of a frame folder's clips (source_fps NaN), and data no longer there.
    assert source_rate(build_clip_cache(frames, tmp_path / "frames.h5", n_frames=4,
                                        size=8)) is None
    assert source_rate(tmp_path / "gone.mkv") is None


def test_the_source_rate_is_that_of_the_clips_read_a_link_counted_once(tmp_path: Path) -> None:
    """With data.max_images 2, a folder of a.mkv (10 fps), a link to it and b.mkv (20 fps) is
    trained on a.mkv and b.mkv (the link read once), whose rates differ: source_rate counted
    the link as a second clip and gave 10, and previews of the 20 fps clip played at half
    speed."""
    folder = tmp_path / "videos"
    save_video(noise(T, 0), folder / "a.mkv", fps=10)
    (folder / "a_latest.mkv").symlink_to(folder / "a.mkv")
    save_video(noise(T, 1), folder / "b.mkv", fps=20)
    with pytest.warns(UserWarning, match="are one video"):
        assert load_training_clips(folder, n_frames=4, size=8, max_clips=2).shape[0] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the clips' read has said it: not again for a preview
        assert source_rate(folder, max_clips=2) is None


def test_build_bad_input_leaves_nothing(video_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "clips.h5"
    with pytest.raises(ValueError, match=r"\.h5 or \.hdf5"):
        build_clip_cache(video_dir, tmp_path / "clips.zip", n_frames=4, size=8)
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        build_clip_cache([video_dir / "c1.mkv", tmp_path / "missing.mp4"], out, n_frames=4,
                         size=8)
    (tmp_path / "out").mkdir()
    with pytest.raises(ValueError, match="holds neither video files"):
        build_clip_cache(tmp_path / "out", out, n_frames=4, size=8)
    with pytest.raises(ValueError, match="empty list"):
        build_clip_cache([], out, n_frames=4, size=8)
    # A video given twice, by its name or through a link: its clips were cached twice.
    first, link = video_dir / "c1.mkv", tmp_path / "link.mkv"
    link.symlink_to(first)
    with pytest.raises(ValueError, match=re.escape(
            f"the source {first} is given twice: its clips would be in the cache twice; "
            "give each video once")):
        build_clip_cache([first, video_dir / "c2.mkv", first], out, n_frames=4, size=8)
    with pytest.raises(ValueError, match=re.escape(f"the sources {first} and {link} are one "
                                                   "video: its clips")):
        build_clip_cache([first, link], out, n_frames=4, size=8)
    with pytest.raises(ValueError, match="stride"):
        build_clip_cache(video_dir, out, n_frames=4, size=8, stride=0)
    with pytest.raises(ValueError, match="clips_per_video"):
        build_clip_cache(video_dir, out, n_frames=4, size=8, clips_per_video=0)
    with pytest.raises(ValueError, match="compression must be 'gzip', 'lzf' or None"):
        build_clip_cache(video_dir, out, n_frames=4, size=8, compression="szip")
    # Stored as the cache's channels attribute: a bool there, read back as equal to 1.
    with pytest.raises(ValueError, match="channels must be 1 or 3, got True"):
        build_clip_cache(video_dir, out, n_frames=4, size=8, channels=True)

    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 100)
    # The garbage file comes after a good one: the first clip is already in the temp file.
    with pytest.raises(ValueError, match=r"garbage\.mp4"):
        build_clip_cache([video_dir / "c1.mkv", garbage], out, n_frames=4, size=8)
    assert not out.exists() and leftovers(out.parent) == []
    # Several clips asked of it: unreadable still, not told as too short for them.
    with pytest.raises(ValueError, match=r"garbage\.mp4") as err:
        build_clip_cache([garbage], out, n_frames=4, size=8, clips_per_video=2)
    assert "too short" not in str(err.value) and not isinstance(err.value, TooFewFramesError)

    # A failed rebuild leaves the previous cache untouched.
    build_clip_cache([video_dir / "c1.mkv"], out, n_frames=4, size=8)
    before = out.read_bytes()
    with pytest.raises(ValueError, match=r"garbage\.mp4"):
        build_clip_cache([video_dir / "c2.mkv", garbage], out, n_frames=4, size=8)
    assert out.read_bytes() == before and leftovers(out.parent) == []


def test_skip_unreadable(video_dir: Path, tmp_path: Path) -> None:
    garbage = video_dir / "c5.mp4"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.warns(UserWarning, match=r"skipping .*c5\.mp4"):
        cache = build_clip_cache(video_dir, tmp_path / "c.h5", n_frames=4, size=8,
                                 skip_unreadable=True)
    dataset = VideoClips(cache)
    assert len(dataset) == 3 and str(garbage) not in dataset.sources
    with h5py.File(cache, "r") as h5:
        skipped = list(h5.attrs["skipped"])
    assert len(skipped) == 1 and skipped[0].startswith(f"{garbage}: ")

    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no clips to write"):
        build_clip_cache([garbage], tmp_path / "none.h5", n_frames=4, size=8,
                         skip_unreadable=True)
    assert not (tmp_path / "none.h5").exists() and leftovers(tmp_path) == []


def test_names_that_are_not_utf8(video_dir: Path, tmp_path: Path) -> None:
    """A zip made on Windows unpacks with its Latin-1 (or CP437) name bytes: such a clip is read
    and recorded with the bytes escaped; writing its name failed after every clip was decoded,
    naming no file."""
    try:
        (video_dir / "c1.mkv").rename(video_dir / os.fsdecode(b"caf\xe9.mkv"))
        (video_dir / os.fsdecode(b"bris\xe9.mp4")).write_bytes(b"\x00" * 64)
    except (OSError, UnicodeError):  # a file system that takes UTF-8 names only
        pytest.skip("this file system refuses names that are not UTF-8")
    with pytest.warns(UserWarning, match="skipping"):
        cache = build_clip_cache(video_dir, tmp_path / "c.h5", n_frames=4, size=8,
                                 skip_unreadable=True)
    assert VideoClips(cache).sources[-1] == f"{video_dir}/caf\\xe9.mkv"
    with h5py.File(cache, "r") as h5:
        assert h5.attrs["skipped"][0].startswith(f"{video_dir}/bris\\xe9.mp4: ")


def test_skip_unreadable_skips_and_names_a_source_too_short_for_its_clips(
        video_dir: Path, tmp_path: Path) -> None:
    """c2.mkv has 6 frames, c1.mkv 7 and c10.mkv 8: a source without a single clip, or without
    all the clips asked of it, is skipped as too short, saying for what."""
    c1, c2 = video_dir / "c1.mkv", video_dir / "c2.mkv"
    with pytest.warns(UserWarning, match=r"skipping .*c2\.mkv: has 6 frames"):
        cache = build_clip_cache(video_dir, tmp_path / "a.h5", n_frames=7, size=8,
                                 clips_per_video=None, skip_unreadable=True)
    with h5py.File(cache, "r") as h5:
        assert list(h5.attrs["skipped"]) == [
            f"{c2}: has 6 frames from start_frame=0, fewer than n_frames=7"]
    assert VideoClips(cache).sources == [str(c1), str(video_dir / "c10.mkv")]

    with pytest.warns(UserWarning, match=r"skipping .*c[12]\.mkv: .*too short for"):
        cache = build_clip_cache(video_dir, tmp_path / "b.h5", n_frames=4, size=8,
                                 clips_per_video=2, skip_unreadable=True)
    with h5py.File(cache, "r") as h5:
        skipped = list(h5.attrs["skipped"])
    assert [entry.partition(": ")[0] for entry in skipped] == [str(c1), str(c2)]
    for source, entry in zip((c1, c2), skipped):
        assert entry.startswith(f"{source}: {source} is too short for clips_per_video=2 clips "
                                "of 4 frames every 4 frames (8 frames from start_frame=0)")
    assert len(VideoClips(cache)) == 2


def test_skip_unreadable_skips_a_folders_link_to_nothing(video_dir: Path, tmp_path: Path
                                                        ) -> None:
    link = video_dir / "c9.mkv"
    link.symlink_to(tmp_path / "unmounted.mkv")
    with pytest.raises(ValueError, match=r"c9\.mkv: a link to"):
        build_clip_cache(video_dir, tmp_path / "c.h5", n_frames=4, size=8)
    with pytest.warns(UserWarning, match=r"skipping .*c9\.mkv"):
        cache = build_clip_cache(video_dir, tmp_path / "c.h5", n_frames=4, size=8,
                                 skip_unreadable=True)
    assert len(VideoClips(cache)) == 3
    # Rebuilt over that cache, the link to nothing is skipped again, not compared with it.
    with pytest.warns(UserWarning, match=r"skipping .*c9\.mkv"):
        build_clip_cache(video_dir, cache, n_frames=4, size=8, skip_unreadable=True)
    with pytest.raises(FileNotFoundError, match="video not found"):  # named: still refused
        build_clip_cache([link], tmp_path / "d.h5", n_frames=4, size=8, skip_unreadable=True)


# ------------------------------------------------------------------------------------------
# VideoClips as a Dataset
# ------------------------------------------------------------------------------------------


def test_video_clips_dataset_contract(video_dir: Path, tmp_path: Path) -> None:
    cache = build_clip_cache(video_dir, tmp_path / "cache" / "clips.h5", n_frames=4, size=8)
    dataset = VideoClips(cache)
    assert dataset._file is None  # __init__ reads metadata and closes the file again
    assert len(dataset) == 3 and dataset.size == (8, 8) and dataset.n_frames == 4
    assert dataset.fps is None and len(dataset.sources) == 3
    text = repr(dataset)
    assert text.startswith("VideoClips(") and "n_frames=4" in text and "n=3" in text
    assert "size=(8, 8)" in dataset.extra_repr()
    assert dataset.extra_repr().endswith(", fps=source")  # the sources' own rates
    assert torch.equal(dataset[-1], dataset[2]) and torch.equal(dataset[-3], dataset[0])
    for past in (3, -4):
        with pytest.raises(IndexError):
            dataset[past]

    flipped = VideoClips(tmp_path / "cache", transform=lambda clip: clip.flip(-1))  # folder root
    assert torch.equal(flipped[0], dataset[0].flip(-1))

    clone = pickle.loads(pickle.dumps(dataset))  # open handles never travel
    assert clone._file is None and torch.equal(clone[1], dataset[1])
    dataset.close()
    assert dataset._file is None and torch.equal(dataset[0], clone[0])  # reopens

    # The parent holds an open handle now; forked workers must open their own.
    assert dataset._file is not None
    loader = DataLoader(dataset, batch_size=2, num_workers=2)
    batches = torch.cat(list(loader))
    assert torch.equal(batches, stack(dataset))


def test_video_clips_bad_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        VideoClips(tmp_path / "missing.h5")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["data"] = np.zeros(3)
    with pytest.raises(ValueError, match="not a stgconv clip cache"):
        VideoClips(other)
    with h5py.File(other, "w") as h5:  # clips of another type than the uint8 levels
        h5["clips"] = np.zeros((1, 2, 4, 4, 3), np.float32)
        h5.attrs["n_frames"] = 2
    with pytest.raises(ValueError, match="not a stgconv clip cache"):
        VideoClips(other)
    with h5py.File(other, "w") as h5:  # clips of one frame each, without the frame axis
        h5["clips"] = np.zeros((1, 4, 4, 3), np.uint8)
        h5.attrs["n_frames"] = 1
    with pytest.raises(ValueError, match="not a stgconv clip cache"):
        VideoClips(other)
    with h5py.File(other, "w") as h5:  # the clips, none of a cache's attributes
        h5["clips"] = np.zeros((1, 2, 4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="not a stgconv clip cache"):
        VideoClips(other)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(other.read_bytes()[:1000])
    with pytest.raises(ValueError, match=f"cannot read clip cache {truncated}: .*truncated"):
        VideoClips(truncated)
    (tmp_path / "x.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match="not a clip cache"):
        VideoClips(tmp_path / "x.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"exactly one clip cache \(\.h5, \.hdf5\); found none"):
        VideoClips(tmp_path / "empty")
    (tmp_path / "second.hdf5").write_bytes(b"")
    with pytest.raises(ValueError, match="exactly one clip cache"):
        VideoClips(tmp_path)


@pytest.mark.parametrize("limit", [0, 20_000])
def test_a_cache_built_past_a_file_size_limit_is_a_write_error_naming_it(
        video_dir: Path, tmp_path: Path, limit: int) -> None:
    """As a quota stops it (a full disk below): HDF5 raised its own RuntimeError naming the
    temporary ("Can't decrement id ref count"), printed tracebacks as its objects were freed,
    and crashed the process later (a segfault, at exit at the latest)."""
    out = tmp_path / "cache.h5"
    with pytest.raises(WriteError,
                       match=rf"^\[Errno 27\] File too large: '{re.escape(str(out))}'$"):
        with file_size_limit(limit):
            build_clip_cache(video_dir, out, n_frames=4, size=16)
    assert not out.exists() and leftovers(tmp_path) == []


def test_a_cache_build_stops_after_the_source_whose_writes_failed(
        video_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """Not decoding the sources left, their clips kept in memory only to be thrown away. (Tiny
    clips reach the disk only as the file closes: the stream's check is made to fail here.)"""
    import stgconv.data.video as video_data

    def refused() -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    read = []

    def reading(file: Path, **kwargs) -> np.ndarray:
        read.append(file.name)
        return read_frames(file, **kwargs)

    monkeypatch.setattr(video_data, "read_frames", reading)
    monkeypatch.setattr(video_data, "stream_h5", lambda tmp, fill: stream_h5(
        tmp, lambda h5, check: fill(h5, refused)))
    with pytest.raises(WriteError, match=r"^\[Errno 28\] No space left on device: "):
        build_clip_cache(video_dir, tmp_path / "cache.h5", n_frames=4, size=16)
    assert read == ["c1.mkv"]


def test_a_cache_built_on_a_full_disk_is_a_write_error_naming_it(video_dir: Path,
                                                                  small_disk: Path) -> None:
    fill(small_disk / "filler", leaving=20_000)
    out = small_disk / "cache.h5"
    with pytest.raises(WriteError, match=rf"^\[Errno 28\] No space left on device: "
                                         rf"'{re.escape(str(out))}'$"):
        build_clip_cache(video_dir, out, n_frames=4, size=16)
    assert [p.name for p in small_disk.iterdir()] == ["filler"]


# ------------------------------------------------------------------------------------------
# The prepare script
# ------------------------------------------------------------------------------------------


def test_datasets_is_not_a_package() -> None:
    assert not (REPO / "datasets" / "__init__.py").exists()
    assert not (REPO / "datasets" / "video" / "__init__.py").exists()


def test_prepare_keeps_a_cache_another_process_wrote_during_its_build(
        video_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, load_script,
        monkeypatch) -> None:
    """Without --overwrite, a cache that another prepare.py (of a sweep) put in place while
    this one built is kept, and this one fails naming it: it passed the check made before
    the build."""
    prepare = load_script("datasets/video/prepare.py")
    out = tmp_path / "prep.h5"
    cache_written_meanwhile(monkeypatch, "stgconv.data.video", out)
    assert prepare.main([str(video_dir), str(out), "--frames", "3", "--size", "8"]) == 2
    assert "written meanwhile" in capsys.readouterr().err
    assert out.read_bytes() == ANOTHER_CACHE and leftovers(tmp_path) == []


def test_a_cache_already_there_is_refused_before_any_source_is_decoded(
        video_dir: Path, tmp_path: Path, monkeypatch) -> None:
    refused_before_building(monkeypatch, "stgconv.data.video",
                            lambda out: build_clip_cache(video_dir, out, n_frames=3, size=8,
                                                         overwrite=False),
                            tmp_path / "clips.h5")


def test_prepare_main(video_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                      load_script) -> None:
    prepare = load_script("datasets/video/prepare.py")
    out = tmp_path / "prep.h5"
    argv = [str(video_dir), str(out), "--frames", "3", "--size", "8x6",
            "--clips-per-video", "all", "--stride", "2", "--compression", "lzf"]
    assert prepare.main(argv) == 0
    printed = capsys.readouterr().out
    assert "clips:   8 from 3 videos" in printed  # 7, 6, 8 frames: 3 + 2 + 3 clips
    assert "(8, 3, 8, 6, 3)" in printed and "MiB" in printed and " s" in printed
    dataset = VideoClips(out)
    assert len(dataset) == 8 and dataset.size == (8, 6)

    assert prepare.main(argv) == 2  # exists, no --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert prepare.main([*argv, "--overwrite"]) == 0
    capsys.readouterr()

    files = [str(video_dir / "c2.mkv"), str(video_dir / "c1.mkv")]  # a list keeps its order
    assert prepare.main([*files, str(tmp_path / "two.h5"), "--frames", "4", "--size", "8"]) == 0
    assert VideoClips(tmp_path / "two.h5").sources == files

    for bad in ([str(tmp_path / "nowhere"), str(tmp_path / "a.h5"), "--frames", "4",
                 "--size", "8"],
                [str(video_dir), str(tmp_path / "a.txt"), "--frames", "4", "--size", "8"],
                [str(video_dir), str(tmp_path / "a.h5"), "--frames", "99", "--size", "8"],
                [str(video_dir), str(tmp_path / "a.h5"), "--frames", "0", "--size", "8"],
                # a rate a file cannot store (it was a ZeroDivisionError traceback)
                [str(video_dir), str(tmp_path / "a.h5"), "--frames", "4", "--size", "8",
                 "--fps", "1e-7"]):
        assert prepare.main(bad) == 2
        assert capsys.readouterr().err.startswith("python datasets/video/prepare.py: error: ")
    assert not (tmp_path / "a.h5").exists() and leftovers(tmp_path) == []
    with pytest.raises(SystemExit):
        prepare.main([str(video_dir), str(out), "--frames", "4", "--size", "0"])


def test_prepare_reads_sizes_and_clip_counts_as_documented(load_script) -> None:
    """--size: N or HxW (an X too) of positive ints; --clips-per-video: a positive int or
    'all'; anything else is the option's error."""
    prepare = load_script("datasets/video/prepare.py")
    assert (prepare._size("150"), prepare._size("8X6")) == (150, (8, 6))
    assert (prepare._clips_per_video("all"), prepare._clips_per_video("3")) == (None, 3)
    for parse, text in ((prepare._size, "8x6x2"), (prepare._size, "x"), (prepare._size, "8x0"),
                        (prepare._clips_per_video, "0"), (prepare._clips_per_video, "some")):
        with pytest.raises(prepare.argparse.ArgumentTypeError):
            parse(text)


def test_prepare_defaults_and_its_exact_summary(video_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture,
                                               load_script) -> None:
    """Without options: one clip per video, gzip; the summary counts videos (not clips), says
    nothing of skipped files when none were, and gives the sizes in MiB and the time in s."""
    prepare = load_script("datasets/video/prepare.py")
    out = tmp_path / "prep.h5"
    # 64 x 64: the uncompressed size, 3 * 3 * 64 * 64 * 3 bytes, shows as 0.1 MiB.
    assert prepare.main([str(video_dir), str(out), "--frames", "3", "--size", "64"]) == 0
    with h5py.File(out, "r") as h5:
        assert h5["clips"].compression == "gzip"
    lines = capsys.readouterr().out.splitlines()
    on_disk = f"{out.stat().st_size / 2**20:.1f}"
    assert lines[1:4] == ["  clips:   3 from 3 videos",
                          "  shape:   (3, 3, 64, 64, 3) uint8 (N, T, H, W, C)",
                          f"  on disk: {on_disk} MiB (0.1 MiB uncompressed)"]
    assert re.fullmatch(r"  time:    \d+\.\d s", lines[4]) and len(lines) == 5


def test_prepare_speaks_of_one_video_and_of_its_own_options(video_dir: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture,
                                                           load_script) -> None:
    """The summary read "1 from 1 videos"; the errors and warnings named build_clip_cache's
    arguments (n_frames, start_frame, clips_per_video), which the user of the script never
    typed, for --frames, --start-frame and --clips-per-video."""
    prepare = load_script("datasets/video/prepare.py")
    c2 = video_dir / "c2.mkv"  # T frames
    assert prepare.main([str(c2), str(tmp_path / "one.h5"), "--frames", "3", "--size", "8"]) == 0
    assert "  clips:   1 from 1 video\n" in capsys.readouterr().out

    assert prepare.main([str(c2), str(tmp_path / "long.h5"), "--frames", str(T), "--size", "8",
                         "--start-frame", "2"]) == 2
    err = capsys.readouterr().err
    assert f"asked for --frames={T} from --start-frame=2, but {c2} has" in err
    assert prepare.main([str(video_dir), str(tmp_path / "two.h5"), "--frames", "4",
                         "--size", "8", "--clips-per-video", "2", "--skip-unreadable"]) == 0
    err = capsys.readouterr().err
    # The clips' span, 8 frames, was the read's "n_frames=8", which is not --frames (4).
    assert (f"warning: skipping {c2}: {c2} is too short for --clips-per-video=2 clips of 4 "
            f"frames every 4 frames (8 frames from --start-frame=0): it has {T} from there\n"
            in err)
    assert not re.search(r"\b(n_frames|start_frame|clips_per_video)\b|--frames=8", err)


def test_prepare_passes_its_options_to_the_cache(video_dir: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture,
                                                 load_script) -> None:
    """--start-frame, --channels and --compression none reach the cache; with
    --skip-unreadable a file that is no video is left out, and counted; a folder given with
    other sources is read as a folder of frames."""
    prepare = load_script("datasets/video/prepare.py")
    (video_dir / "broken.mkv").write_bytes(b"not a video")
    out = tmp_path / "grey.h5"
    assert prepare.main([str(video_dir), str(out), "--frames", "3", "--size", "8",
                         "--start-frame", "1", "--channels", "1", "--compression", "none",
                         "--skip-unreadable"]) == 0
    assert "clips:   3 from 3 videos (1 skipped)" in capsys.readouterr().out
    clips = VideoClips(out)
    assert clips.start_frames == [1, 1, 1] and clips[0].shape == (1, 3, 8, 8)
    with h5py.File(out, "r") as h5:
        assert h5["clips"].compression is None
    # Among several sources a folder is one video's frames: a folder of videos is not read.
    assert prepare.main([str(video_dir), str(video_dir / "c1.mkv"), str(tmp_path / "two.h5"),
                         "--frames", "3", "--size", "8"]) == 2
    assert "no frame images" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# Real clips
# ------------------------------------------------------------------------------------------


@pytest.mark.shared_data("video/actions")
def test_real_action_clips(tmp_path: Path, shared_data: Path) -> None:
    actions = shared_data / "video" / "actions"
    first_two = list_videos(actions)[:2]
    assert [p.name for p in first_two] == ["3_animal.mp4", "6_chimpanzee.mp4"]
    cache = build_clip_cache(first_two, tmp_path / "actions.h5", n_frames=8, size=32)
    decoded = load_training_clips(actions, n_frames=8, size=32, max_clips=2)
    assert decoded.shape == (2, 3, 8, 32, 32)
    dataset = VideoClips(cache)
    assert dataset.sources == [str(p) for p in first_two]
    assert torch.equal(stack(dataset), decoded)
    assert decoded.std() > 0.05  # real content, not a blank frame


def test_overlapping_clips_per_video_are_all_cut(tmp_path) -> None:
    source = save_video(noise(8, 3), tmp_path / "v.mkv")
    full = load_video(source, size=8)
    clips = VideoClips(build_clip_cache([source], tmp_path / "o.h5", n_frames=4, size=8,
                                        clips_per_video=3, stride=2))
    assert len(clips) == 3 and clips.start_frames == [0, 2, 4]
    assert torch.equal(stack(clips), torch.stack([full[:, s:s + 4] for s in (0, 2, 4)]))


def test_a_cache_whose_clips_lie_in_another_file_is_refused(video_dir: Path,
                                                          tmp_path: Path) -> None:
    """A cache handed over may take its clips from any file here (a virtual dataset): they
    were read as its own."""
    import h5py

    cache = build_clip_cache(video_dir, tmp_path / "clips.h5", n_frames=4, size=12)
    relinked = tmp_path / "relinked.h5"
    relinked.write_bytes(cache.read_bytes())
    with h5py.File(relinked, "r+") as h5:
        shape, dtype = h5["clips"].shape, h5["clips"].dtype
        del h5["clips"]
        layout = h5py.VirtualLayout(shape, dtype)
        layout[:] = h5py.VirtualSource(str(cache), "clips", shape)
        h5.create_virtual_dataset("clips", layout)
    with pytest.raises(ValueError, match=r"relinked\.h5: dataset '/clips' keeps its data in "
                                         r"another file \(a virtual dataset over .*clips\.h5"):
        VideoClips(relinked)
    # Every dataset it reads, through an external link too (the sources and start frames
    # are read at once, the clips later through the same file).
    for name in ("clips", "source", "start_frame"):
        linked = linked_copy(cache, name, cache)
        with pytest.raises(ValueError, match=rf"linked_{name}\.h5: an external link in it leads "
                                             rf"to dataset '/{name}' of .*clips\.h5"):
            VideoClips(linked)


def test_a_cache_rebuilt_after_its_index_was_read_is_refused(video_dir: Path,
                                                             tmp_path: Path) -> None:
    """Another process rebuilds the cache (by default over the old one) between the dataset's
    index and its first read: the clips would be the new cache's, the index the old one's."""
    cache = build_clip_cache(video_dir, tmp_path / "clips.h5", n_frames=4, size=12)
    clips = VideoClips(cache)
    build_clip_cache(video_dir, cache, n_frames=3, size=12)  # replaced: the default
    with pytest.raises(ValueError, match="clips.h5 was replaced"):
        clips[0]
    assert VideoClips(cache)[0].shape[1] == 3  # read again: the new one's clips


def test_prepare_refuses_a_cache_that_is_one_of_its_sources(
        video_dir: Path, capsys: pytest.CaptureFixture, load_script) -> None:
    """A rebuild from a folder's every file (prepare.py DIR/* DIR/clips.h5 --overwrite, the
    shell listing the first build's cache): it failed as a video that cannot be opened, or with
    --skip-unreadable was listed as a skipped source of its own replacement."""
    prepare = load_script("datasets/video/prepare.py")
    out = video_dir / "clips.h5"
    videos = [str(path) for path in sorted(video_dir.glob("*.mkv"))]
    assert prepare.main([*videos, str(out), "--frames", "3", "--size", "8"]) == 0
    built = out.read_bytes()
    capsys.readouterr()
    for extra in ([], ["--skip-unreadable"]):
        # DIR/* now lists the cache too, before OUT.
        assert prepare.main([*videos, str(out), str(out), "--frames", "3", "--size", "8",
                             "--overwrite", *extra]) == 2
        err = capsys.readouterr().err
        assert err == (f"python datasets/video/prepare.py: error: the cache {out} is one of the "
                       "sources: it is no video, and writing it would replace a source; leave it "
                       "out of the sources\n"), err
        assert out.read_bytes() == built and leftovers(video_dir) == []

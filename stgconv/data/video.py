"""Video datasets: training clips from video files or frame folders, and an HDF5 cache of clips.

Decoding video is the slow part of a training epoch, so clips can be decoded once into an HDF5
cache (:func:`build_clip_cache`, or ``python datasets/video/prepare.py``) and read back by
:class:`VideoClips`. A clip is ``(C, T, H, W)`` float in ``[-1, 1]`` everywhere in stgconv; the
cache stores the uint8 frames exactly as decoded, so a clip read from the cache equals the clip
:func:`stgconv.io.video.load_video` returns for the same file and settings, bit for bit.

Cache layout (format 1)::

    clips        uint8   (N, T, H, W, C)  one chunk per clip, gzip or lzf compressed
    source       utf-8   (N,)             the video (or frame folder) each clip was cut from
    start_frame  int64   (N,)             index of the clip's first frame in its source's frames
    source_fps   float64 (N,)             the source's own frame rate (NaN for frame folders)
    attrs: format_version, n_frames, size (H, W), channels, fps (0: sources' own rates),
           start_frame, clips_per_video (0: as many as fit), stride, layout, value_range,
           resize, created_by, skipped (one "path: reason" per skipped source)
"""

from __future__ import annotations

import errno
import operator
import os
import warnings
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from stgconv.checks import as_int, as_size, check_cache_version, check_output
from stgconv.data.base import NamedDataset
from stgconv.io.atomic import atomic_write
from stgconv.io.folder import distinct_files, folder_names, list_files
from stgconv.io.h5 import LazyH5, as_text, check_inside, stream_h5, to_text
from stgconv.io.image import IMAGE_SUFFIXES, check_channels, from_levels
from stgconv.io.video import (
    VIDEO_SUFFIXES,
    TooFewFramesError,
    check_fps,
    frame_rate,
    is_animated,
    load_video,
    read_frames,
)
from stgconv.version import __version__

# h5py and PyAV (av) take a while to import; they load where a cache is built or read and where
# a source's frame rate is probed.
if TYPE_CHECKING:
    import h5py

CACHE_SUFFIXES = (".h5", ".hdf5")
"""Suffixes of clip caches; :func:`load_training_clips` reads such a path as a cache."""

CACHE_FORMAT_VERSION = 1
CACHE_BUILDER = ("stgconv.data.video.build_clip_cache (from the command line: "
                 "datasets/video/prepare.py of the source tree)")
"""How messages tell a user to make a clip cache: the script is not in an installed copy."""
VALUE_RANGE = "uint8 u in [0, 255]; the clip in stgconv is u / 127.5 - 1, in [-1, 1]"

# Sources are decoded in full at the cache's frame size; a compression level above 4 costs
# much more time for little gain on natural video.
_GZIP_LEVEL = 4


# --------------------------------------------------------------------------------------------
# Loading training clips
# --------------------------------------------------------------------------------------------


def load_training_clips(
    path: str | Path,
    *,
    n_frames: int,
    size: int | tuple[int, int],
    start_frame: int = 0,
    fps: float | None = None,
    channels: int = 3,
    max_clips: int | None = None,
) -> Tensor:
    """Training tensor ``(N, C, T, H, W)`` in ``[-1, 1]``, ``T = n_frames``, ``(H, W) = size``.

    ``path`` is one of:

    - a video file: ``N = 1``;
    - a folder of frame images (``IMAGE_SUFFIXES``, natural name order): ``N = 1``;
    - a folder of video files (``VIDEO_SUFFIXES``): one clip per file, files in natural name
      order (``3_animal.mp4`` before ``12_donkey.mp4``), the first ``max_clips`` of them; a
      link to another of them is read once (:func:`list_videos`);
    - an HDF5 cache from :func:`build_clip_cache` (suffix ``.h5``/``.hdf5``): its first
      ``max_clips`` clips. The cache must have been built with the same ``n_frames``, ``size``,
      ``start_frame``, ``fps`` and ``channels``; a mismatch is an error, not a silent resize.

    Each clip is frames ``start_frame ...`` of its source, resampled to ``fps`` when given, each
    frame resized to ``size`` (bilinear, no crop) as in :func:`stgconv.io.video.load_video`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: bad arguments; a folder holding neither videos nor frame images (or both);
            a clip shorter than ``start_frame + n_frames`` frames (the message names the clip
            and its length); an unreadable video; a cache built with other settings.
    """
    path = Path(path)
    n_frames, pair, start_frame, fps = _clip_settings(n_frames, size, start_frame, fps, channels)
    if max_clips is not None:
        max_clips = as_int(max_clips, "max_clips", minimum=1)
    if not path.exists():
        raise FileNotFoundError(f"training video not found: {path}")

    if path.is_file() and path.suffix.lower() in CACHE_SUFFIXES:
        dataset = VideoClips(path)
        _check_cache_matches(dataset, n_frames=n_frames, size=pair, start_frame=start_frame,
                             fps=fps, channels=channels)
        count = len(dataset) if max_clips is None else min(max_clips, len(dataset))
        clips = [dataset[i] for i in range(count)]
        dataset.close()
        return torch.stack(clips)

    options = dict(start_frame=start_frame, n_frames=n_frames, size=pair, fps=fps,
                   channels=channels)
    if path.is_file():
        return load_video(path, **options).unsqueeze(0)
    if _folder_kind(path) == "frames":
        return load_video(path, **options).unsqueeze(0)
    files = list_videos(path)
    if max_clips is not None:
        files = files[:max_clips]
    return torch.stack([load_video(file, **options) for file in files])


def source_rate(path: str | Path, *, max_clips: int | None = None) -> float | None:
    """The frame rate that the clips :func:`load_training_clips` reads from ``path`` at their
    sources' own rates (no ``fps``) were recorded at, where they share one: a video file's;
    that of the (first ``max_clips``) videos of a folder; a cache's clips' (its ``source_fps``;
    a cache built at an ``fps``: that one). ``None`` where no one rate is known: a frame
    folder, sources of different rates, a cache of frame folders (no ``source_fps``), a file
    that states none, a path that no longer exists or that cannot be read."""
    path = Path(path)
    try:
        if path.is_file() and path.suffix.lower() in CACHE_SUFFIXES:
            cache = VideoClips(path)  # reads the metadata only
            rates = cache.source_fps[:max_clips] if cache.fps is None else [cache.fps]
        elif path.is_file():
            rates = [frame_rate(path)]
        elif path.is_dir() and _folder_kind(path) == "videos":
            # The files load_training_clips reads: counted as files, a link to one of them
            # took the place of a later video among the first max_clips, its rate unread.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the clips' read warns of the link
                files = list_videos(path)[:max_clips]
            rates = [frame_rate(file) for file in files]
        else:
            return None
    except (OSError, ValueError):  # previews play at a default rate: no reason to fail them
        return None
    # NaN: a cache's clip of a frame folder.
    if any(rate is None or not np.isfinite(float(rate)) for rate in rates):
        return None
    shared = {float(rate) for rate in rates}
    return shared.pop() if len(shared) == 1 else None


def list_videos(folder: str | Path, *, dangling_links: bool = False) -> list[Path]:
    """The video files (``VIDEO_SUFFIXES``) directly inside ``folder``, in natural name order,
    each video once: a name that is a link to another's file (or a hard link) is left out,
    with a warning naming both.

    Hidden files are ignored. Raises ``ValueError`` when there are none. ``dangling_links``:
    list links to nothing too (see :func:`stgconv.io.folder.list_files`).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"video folder not found: {folder}")
    files = list_files(folder, VIDEO_SUFFIXES, dangling_links=dangling_links)
    if not files:
        raise ValueError(f"no video files ({', '.join(VIDEO_SUFFIXES)}) in folder {folder}")
    return distinct_files(files, "video")


def is_frame_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder of frame images (one clip), not a video file or a folder
    of videos; raises ``ValueError`` for a folder that mixes both."""
    path = Path(path)
    return path.is_dir() and _folder_kind(path) == "frames"


def _folder_kind(folder: Path) -> str:
    """``"videos"`` or ``"frames"``: what a folder holds, decided by its file suffixes.

    ``.gif`` is both: the GIFs are videos where any of them is animated, frame images where
    all are still (the frames a tool exported as GIFs); a folder mixing video files with frame
    images is ambiguous and refused.
    """
    # A link to nothing still says by its suffix what the folder holds.
    files = list_files(folder, dangling_links=True)
    suffixes = {p.suffix.lower() for p in files}
    videos = suffixes & set(VIDEO_SUFFIXES)
    images = suffixes & (set(IMAGE_SUFFIXES) - set(VIDEO_SUFFIXES))
    gifs = [p for p in files if p.suffix.lower() == ".gif"]
    # Taken for videos, a folder of still GIF frames was refused as one-frame clips ("f0.gif
    # has 1 frames"), where load_video reads it as the frames it is.
    if gifs and not any(is_animated(gif) for gif in gifs):
        videos -= {".gif"}
        images |= {".gif"}
    if videos and images:
        raise ValueError(
            f"folder {folder} holds both video files ({', '.join(sorted(videos))}) and frame "
            f"images ({', '.join(sorted(images))}); keep one kind per folder"
        )
    if videos:
        return "videos"
    if images:
        return "frames"
    names = folder_names(folder)
    if names:  # UCF101's class folders, a DynTex folder of frame folders: not read inside
        raise ValueError(
            f"folder {folder} holds no video files or frame images, only folders ({names}), "
            f"and folders inside are not read: give one of them (a folder of videos or of one "
            f"video's frames), or cache them all with {CACHE_BUILDER}, which takes "
            f"several videos and frame folders (e.g. {folder}/*/*.avi or {folder}/*)"
        )
    raise ValueError(
        f"folder {folder} holds neither video files ({', '.join(VIDEO_SUFFIXES)}) nor frame "
        f"images ({', '.join(IMAGE_SUFFIXES)})"
    )


# --------------------------------------------------------------------------------------------
# Building the cache
# --------------------------------------------------------------------------------------------


def build_clip_cache(
    sources: str | Path | Sequence[str | Path],
    out_path: str | Path,
    *,
    n_frames: int,
    size: int | tuple[int, int],
    start_frame: int = 0,
    fps: float | None = None,
    channels: int = 3,
    clips_per_video: int | None = 1,
    stride: int | None = None,
    compression: str | None = "gzip",
    skip_unreadable: bool = False,
    overwrite: bool = True,
) -> Path:
    """Decode each source once and write its clips to an HDF5 cache at ``out_path``.

    Clip ``j`` of a source holds its output frames ``j * stride ... j * stride + n_frames - 1``,
    where output frame ``k`` is the source's frame ``start_frame + k`` (or, with ``fps``, the
    frame :func:`stgconv.io.video.load_video` picks for ``k``). The layout is in this module's
    docstring; the file is written to a temporary file beside ``out_path`` and renamed into place
    only when complete, so an error or a crash never leaves a half-written cache.

    Args:
        sources: a folder of video files (natural name order, a link to another of them read
            once: :func:`list_videos`), a folder of one video's frame
            images, or a list of video files (or frame folders), kept in the order given.
        out_path: the cache, ending in ``.h5`` or ``.hdf5``; replaced if it exists.
        n_frames, size, start_frame, fps, channels: as in :func:`load_training_clips`.
        clips_per_video: clips cut from each source; ``None``: as many as fit.
        stride: output frames between the starts of consecutive clips of one source; default
            ``n_frames`` (back-to-back clips). Smaller values make overlapping clips.
        compression: ``"gzip"`` (level 4, smaller), ``"lzf"`` (faster) or ``None``.
        skip_unreadable: skip sources that fail to decode (a folder's links to nothing too) or
            are too short for the clips asked, with a warning, and list them (with the reason)
            in ``attrs["skipped"]``. Off by default: such a source is an error that names it.
        overwrite: replace a cache already at ``out_path``. ``False``: refuse one there before
            the build, and once it is done one another process wrote meanwhile
            (``FileExistsError``).

    Returns:
        ``out_path`` as a ``Path``.

    Raises:
        FileNotFoundError: a source does not exist.
        ValueError: bad arguments; no video files in the folder; a source that cannot be read
            or is too short (unless ``skip_unreadable``); no clip at all to write; an
            ``out_path`` that is one of the sources; a source given twice (or a link to
            another).
    """
    out_path = Path(out_path)
    if out_path.suffix.lower() not in CACHE_SUFFIXES:
        raise ValueError(f"the cache must end in {' or '.join(CACHE_SUFFIXES)}, got {out_path}")
    n_frames, pair, start_frame, fps = _clip_settings(n_frames, size, start_frame, fps, channels)
    if clips_per_video is not None:
        clips_per_video = as_int(clips_per_video, "clips_per_video", minimum=1)
    stride = n_frames if stride is None else as_int(stride, "stride", minimum=1)
    if compression not in ("gzip", "lzf", None):
        raise ValueError(f"compression must be 'gzip', 'lzf' or None, got {compression!r}")
    check_output(out_path, "out_path", folder=False)  # a folder there: before the build
    if not overwrite and out_path.exists():
        # Before the decoding: found after it, the refusal came when every source had been
        # read, and blamed "another process" for a cache that was there all along.
        raise FileExistsError(errno.EEXIST, "it exists; pass overwrite=True to replace it",
                              str(out_path))
    files = _resolve_sources(sources, dangling_links=skip_unreadable)
    # A rebuild from a folder's every file (prepare.py DIR/* DIR/clips.h5 --overwrite) lists
    # the cache itself: it failed as a video that cannot be opened, or with skip_unreadable
    # was listed as a skipped source of its own replacement.
    if out_path.exists() and any(file.exists() and os.path.samefile(file, out_path)
                                 for file in files):
        raise ValueError(f"the cache {out_path} is one of the sources: it is no video, and "
                         "writing it would replace a source; leave it out of the sources")

    def fill(h5: h5py.File, check: Callable[[], None]) -> None:
        _write_cache(
            h5, files, n_frames=n_frames, size=pair, start_frame=start_frame, fps=fps,
            channels=channels, clips_per_video=clips_per_video, stride=stride,
            compression=compression, skip_unreadable=skip_unreadable, check=check,
        )

    return atomic_write(out_path, partial(stream_h5, fill=fill), replace=overwrite)


def _resolve_sources(sources: str | Path | Sequence[str | Path], *, dangling_links: bool
                     ) -> list[Path]:
    if isinstance(sources, (str, os.PathLike)):
        folder = Path(sources)
        if not folder.exists():
            raise FileNotFoundError(f"video folder not found: {folder}")
        if not folder.is_dir():
            raise ValueError(
                f"sources must be a folder of videos or a list of video files; got the file "
                f"{folder} (pass [{str(folder)!r}] for a single video)"
            )
        # A folder of frame images is one clip's frames, as load_training_clips reads it.
        return ([folder] if _folder_kind(folder) == "frames"
                else list_videos(folder, dangling_links=dangling_links))
    files = [Path(source) for source in sources]
    if not files:
        raise ValueError("sources is an empty list; give at least one video file")
    missing = [str(file) for file in files if not file.exists()]
    if missing:  # checked before decoding anything: a typo should not cost minutes of work
        raise FileNotFoundError(f"video not found: {', '.join(missing)}")
    # Else its clips went into the cache twice, weighing it double in training without a word
    # (a shell glob and a name beside it: prepare.py clips/*.mp4 clips/a.mp4 out.h5).
    given: dict[Path, Path] = {}
    for file in files:
        first = given.setdefault(file.resolve(), file)
        if first is not file:
            which = (f"the source {file} is given twice" if file == first
                     else f"the sources {first} and {file} are one video")
            raise ValueError(f"{which}: its clips would be in the cache twice; give each "
                             "video once")
    return files


def _write_cache(
    h5: h5py.File, files: list[Path], *, n_frames: int, size: tuple[int, int], start_frame: int,
    fps: float | None, channels: int, clips_per_video: int | None, stride: int,
    compression: str | None, skip_unreadable: bool, check: Callable[[], None],
) -> None:
    """``check()`` after each source's clips: see :func:`stgconv.io.h5.stream_h5`."""
    import h5py

    height, width = size
    options = {"compression": compression}
    if compression == "gzip":
        options["compression_opts"] = _GZIP_LEVEL
    clips = h5.create_dataset(
        "clips", shape=(0, n_frames, height, width, channels), dtype=np.uint8,
        maxshape=(None, n_frames, height, width, channels),
        chunks=(1, n_frames, height, width, channels), **options,
    )
    per_clip = {
        "source": h5.create_dataset("source", shape=(0,), maxshape=(None,),
                                    dtype=h5py.string_dtype("utf-8")),
        "start_frame": h5.create_dataset("start_frame", shape=(0,), maxshape=(None,),
                                         dtype=np.int64),
        "source_fps": h5.create_dataset("source_fps", shape=(0,), maxshape=(None,),
                                        dtype=np.float64),
    }
    # Only the frames the clips use are decoded (all of them for clips_per_video=None).
    needed = None if clips_per_video is None else (clips_per_video - 1) * stride + n_frames
    skipped: list[str] = []
    for file in files:
        try:
            # uint8, as stored: made float on the way, a whole source (clips_per_video=None)
            # took 7x its frames' memory (500 frames at 150x150: 0.5 GB, now 0.2 GB).
            frames = read_frames(file, start_frame=start_frame, n_frames=needed, size=size,
                                 fps=fps, channels=channels)
        except (ValueError, FileNotFoundError) as err:
            problem = err
            if needed is not None and needed > n_frames and isinstance(err, TooFewFramesError):
                # The read's own message only for a start past the end: its "asked for
                # n_frames=8" is the clips' span, not this call's n_frames, which a caller
                # naming its own options (prepare.py's --frames) then misnamed.
                rate = f" at fps={fps}" if fps is not None else ""
                have = f"it has {err.available} from there" if err.available else str(err)
                problem = TooFewFramesError(
                    f"{file} is too short for clips_per_video={clips_per_video} clips of "
                    f"{n_frames} frames every {stride} frames ({needed} frames from "
                    f"start_frame={start_frame}{rate}): {have}",
                    available=err.available,
                )
            if not skip_unreadable:
                if problem is err:
                    raise
                raise problem from err
            skipped.append(f"{file}: {problem}")
            warnings.warn(f"skipping {file}: {problem}", stacklevel=2)
            continue
        starts = range(0, len(frames) - n_frames + 1, stride)
        if clips_per_video is not None:
            starts = starts[:clips_per_video]
        if len(starts) == 0:  # only with clips_per_video=None
            reason = (f"has {len(frames)} frames from start_frame={start_frame}, fewer than "
                      f"n_frames={n_frames}")
            if not skip_unreadable:
                raise ValueError(f"{file} {reason}")
            skipped.append(f"{file}: {reason}")
            warnings.warn(f"skipping {file}: {reason}", stacklevel=2)
            continue
        rate = frame_rate(file)
        step = Fraction(1) if fps is None else Fraction(rate) / check_fps(fps)
        first = clips.shape[0]
        last = first + len(starts)
        clips.resize(last, axis=0)
        for dataset in per_clip.values():
            dataset.resize(last, axis=0)
        for i, offset in enumerate(starts):
            clips[first + i] = frames[offset:offset + n_frames]
        per_clip["source"][first:last] = [to_text(str(file))] * len(starts)
        # load_video's frame picking: output k is source frame start + floor(k * step).
        per_clip["start_frame"][first:last] = [start_frame + int(k * step) for k in starts]
        per_clip["source_fps"][first:last] = float(rate) if rate else float("nan")
        check()

    if clips.shape[0] == 0:
        raise ValueError(
            f"no clips to write: all {len(files)} sources were skipped ({'; '.join(skipped)})"
        )
    attrs = h5.attrs
    attrs["format_version"] = CACHE_FORMAT_VERSION
    attrs["n_frames"] = n_frames
    attrs["size"] = np.array(size, dtype=np.int64)
    attrs["channels"] = channels
    attrs["fps"] = 0.0 if fps is None else float(fps)
    attrs["start_frame"] = start_frame
    attrs["clips_per_video"] = 0 if clips_per_video is None else clips_per_video
    attrs["stride"] = stride
    attrs["layout"] = "(N, T, H, W, C)"
    attrs["value_range"] = VALUE_RANGE
    attrs["resize"] = "bilinear (Pillow), whole frame, no crop"
    attrs["created_by"] = f"stgconv {__version__}"
    attrs.create("skipped", np.array([to_text(s) for s in skipped], dtype=object),
                 dtype=h5py.string_dtype("utf-8"))


# --------------------------------------------------------------------------------------------
# Reading the cache
# --------------------------------------------------------------------------------------------


class VideoClips(LazyH5, NamedDataset):
    """The clips of an HDF5 cache from :func:`build_clip_cache`, as ``(C, T, H, W)`` in ``[-1, 1]``.

    The file is opened on first access in each process, never in ``__init__`` (which only reads
    the metadata and closes it again), so the dataset is safe with ``DataLoader(num_workers > 0)``,
    each worker opening its own handle (:class:`stgconv.io.h5.LazyH5`).

    Args:
        root: the cache file (``.h5``/``.hdf5``), or a folder holding exactly one.
        transform: applied to each ``(C, T, H, W)`` clip.

    Attributes:
        n_frames, size, channels, fps: the cache's settings (``fps`` is ``None`` when the
            clips keep their sources' own rates).
        sources: the source path of each clip (``len(sources) == len(self)``).
        start_frames: each clip's first frame, counted in its source's frames.
        source_fps: each clip's source's own frame rate (NaN for a frame folder).
    """

    def __init__(self, root: str | Path, *,
                 transform: Callable[[Tensor], Tensor] | None = None) -> None:
        import h5py

        self.root = _find_cache(Path(root))
        self.transform = transform
        try:
            h5 = self._open_index()
        except OSError as err:  # h5py's message names no file
            raise ValueError(f"cannot read clip cache {self.root}: {err}") from err
        with h5:
            clips = h5.get("clips")
            if (not isinstance(clips, h5py.Dataset) or clips.ndim != 5
                    or clips.dtype != np.uint8 or "n_frames" not in h5.attrs):
                raise ValueError(
                    f"{self.root} is not a stgconv clip cache: expected a uint8 dataset 'clips' "
                    f"of shape (N, T, H, W, C) and its attributes; build one with "
                    f"{CACHE_BUILDER}"
                )
            check_cache_version(h5.attrs.get("format_version"), CACHE_FORMAT_VERSION, self.root,
                                rebuild=CACHE_BUILDER)
            check_inside(h5, clips)  # its rows are read later, through this same file
            self._length, self.n_frames, height, width, self.channels = clips.shape
            self.size = (height, width)
            fps = float(h5.attrs["fps"])
            self.fps = fps if fps > 0 else None
            self.start_frame = int(h5.attrs["start_frame"])
            self.sources = [as_text(s) for s in check_inside(h5, h5["source"])[()]]
            self.start_frames = [int(s) for s in check_inside(h5, h5["start_frame"])[()]]
            self.source_fps = [float(r) for r in check_inside(h5, h5["source_fps"])[()]]

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> Tensor:
        index = operator.index(index)
        if not -self._length <= index < self._length:
            raise IndexError(f"clip index {index} out of range for {self._length} clips")
        array = self._h5()["clips"][index % self._length]  # (T, H, W, C) uint8
        # from_levels, as load_video: cached and decoded clips are equal bit for bit.
        clip = from_levels(torch.from_numpy(array).permute(3, 0, 1, 2).float())
        return self.transform(clip) if self.transform is not None else clip

    def extra_repr(self) -> str:
        fps = "source" if self.fps is None else f"{self.fps:g}"
        return (f"root={self.root}, n_frames={self.n_frames}, size={self.size}, "
                f"channels={self.channels}, fps={fps}")


def _find_cache(root: Path) -> Path:
    if not root.exists():
        raise FileNotFoundError(f"clip cache not found: {root}")
    if root.is_dir():
        found = list_files(root, CACHE_SUFFIXES)
        if len(found) != 1:
            what = "none" if not found else ", ".join(p.name for p in found)
            raise ValueError(
                f"folder {root} must hold exactly one clip cache ({', '.join(CACHE_SUFFIXES)}); "
                f"found {what}. Pass the cache file itself"
            )
        return found[0]
    if root.suffix.lower() not in CACHE_SUFFIXES:
        raise ValueError(
            f"{root} is not a clip cache ({', '.join(CACHE_SUFFIXES)}); build one with "
            f"{CACHE_BUILDER}, or read videos with load_training_clips"
        )
    return root


class CacheSettingsError(ValueError):
    """A clip cache built with other clip settings than those asked: the error a caller that
    names the settings otherwise (a config's keys) recognises by its type."""


def _check_cache_matches(dataset: VideoClips, *, n_frames: int, size: tuple[int, int],
                         start_frame: int, fps: float | None, channels: int) -> None:
    asked = {"n_frames": n_frames, "size": size, "start_frame": start_frame, "fps": fps,
             "channels": channels}
    cached = {"n_frames": dataset.n_frames, "size": dataset.size,
              "start_frame": dataset.start_frame, "fps": dataset.fps,
              "channels": dataset.channels}
    wrong = [f"{key}={asked[key]!r} (cache: {cached[key]!r})" for key in asked
             if asked[key] != cached[key]]
    if wrong:
        raise CacheSettingsError(
            f"the clip cache {dataset.root} was built with other settings: {', '.join(wrong)}; "
            f"rebuild it with {CACHE_BUILDER} or ask for the cache's settings"
        )


# --------------------------------------------------------------------------------------------
# Argument checks (the error names the argument and its bad value)
# --------------------------------------------------------------------------------------------


def _clip_settings(n_frames: int, size: int | tuple[int, int], start_frame: int,
                   fps: float | None, channels: int
                   ) -> tuple[int, tuple[int, int], int, float | None]:
    """The settings that define a clip, checked: ``(n_frames, (H, W), start_frame, fps)``."""
    n_frames = as_int(n_frames, "n_frames", minimum=1)
    pair = as_size(size)
    start_frame = as_int(start_frame, "start_frame", minimum=0)
    if fps is not None:
        check_fps(fps)
    check_channels(channels)
    return n_frames, pair, start_frame, None if fps is None else float(fps)

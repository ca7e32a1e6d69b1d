"""Read and write videos through PyAV. Pixel values live in ``[-1, 1]`` inside stgconv.

A video is a float tensor ``(C, T, H, W)`` (callers add the batch dimension: ``(B, C, T, H, W)``);
conversion to and from uint8 happens only here, at the file boundary.

Reading goes through PyAV's bundled FFmpeg, so old codecs (msmpeg4v2 and mpeg4 in AVI files) read
as well as H.264 in MP4. Writing picks the codec from the file suffix:

=========  ==========================================  =========================================
suffix     default codec (first one this build has)    notes
=========  ==========================================  =========================================
``.mp4``   libx264 (yuv420p, crf 17), else mpeg4       lossy; height and width must be even
``.mkv``   ffv1 (bgr0)                                 lossless: exact uint8 round trip
``.webm``  libvpx-vp9 (yuv420p, crf 20), else libvpx   lossy; height and width must be even
``.gif``   gif (palette per frame made by Pillow)      exact when a frame has <= 256 colours
=========  ==========================================  =========================================

``libx264rgb`` (rgb24, qp 0) is also accepted for ``.mp4`` and ``.mkv``: lossless H.264.
GIF stores frame delays in 1/100 s, so rates that do not divide 100 play slightly off; Matroska
and WebM time frames in whole milliseconds, so they take at most 1000 frames per second. YUV
files are tagged with the conversion they were written with (BT.601, limited range), so players
need not guess it. A frame with alpha (transparency) reads composited over white, as images do
(WebM's VP8 and VP9 with alpha through libvpx's decoders, which read it).
"""

from __future__ import annotations

import ctypes
import gc
import os
import re
import struct
import threading
import warnings
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from functools import cache, partial
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from stgconv.checks import as_int, as_size, check_fps, check_path
from stgconv.io.atomic import atomic_write
from stgconv.io.folder import list_files
from stgconv.io.image import (
    IMAGE_SUFFIXES,
    check_channels,
    check_pixels,
    from_levels,
    opaque,
    read_image,
    to_bytes,
    to_channels,
    to_tensor,
)


class TooFewFramesError(ValueError):
    """A video or frame folder without the frames asked for: ``start_frame`` past its end, or
    fewer than ``n_frames`` from there. Its own class so that a caller that took those
    parameters from its own settings (a config's ``data.frames``) can say so. ``available``:
    the frames there are from ``start_frame`` (at the ``fps`` asked for), for a caller that
    asked for more frames than its own caller did (the clips a cache cuts from one video) to
    say in its own terms; ``None`` where not given."""

    def __init__(self, message: str, *, available: int | None = None) -> None:
        super().__init__(message)
        self.available = available


# PyAV (av) takes a while to import (it loads FFmpeg); it loads where a video is read or written.
if TYPE_CHECKING:
    import av


# Whether _pyav has registered its fork hook; set under the lock, so two threads using PyAV
# for the first time at once register it once (twice would collect twice per fork).
_fork_collects = False
_fork_collects_lock = threading.Lock()


def _pyav() -> ModuleType:
    """PyAV, imported where a video is read or written. Its first use also makes every later
    fork of this process collect its reference cycles first: PyAV leaves some objects to
    Python's cyclic collector (a frame whose side data was read; a decoder a caller's code keeps
    in a cycle), and a forked child (a ``DataLoader`` worker) that collected a decoder freed it
    there, waiting forever for its threads, which stayed in the parent."""
    global _fork_collects
    import av

    with _fork_collects_lock:
        if not _fork_collects:
            if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
                os.register_at_fork(before=gc.collect)
            _fork_collects = True
    return av


@dataclass(frozen=True)
class _Encoder:
    pix_fmt: str  # the pixel format handed to the encoder
    options: dict[str, str]  # FFmpeg AVOptions of the encoder


# Settings per encoder. The lossy ones aim at "looks like the tensor" for inspection videos,
# not at small files: our clips are tiny.
_ENCODERS = {
    "libx264": _Encoder("yuv420p", {"crf": "17"}),
    "libx264rgb": _Encoder("rgb24", {"qp": "0"}),  # qp 0 on RGB input is lossless
    "mpeg4": _Encoder("yuv420p", {}),  # quality set through qscale, see _encode_av
    "ffv1": _Encoder("bgr0", {}),  # ffv1 has no 8-bit packed rgb24; bgr0 is an exact reorder
    "libvpx-vp9": _Encoder("yuv420p", {"crf": "20", "b": "0"}),  # b=0: constant quality
    "libvpx": _Encoder("yuv420p", {"crf": "10", "b": "4M"}),  # vp8 needs a bitrate cap with crf
    "gif": _Encoder("pal8", {}),
}

# suffix -> (FFmpeg container name, codecs we write into it, preferred first)
_CONTAINERS = {
    ".mp4": ("mp4", ("libx264", "mpeg4", "libx264rgb")),
    ".mkv": ("matroska", ("ffv1", "libx264", "libx264rgb", "mpeg4", "libvpx-vp9", "libvpx")),
    ".webm": ("webm", ("libvpx-vp9", "libvpx")),
    ".gif": ("gif", ("gif",)),
}

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".gif", ".mov", ".m4v", ".mpg", ".mpeg",
                  ".ts", ".mts", ".m2ts", ".3gp", ".wmv", ".flv", ".ogv", ".y4m")
"""Suffixes :func:`load_video` is documented to read (anything FFmpeg reads works), and those a
folder of videos is listed by: camcorders' and TV recorders' transport streams (``.mts``,
``.m2ts``, ``.ts``), older phones' and web formats, and uncompressed YUV4MPEG (``.y4m``, the
test sequences of video research) among them."""

COMPARISON_GAP = 4
"""Width in pixels of the white gap between the panels of :func:`save_comparison`."""
GIF_MAX_FPS = 100
"""GIF frame delays are hundredths of a second."""
GIF_MIN_FPS = Fraction(100, 65535)
"""A GIF frame delay is a 16-bit count of hundredths: at most 655.35 s."""
MPEG4_MAX_RATE_NUMERATOR = 65535
"""MPEG-4 Part 2 stores its time base, 1 / fps, with a 16-bit denominator."""
MATROSKA_MAX_FPS = 1000
"""Matroska (and WebM) time frames in whole milliseconds: faster, two frames share a time."""

# How every frame is converted between YUV and RGB: FFmpeg's scaler flags (libswscale/swscale.h
# SWS_BILINEAR | SWS_FULL_CHR_H_INT | SWS_ACCURATE_RND; PyAV hands an int through as the flags).
# Its default fast path reads flat colours of 8-bit 4:2:0 video up to 3 grey levels off the exact
# BT.601/709 conversion (1.0 on average; 10-bit white as 253) and smooth images 2.7 off on
# average; full-resolution chroma and accurate rounding read flat 10-bit colours exactly and
# 8-bit ones within the rounding of their YUV values (measured: bench/README.md, "Reading
# video"; tests/test_io_video.py).
_SCALER_FLAGS = 0x2 | 0x2000 | 0x40000
# YUV written as BT.601 with limited range, FFmpeg's default conversion (values of
# libavutil/pixfmt.h's AVColorSpace BT470BG and AVColorRange MPEG), and tagged so.
_YUV_MATRIX = 5
_YUV_RANGE = 1
# One scaler thread: PyAV would give each frame a scaler with its own thread pool, and a forked
# process (a DataLoader worker) that frees a parent's frame waits forever for those threads.
_SCALER_THREADS = 1


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def load_video(
    path: str | Path,
    *,
    start_frame: int = 0,
    n_frames: int | None = None,
    size: int | tuple[int, int] | None = None,
    fps: float | None = None,
    channels: int = 3,
) -> Tensor:
    """Load a video file or a folder of frame images as ``(C, T, H, W)`` in ``[-1, 1]``.

    Video files (mp4, avi, mkv, webm, gif, ...; any codec the bundled FFmpeg decodes) are decoded
    sequentially from the first frame: exact for every codec, where seeking in old AVI files is
    not. A folder is read as its image files (``IMAGE_SUFFIXES``), in natural name order
    (``f2.png`` before ``f10.png``; zero-padded names sort the same either way). Frames come
    upright, as players show them: turned and mirrored as a file's display matrix says (phone
    clips store portrait video as landscape frames and say so there), a frame image as its EXIF
    orientation says; ``size`` and ``H, W`` are the upright frame's. YUV video is converted to
    RGB by FFmpeg's accurate path (full-resolution chroma, exact rounding: flat colours within
    the rounding of their stored values), by the matrix and range the file states; HDR video
    (HLG, PQ) as stored, without tone mapping, which a warning says.

    Args:
        path: a video file or a folder of frame images.
        start_frame: index of the first frame to keep, counted in the file's own frames.
        n_frames: number of frames ``T`` to return; ``None`` reads to the end.
        size: ``(H, W)``, or one int for ``(size, size)``; without it a file's frames must share
            one size (a folder's must even with it). Frames are resized without cropping
            (the aspect ratio may change, as in the recovery protocol: every frame to 150x150)
            with Pillow's bilinear filter on the uint8 frames, the same filter as
            :func:`stgconv.io.image.load_image`. Pillow widens the filter when shrinking
            (antialiased), unlike ``F.interpolate(..., antialias=False)``.
        fps: resample in time by picking frames: output frame ``k`` is source frame
            ``start_frame + floor(k * source_fps / fps)`` (frames repeat when ``fps`` is above
            the source rate), ``source_fps`` the file's average rate (a GIF's over all its
            frames' delays): by index, not timestamp, so a variable-rate file is taken as
            evenly spaced. Not available for folders, which have no frame rate.
        channels: 1 (grey, ITU-R 601 luma as Pillow's ``convert("L")``) or 3 (RGB).

    Returns:
        float32 ``(C, T, H, W)`` in ``[-1, 1]``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: bad arguments; a file FFmpeg cannot read (garbage, no video stream; an
            empty file, an MP4 cut short before its index, and an animated WebP, whose frames
            FFmpeg does not decode, are named so); a display matrix that turns frames by
            other than quarter turns; a truncated file (read to
            its end, its last frame ends more than half a frame before the video
            track's stated end, and fewer frames decode than its index counts where it has
            one; a GIF lacks its trailer byte; a transport stream ends part way through a
            packet); a frame asked for that decodes with errors (a stream cut inside a frame;
            the message says how many frames before it are whole); no decodable frames.
        TooFewFramesError: a ``ValueError``: ``start_frame`` past the last frame, or fewer
            frames than asked (the message says how many there are).
    """
    frames = _frames(path, start_frame=start_frame, n_frames=n_frames, size=size, fps=fps,
                     channels=channels)
    clip = torch.empty(len(frames), *frames[0].shape, dtype=torch.float32)  # (T, H, W, C)
    # A frame at a time, each frame's levels let go once converted: stacked and converted
    # whole, they peaked at 13-14 bytes a value (the frames, their stack, its floats and
    # from_levels' two results), 2 GB for a minute of 25 fps 256x256 RGB. torch.tensor copies:
    # a frame may be a read-only view of a Pillow image, which torch.from_numpy warns of.
    for t in reversed(range(len(frames))):
        clip[t] = from_levels(torch.tensor(frames.pop()).float())
    # (T, H, W, C) seen as (C, T, H, W): the layout the view of the stacked levels had.
    return clip.permute(3, 0, 1, 2)


def read_frames(
    path: str | Path,
    *,
    start_frame: int = 0,
    n_frames: int | None = None,
    size: int | tuple[int, int] | None = None,
    fps: float | None = None,
    channels: int = 3,
) -> np.ndarray:
    """The frames :func:`load_video` reads (same arguments, same errors) as they were decoded:
    uint8 ``(T, H, W, C)``, a quarter of the float clip's memory, for callers that keep the
    levels (a clip cache)."""
    return np.stack(_frames(path, start_frame=start_frame, n_frames=n_frames, size=size,
                            fps=fps, channels=channels))


def _frames(path: str | Path, *, start_frame: int, n_frames: int | None,
            size: int | tuple[int, int] | None, fps: float | None, channels: int
            ) -> list[np.ndarray]:
    """The frames :func:`load_video` reads (same arguments, same errors), each uint8
    ``(H, W, C)``; a frame that serves several (``fps`` above the source's) is listed as
    often."""
    check_path(path, "path")
    path = Path(path)
    check_channels(channels)
    start_frame = as_int(start_frame, "start_frame", minimum=0)
    n_frames = None if n_frames is None else as_int(n_frames, "n_frames", minimum=1)
    out_size = None if size is None else as_size(size)
    if fps is not None:
        check_fps(fps)
    if not path.exists():
        raise FileNotFoundError(f"video not found: {path}")

    if path.is_dir():
        if fps is not None:
            raise ValueError(
                f"fps={fps} needs a video file; the frame folder {path} has no frame rate"
            )
        return _read_folder(path, start_frame, n_frames, out_size, channels)
    return _read_file(path, start_frame, n_frames, out_size, fps, channels)


# Frames converted between two returns of freed memory to the system (_release_freed_memory).
TRIM_EVERY = 32


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or ``None`` where the C library has none (macOS, Windows,
    musl)."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _release_freed_memory() -> None:
    """Hand the memory a long read has freed back to the system (glibc's ``malloc_trim``; a
    no-op elsewhere). Each frame is converted through full-size arrays freed at once (6 MB at
    1080p), and glibc keeps such chunks in its heap, fragmented: reading a 60 s 60 fps 1080p
    clip whole (3,600 frames kept at 32 x 32, 44 MB, as fill-prior reads a video) grew the
    process to 17.6 GB; trimmed every 32 frames it peaked at 1.06 GB, and read in 153 s
    instead of 187 s (2026-12-07)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _to_array(image: Image.Image, size: tuple[int, int] | None, channels: int) -> np.ndarray:
    """PIL frame -> uint8 ``(H, W, C)``: convert, then resize (the order of ``load_image``)."""
    image = to_channels(image, channels)
    if size is not None and (image.height, image.width) != size:
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    array = np.asarray(image)
    return array[:, :, None] if array.ndim == 2 else array


def _series(files: Sequence[Path]) -> list[str]:
    """The numbered series among ``files`` with two frames or more, each named by its pattern
    (``img_#.jpg``, ``flow_x_#.jpg``: the name with its last run of digits as ``#``)."""
    counts = Counter(_pattern(file) for file in files)
    return [pattern for pattern, count in counts.items() if count > 1 and "#" in pattern]


def _pattern(file: Path) -> str:
    """``file``'s name with its last run of digits as ``#``: a frame series' shared pattern."""
    return re.sub(r"\d+(?=\D*$)", "#", file.name)


def is_animated(path: Path) -> bool:
    """Whether the image file ``path`` holds more than one frame (an animated GIF, PNG or
    WebP: a video); ``False`` for a still image and for a file Pillow cannot read."""
    try:
        with Image.open(path) as image:
            return getattr(image, "n_frames", 1) > 1
    # DecompressionBombError is no OSError: Pillow's guard on pixel count; SyntaxError, a TIFF
    # page of a layout Pillow does not decode, which its count of frames sets up. Reading the
    # file as a frame names the problem.
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False


def _read_folder(
    folder: Path, start: int, n_frames: int | None, size: tuple[int, int] | None, channels: int
) -> list[np.ndarray]:
    files = list_files(folder, IMAGE_SUFFIXES)
    if not files:
        videos = list_files(folder, VIDEO_SUFFIXES)
        # Training reads such a folder as one clip per file; one clip is read from one file.
        held = (f": it holds videos ({', '.join(p.name for p in videos[:3])}"
                f"{', ...' if len(videos) > 3 else ''}); give one of them" if videos else "")
        raise ValueError(f"no frame images ({', '.join(IMAGE_SUFFIXES)}) in folder "
                         f"{folder}{held}")
    if start >= len(files):
        raise TooFewFramesError(f"start_frame={start} but {folder} has only {len(files)} frames",
                                available=0)
    series = _series(files)
    if len(series) > 1:  # read as one, the clip would run through each series in turn
        raise ValueError(f"folder {folder} holds frames of {len(series)} series "
                         f"({', '.join(series[:3])}{', ...' if len(series) > 3 else ''}), as "
                         "frame extraction tools write images beside optical flow; give a "
                         "folder of one series' frames")
    strays = [file.name for file in files if series and _pattern(file) != series[0]]
    if strays:  # one image beside the series, read as a frame wherever its name sorts
        raise ValueError(f"folder {folder} holds the frames {series[0]} and other images "
                         f"({', '.join(strays[:3])}{', ...' if len(strays) > 3 else ''}); give "
                         "a folder of the frames alone")
    animated = [file.name for file in files if file.suffix.lower() == ".gif" and is_animated(file)]
    if animated:  # each would give its first frame only
        raise ValueError(f"folder {folder} holds animated GIFs ({', '.join(animated[:3])}"
                         f"{', ...' if len(animated) > 3 else ''}), which are videos, not frame "
                         "images: give them as video files, or the folder alone as a folder of "
                         "videos")
    stop = len(files) if n_frames is None else start + n_frames
    if stop > len(files):
        raise TooFewFramesError(
            f"asked for n_frames={n_frames} from start_frame={start}, but {folder} has "
            f"{len(files)} frames ({len(files) - start} from start_frame)",
            available=len(files) - start,
        )
    frames, first_size = [], None
    for number, file in enumerate(files[start:stop], 1):
        if number % TRIM_EVERY == 0:
            _release_freed_memory()
        image = read_image(file, what="frame image")
        if first_size is None:
            first_size = image.size
        elif image.size != first_size:
            raise ValueError(
                f"frame {file} is {image.size[0]}x{image.size[1]} (WxH) but the first frame "
                f"of {folder} is {first_size[0]}x{first_size[1]}; all frames must share a size"
            )
        frames.append(_to_array(image, size, channels))
    return frames


def _rate(stream: av.video.stream.VideoStream, path: Path | None = None) -> Fraction | None:
    """The stream's frame rate as :func:`load_video` takes it: its average, else FFmpeg's
    guess; given the file ``path`` it is read from, a GIF's from every frame's delay
    (:func:`_gif_average_rate`: the callers that pick frames by it, or report it)."""
    if (path is not None and stream.container.format.name == "gif"
            and (rate := _gif_average_rate(path)) is not None):
        return rate
    return stream.average_rate or stream.guessed_rate


def _gif_average_rate(path: Path) -> Fraction | None:
    """The GIF ``path``'s frames per second of delay, counted over every frame; ``None`` where
    its delays add up to nothing. A GIF stores each delay in hundredths of a second, so its
    writer alternates them (30 fps: 3, 3, 4): FFmpeg's average rate, taken from the first
    frames' delays, said 100/3 (60 fps: 100), and a clip read at its own rate lost every
    tenth frame (60 fps: 2 in 5)."""
    av = _pyav()

    frames, delay = 0, 0
    with av.open(_ffmpeg_name(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):  # each frame's data, not decoded: quick
            if packet.size:  # not the empty packet that ends the stream
                frames += 1
                delay += packet.duration or 0
        base = stream.time_base
    return Fraction(frames) / (delay * base) if delay and base else None


def _said_end(stream: av.video.stream.VideoStream, container: av.container.Container,
              path: Path) -> float | None:
    """Seconds at which the file says its video track ends, or ``None`` where it does not say.

    An AVI's header frame count over its rate after the start its header states (FFmpeg
    recomputes an AVI's duration from the chunks it finds, so a cut file would agree with
    itself; :func:`_avi_start`); else the track's own duration
    after its start; else its ``DURATION`` tag (Matroska, WebM); else the container's duration,
    only where the video is its one stream (an audio track may run longer). The last two are
    taken as end times, not lengths: FFmpeg's Matroska writer stores the track's last timestamp
    plus a frame there, and NUT's container duration is one too; where a writer stored a length
    instead, a track starting late reads as ending early, which refuses nothing whole.
    """
    av = _pyav()

    base = stream.time_base or Fraction(0)
    start = float((stream.start_time or 0) * base)
    rate = _rate(stream)
    if container.format.name == "avi":
        if not (stream.frames and rate):
            return None
        return max(start, _avi_start(path, stream.index)) + stream.frames / float(rate)
    if stream.duration and base:
        return start + float(stream.duration * base)
    hours, _, rest = stream.metadata.get("DURATION", "").partition(":")
    minutes, _, seconds = rest.partition(":")
    try:
        return 3600 * int(hours) + 60 * int(minutes) + float(seconds)
    except ValueError:  # no tag, or not HH:MM:SS.fraction
        pass
    if len(container.streams) == 1 and container.duration:
        return container.duration / av.time_base
    return None


def _avi_start(path: Path, index: int) -> float:
    """Seconds before the first frame of stream ``index`` of the AVI ``path``: its stream
    header's start (dwStart, in units of dwScale / dwRate), 0 where the header does not read
    so. FFmpeg times the frames from there but reports the stream as starting at 0: a file cut
    short, its frames ending past the header's count over its rate counted from 0, read short
    without a word."""
    with path.open("rb") as file:
        head = file.read(1 << 16)  # the header list comes first, and is a few kilobytes
    # RIFF 'AVI ', then LIST 'hdrl': the main header, then a LIST 'strl' per stream, each
    # opening with its 'strh' (fccType, fccHandler, flags, priority and language, initial
    # frames, then scale, rate, start and length).
    if head[:4] != b"RIFF" or head[12:16] != b"LIST" or head[20:24] != b"hdrl":
        return 0.0
    end = min(len(head), 20 + int.from_bytes(head[16:20], "little"))
    position, stream = 24, 0
    while position + 12 <= end:
        size = int.from_bytes(head[position + 4:position + 8], "little")
        if head[position:position + 4] == b"LIST" and head[position + 8:position + 12] == b"strl":
            if stream == index:
                strh = position + 12
                if head[strh:strh + 4] != b"strh" or strh + 44 > len(head):
                    return 0.0
                scale, rate, start = struct.unpack_from("<3I", head, strh + 28)
                return start * scale / rate if rate else 0.0
            stream += 1
        position += 8 + size + (size & 1)  # chunks are padded to an even size
    return 0.0


def _shortfall(stream: av.video.stream.VideoStream, said_end: float | None, decoded: int,
               last: av.VideoFrame) -> str | None:
    """How the ``decoded`` frames, ``last`` the last of them, fall short of the video the
    header describes (a cut-off download or an interrupted write), or ``None`` when they do
    not. Frames an index counts beyond the shown ones (a trimmed MP4's edit list, an AVI's empty
    chunks) are no shortfall when the last frame ends where the video is said to end."""
    counted = f" ({stream.frames} frames)" if stream.frames else ""
    if said_end is None or last.time is None:
        if stream.frames and decoded < stream.frames - max(1, stream.frames // 50):
            return f"its header announces {stream.frames} frames but only {decoded} decode"
        return None
    rate = _rate(stream)
    length = (float(last.duration * last.time_base) if last.duration and last.time_base
              else 1 / float(rate) if rate else 0.0)
    ends = last.time + length
    if ends < said_end - length / 2 and not (stream.frames and decoded >= stream.frames):
        return (f"its header says the video ends at {said_end:.2f} s{counted}, but the "
                f"{decoded} frames that decode end at {ends:.2f} s")
    return None


# Bytes in an MPEG transport stream's packets: plain, Blu-ray's M2TS (a 4-byte time stamp in
# front), and with 16 bytes of error correction after.
_TRANSPORT_PACKET_SIZES = (188, 192, 204)


def _whole_transport_packets(path: Path) -> bool:
    """Whether ``path`` (an MPEG transport stream) holds a whole number of packets: it states no
    length, so a file cut part way through a packet is told only by its size."""
    size = path.stat().st_size
    return any(size % packet == 0 for packet in _TRANSPORT_PACKET_SIZES)


def _ends_with_gif_trailer(path: Path) -> bool:
    with path.open("rb") as file:
        file.seek(-1, 2)
        return file.read(1) == b"\x3b"


def frame_rate(path: str | Path) -> Fraction | None:
    """The frame rate :func:`load_video` takes ``path``'s to be (its average rate), or ``None``
    for a frame folder or a file that states none."""
    av = _pyav()

    path = Path(path)
    if path.is_dir():
        return None
    with av.open(_ffmpeg_name(path)) as container:
        rate = _rate(_video_stream(path, container), path)
    return Fraction(rate) if rate else None


def _ffmpeg_name(path: Path) -> str:
    """``path`` as FFmpeg opens the file itself: absolute. FFmpeg reads what comes before a
    ``:`` in a name as a protocol, so a file named ``a:b.mp4`` was "Protocol not found" and one
    named ``file:x.mp4`` or ``concat:x.mp4`` read ``x.mp4``; an absolute path starts with
    ``/``, which no protocol's name holds."""
    return str(path.absolute())


def _opaque_image(frame: av.VideoFrame) -> Image.Image:
    """``frame`` as an RGB image, composited over white where its pixel format has alpha
    (FFV1 with alpha, PNG in MOV or AVI, GIF), as image files with transparency are read
    (:func:`stgconv.io.image.opaque`): dropping alpha showed what a transparent pixel happened
    to store (black, mostly), so the same frames read differently from a folder of PNGs and
    from a video. 16-bit RGB or grey frames (PNG, FFV1 or TIFF in a video: scientific and
    thermal cameras write them) are scaled to 8 bits here, grey staying grey, as 16-bit image
    files are (:func:`stgconv.io.image.read_image`)."""
    convert = {"interpolation": _SCALER_FLAGS, "threads": _SCALER_THREADS}
    components = frame.format.components
    alpha = any(component.is_alpha for component in components)
    if all(component.bits == 16 for component in components) and (
            frame.format.is_rgb or len(components) == 1 + alpha):
        # FFmpeg's scaler takes 16 bits to 8 as (v + 128) >> 8: one level above v * 255 / 65535
        # rounded, how image files are read, for half the levels (every level past 127 of a
        # frame stored as 8-bit levels times 257).
        wide = frame.to_ndarray(format="rgba64le" if alpha else "rgb48le" if frame.format.is_rgb
                                else "gray16le", **convert)
        image = Image.fromarray(np.round(wide * (255 / 65535)).astype(np.uint8))
        return opaque(image) if alpha else image
    if not alpha:
        return frame.to_image(**convert)
    return opaque(Image.fromarray(frame.to_ndarray(format="rgba", **convert)))


def _video_stream(path: Path, container: av.container.Container) -> av.video.stream.VideoStream:
    """The clip of ``container``: the video stream FFmpeg itself would play
    (``av_find_best_stream``), not the first one. A cover image or a one-frame thumbnail track
    stored before the clip (phones and converters write them) was read as the clip: "has 1
    frames", or a still picture recovered."""
    if not container.streams.video:  # else an IndexError from PyAV's stream list
        raise ValueError(_no_video(path, container))
    return container.streams.best("video")


# The first 8 bytes of an HDF5 file (as h5py writes it: no user block before the signature).
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

# Where _unopened_because stops walking a file's boxes, saying nothing: a file of a million
# tiny ones would take seconds to tell from garbage.
_MAX_TOP_LEVEL_BOXES = 100_000


def _unopened_because(path: Path) -> str | None:
    """What the bytes of ``path``, a file FFmpeg could not open, say of it where FFmpeg says
    only "Invalid data found": that it is empty, or that it is an MP4 or QuickTime file cut
    short before its index (the 'moov' box, written last by cameras, phones and FFmpeg), the
    usual remains of an interrupted download or recording, or that it is a NumPy array or an
    HDF5 file (a clip cache); ``None`` where they say none of these."""
    if not path.is_file():  # a named pipe would wait for a writer here
        return None
    size = path.stat().st_size
    if size == 0:
        return "the file is empty (0 bytes)"
    try:
        with path.open("rb") as file:
            head = file.read(len(_HDF5_SIGNATURE))
    except OSError:  # unreadable (no permission): FFmpeg's own error says so
        return None
    if head.startswith(np.lib.format.MAGIC_PREFIX):
        # A clip kept as an array: FFmpeg's "Invalid data" did not say arrays are no video.
        return ("it is a NumPy array (.npy), not a video: save its frames as images in a folder, "
                "or as a video file (stgconv.io.video.save_video)")
    if head == _HDF5_SIGNATURE:  # most likely a clip cache, given where a video was asked for
        return ("it is an HDF5 file, not a video: a clip cache (made by "
                "stgconv.data.video.build_clip_cache) is training data, read as the data.path of "
                "a video config (data.kind video: stgconv train CONFIG --data FILE); give a video "
                "file or a folder of frame images")
    kinds, position = [], 0
    try:
        with path.open("rb") as file:
            # The top-level boxes (a few; fragmented files thousands): 32-bit size and type, ...
            while position + 8 <= size and len(kinds) < _MAX_TOP_LEVEL_BOXES:
                file.seek(position)
                header = file.read(16)
                length, kind = struct.unpack(">I4s", header[:8])
                if length == 1 and len(header) == 16:  # ... or a 64-bit size after the type
                    length = struct.unpack(">Q", header[8:])[0]
                elif length == 0:  # to the end of the file
                    length = size - position
                if length < 8:
                    break
                kinds.append(kind)
                position += length
    except OSError:  # unreadable (no permission): FFmpeg's own error says so
        return None
    if kinds[:1] != [b"ftyp"] or len(kinds) == _MAX_TOP_LEVEL_BOXES:
        return None
    cut = "it is truncated (a download or a recording cut short)"
    if b"moov" not in kinds:
        return ("it is an MP4 (or QuickTime) file without its index, the 'moov' box its writer "
                f"puts last: {cut}")
    if position > size:
        return (f"it is an MP4 (or QuickTime) file whose last box ({kinds[-1].decode('latin-1')!r})"
                f" runs past the file's end: {cut}")
    return None


def _undecodable_because(path: Path) -> str | None:
    """What ``path``, a file whose first frame FFmpeg could not decode, is where FFmpeg says
    only "Invalid data": an animated WebP (a web sticker, a GIF's modern replacement), whose
    frames FFmpeg's WebP decoder does not read (it reads still pictures); ``None`` else."""
    try:
        with Image.open(path) as image:
            animated_webp = image.format == "WEBP" and getattr(image, "n_frames", 1) > 1
    except (OSError, ValueError, Image.DecompressionBombError):  # not one Pillow reads
        return None
    if not animated_webp:
        return None
    return ("it is an animated WebP, whose frames FFmpeg does not decode; save it as a GIF "
            "(Pillow reads it: Image.open(path).save('clip.gif', save_all=True)) or an MP4")


def _no_video(path: Path, container: av.container.Container) -> str:
    """Why ``path``, open as ``container``, gives no frames: the streams it holds instead, or
    none at all, as an MP4 cut short does (its index, written last, is lost)."""
    kinds = sorted({stream.type for stream in container.streams})
    if kinds:
        return f"{path} has no video stream (only {' and '.join(kinds)})"
    return (f"{path} has no video stream, nor any other: it is truncated (an MP4 keeps the "
            "index of its streams at its end) or holds no media")


def _display_turns(frame: av.VideoFrame, path: Path) -> tuple[Image.Transpose, ...]:
    """The turns and mirrors that show ``frame`` as players do, by its display matrix (phone
    clips store portrait video as landscape frames and say so there), as FFmpeg's own player
    applies them; none where it has no matrix.

    Read from one frame of a file and applied to all of them: FFmpeg copies the stream's matrix
    onto every frame, and PyAV's ``frame.side_data`` keeps its frame in a reference cycle that
    only Python's cyclic garbage collector frees, so read on every frame it held hundreds of
    full-resolution frames at once (a 500-frame 1080p clip read at 64x64: 1.2 GB peak)."""
    matrix = frame.side_data.get("DISPLAYMATRIX")
    if matrix is None:
        return ()
    # libavutil/display.h: a source point (p, q), p rightwards and q downwards, is shown at
    # (a p + c q, b p + d q) (plus a shift); the matrix is (a, b, u, c, d, v, x, y, w).
    a, b, _, c, d = np.frombuffer(bytes(matrix), dtype=np.int32)[:5].astype(np.float64)
    tolerance = 1e-3 * max(abs(a), abs(b), abs(c), abs(d), 1.0)
    zero = [abs(value) < tolerance for value in (a, b, c, d)]
    turns = []
    if zero == [False, True, True, False]:
        mirror_left_right, mirror_top_bottom = a < 0, d < 0
    elif zero == [True, False, False, True]:  # a quarter turn: the axes swap
        turns.append(Image.Transpose.TRANSPOSE)
        mirror_left_right, mirror_top_bottom = c < 0, b < 0
    else:
        angle = np.degrees(np.arctan2(-b, a))  # counter-clockwise, as FFmpeg reports it
        raise ValueError(f"{path} asks players to turn its frames by {angle:.1f} degrees; only "
                         "quarter turns and mirrors are supported")
    if mirror_left_right:
        turns.append(Image.Transpose.FLIP_LEFT_RIGHT)
    if mirror_top_bottom:
        turns.append(Image.Transpose.FLIP_TOP_BOTTOM)
    return tuple(turns)


# HDR transfer functions (libavutil/pixfmt.h's AVColorTransferCharacteristic), which FFmpeg's
# scaler does not map to SDR: their frames read as if SDR.
_HDR_TRANSFERS = {16: "PQ", 18: "HLG"}


def _warn_of_hdr(frame: av.VideoFrame, path: Path) -> None:
    """A warning where ``frame``, the first kept of ``path``, is HDR (a phone's HLG clip, PQ
    from HDR10 cameras and streams): its levels are read as stored, without tone mapping."""
    transfer = _HDR_TRANSFERS.get(frame.color_trc)
    if transfer is not None:
        warnings.warn(f"{path} is HDR video ({transfer} transfer): its frames are read without "
                      "tone mapping, as stored, so their colours look flatter "
                      f"{'and darker ' if transfer == 'PQ' else ''}than an HDR player shows "
                      "them; convert it to SDR first for true colours", stacklevel=5)


def _upright(frame: av.VideoFrame, turns: Sequence[Image.Transpose]) -> Image.Image:
    """``frame`` as an image turned and mirrored by ``turns`` (:func:`_display_turns`)."""
    image = _opaque_image(frame)
    for turn in turns:
        image = image.transpose(turn)
    return image


# The decoders of VP8 and VP9 that read the alpha channel WebM carries beside each frame (its
# track's alpha_mode 1: transparent web video, stickers); FFmpeg's own vp8 and vp9 decoders
# drop it, and transparent pixels read as the colour they hide, not over white.
_ALPHA_DECODERS = {"vp8": "libvpx", "vp9": "libvpx-vp9"}


def _decoded(container: av.container.Container, stream: av.video.stream.VideoStream,
             path: Path) -> Iterator[av.VideoFrame]:
    """The frames of ``stream`` in ``container``, decoded by FFmpeg's choice of decoder, or for
    VP8/VP9 with alpha by libvpx's (:data:`_ALPHA_DECODERS`); a warning where this build has
    none, and the frames come without their alpha."""
    av = _pyav()

    alpha_decoder = (_ALPHA_DECODERS.get(stream.codec_context.name)
                     if stream.metadata.get("alpha_mode") == "1" else None)
    if alpha_decoder is not None and not _has_codec(alpha_decoder, "r"):
        warnings.warn(f"{path} has an alpha channel (transparency) that this FFmpeg build "
                      f"cannot decode (it lacks {alpha_decoder}): its transparent pixels read "
                      "as the colour they hide, not over white", stacklevel=5)
        alpha_decoder = None
    if alpha_decoder is None:
        yield from container.decode(stream)
        return
    decoder = av.codec.CodecContext.create(alpha_decoder, "r")
    decoder.thread_type = "AUTO"
    for packet in container.demux(stream):  # the last, empty, packet flushes the decoder
        yield from decoder.decode(packet)


def _read_file(
    path: Path, start: int, n_frames: int | None, size: tuple[int, int] | None,
    fps: float | None, channels: int
) -> list[np.ndarray]:
    av = _pyav()

    frames: list[np.ndarray] = []
    decoded = 0  # source frames decoded so far
    converted = 0  # of them, those made arrays: each frees full-size ones (_release_freed_memory)
    exhausted = False
    stage = "open"
    try:
        with av.open(_ffmpeg_name(path)) as container:
            stream = _video_stream(path, container)
            stream.thread_type = "AUTO"
            if fps is None:
                step = Fraction(1)
            else:
                rate = _rate(stream, path)
                if not rate:
                    raise ValueError(f"{path} does not state its frame rate; cannot resample to "
                                     f"fps={fps}")
                step = Fraction(rate) / check_fps(fps)
            said_end = _said_end(stream, container, path)
            is_gif = container.format.name == "gif"
            is_transport_stream = container.format.name == "mpegts"
            wanted = start  # source index of the next output frame
            stage = "decode"
            last = None
            damaged = None  # the first wanted frame decoded with errors
            turns = None  # read from the first frame kept (_display_turns)
            for frame in _decoded(container, stream, path):
                index, decoded, last = decoded, decoded + 1, frame
                if index < wanted or damaged is not None:
                    continue
                if frame.is_corrupt:
                    # Reported once the file is read to its end, with what its header says: a
                    # transport or program stream states no length, and cut short, it ends in a
                    # frame whose data stops part way, which the decoder returns flagged.
                    damaged = index
                    continue
                if turns is None:
                    turns = _display_turns(frame, path)
                    _warn_of_hdr(frame, path)
                array = _to_array(_upright(frame, turns), size, channels)
                converted += 1
                if converted % TRIM_EVERY == 0:
                    _release_freed_memory()
                if frames and array.shape != frames[0].shape:  # only without ``size``
                    raise ValueError(
                        f"{path} changes its frame size at frame {index}, from "
                        f"{frames[0].shape[1]}x{frames[0].shape[0]} to {array.shape[1]}x"
                        f"{array.shape[0]} (WxH): give a size to read every frame at it")
                while wanted == index:  # one source frame may serve several outputs (fps up)
                    frames.append(array)
                    if n_frames is not None and len(frames) == n_frames:
                        break
                    wanted = start + int(len(frames) * step)  # floor
                if n_frames is not None and len(frames) == n_frames:
                    break
            else:
                exhausted = True
            # While the file is open: PyAV 18.1.1 refuses a closed container's stream
            # attributes ("Container is not open"), and a shortfall reads the header's count.
            shortfall = (_shortfall(stream, said_end, decoded, last) if exhausted and decoded
                         else None)
    except av.error.FFmpegError as err:
        # FFmpegError subclasses ValueError; re-raise with the file and the stage named.
        where = f" (failed after {decoded} frames)" if stage == "decode" else ""
        shown = (_unopened_because(path) if stage == "open"
                 else _undecodable_because(path) if decoded == 0 else None)
        raise ValueError(f"cannot {stage} video {path}{where}: {err}"
                         + (f"; {shown}" if shown else "")) from err

    if decoded == 0:
        raise ValueError(f"no decodable frames in {path}")
    if damaged is not None:
        before = f" (n_frames={len(frames)} reads the frames before it)" if frames else ""
        raise ValueError(f"{path} is truncated or corrupt: {shortfall + '; ' if shortfall else ''}"
                         f"its frame {damaged} decoded with errors{before}")
    if shortfall:
        raise ValueError(f"{path} is truncated or corrupt: {shortfall}")
    if exhausted and is_transport_stream and not _whole_transport_packets(path):
        raise ValueError(
            f"{path} is truncated: it ends part way through a transport packet (its size is no "
            f"multiple of {', '.join(map(str, _TRANSPORT_PACKET_SIZES))} bytes; {decoded} frames "
            "could be decoded)")
    if exhausted and is_gif and not _ends_with_gif_trailer(path):
        # GIF headers hold no frame count; a complete GIF ends with the trailer byte 0x3B.
        raise ValueError(
            f"{path} is truncated: it does not end with the GIF trailer byte 0x3B "
            f"({decoded} frames could be decoded)"
        )
    if start >= decoded:
        raise TooFewFramesError(f"start_frame={start} but {path} has only {decoded} frames",
                                available=0)
    if n_frames is not None and len(frames) < n_frames:
        available = -(-(decoded - start) // step)  # ceil: outputs k with floor(k*step) < left
        rate_note = f" at fps={fps}" if fps is not None else ""
        raise TooFewFramesError(
            f"asked for n_frames={n_frames} from start_frame={start}{rate_note}, but {path} has "
            f"{decoded} frames ({int(available)} available from start_frame{rate_note})",
            available=int(available),
        )
    return frames


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def available_codecs(suffix: str) -> tuple[str, ...]:
    """Codecs :func:`save_video` can write into files ending in ``suffix`` with this PyAV build.

    The first one is the default.
    """
    suffix = suffix.lower()
    if suffix not in _CONTAINERS:
        raise ValueError(
            f"cannot write video files ending in {suffix!r}; choose one of "
            f"{', '.join(_CONTAINERS)}"
        )
    return tuple(name for name in _CONTAINERS[suffix][1] if _has_codec(name, "w"))


def _has_codec(name: str, mode: str) -> bool:
    """Whether this PyAV build has the codec ``name`` to write (``mode`` ``"w"``) or read
    (``"r"``)."""
    av = _pyav()

    try:
        av.codec.Codec(name, mode)
    except (av.error.FFmpegError, av.codec.codec.UnknownCodecError):
        return False
    return True


def _resolve_codec(suffix: str, codec: str | None) -> str:
    av = _pyav()

    choices = available_codecs(suffix)
    if codec is None:
        if not choices:
            raise ValueError(f"this PyAV build has no encoder for {suffix} files")
        return choices[0]
    try:
        name = av.codec.Codec(codec, "w").name  # aliases: h264 -> libx264, vp9 -> libvpx-vp9
    except (av.error.FFmpegError, av.codec.codec.UnknownCodecError):
        name = codec
    if name not in choices:
        raise ValueError(
            f"codec {codec!r} is not supported for {suffix} files here; available: "
            f"{', '.join(choices) if choices else 'none'}"
        )
    return name


def to_uint8(video: Tensor) -> np.ndarray:
    """``(C, T, H, W)`` floats in ``[-1, 1]`` -> uint8 ``(T, H, W, 3)`` (grey repeated to RGB).

    Values are clamped to ``[-1, 1]`` and rounded: ``round((x + 1) * 127.5)``; a video that is
    not floating point is refused (grey levels 0-255 would all come out white).
    """
    _check_video(video)
    video = video.detach().float().cpu()
    if video.shape[0] == 1:
        video = video.expand(3, -1, -1, -1)
    array = to_bytes(video).permute(1, 2, 3, 0)
    return np.ascontiguousarray(array.numpy())


def _check_video(video: Tensor) -> None:
    if not isinstance(video, Tensor) or video.dim() != 4 or video.shape[0] not in (1, 3):
        shape = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
        raise ValueError(f"expected a video of shape (C=1 or 3, T, H, W), got {shape}")
    if min(video.shape[1:]) < 1:
        raise ValueError(f"video has an empty dimension: (C, T, H, W) = {tuple(video.shape)}")
    check_pixels(video, "video")
    if not torch.isfinite(video).all():
        raise ValueError("video contains NaN or infinite values; refusing to write it")


def save_video(
    video: Tensor, path: str | Path, *, fps: float = 25, codec: str | None = None
) -> Path:
    """Write ``video`` ``(C, T, H, W)`` in ``[-1, 1]`` (C = 1 or 3) atomically; return the path.

    The container follows the suffix (``.mp4``, ``.mkv``, ``.webm``, ``.gif``; see the module
    docstring for the default codec of each). ``codec`` overrides the default; see
    :func:`available_codecs`. Values outside ``[-1, 1]`` are clamped. A grey video is written as
    RGB with equal channels (``load_video(..., channels=1)`` gives it back).

    Raises:
        ValueError: bad shape, a dtype that is not floating point, NaN/inf values, an unknown
            suffix, a codec this build cannot write into that container (the message lists the
            ones it can), odd height or width for a yuv420p codec, a frame rate the codec
            or the container cannot store, or an encoder failure.
            Nothing is left at ``path`` (nor a temporary file beside it) when writing fails.
    """
    av = _pyav()

    path = Path(path)
    suffix = path.suffix.lower()
    name = _resolve_codec(suffix, codec)  # validates the suffix too
    frames = to_uint8(video)
    rate = check_fps(fps)
    if name == "gif" and rate > GIF_MAX_FPS:
        # GIF stores each frame's delay in hundredths of a second: faster plays at ~10 fps.
        raise ValueError(f"a GIF plays at most {GIF_MAX_FPS} frames per second, got fps={fps!r}; "
                         "write .mp4 or .mkv")
    if name == "gif" and rate < GIF_MIN_FPS:
        raise ValueError(f"a GIF shows a frame for at most 655.35 s (fps {float(GIF_MIN_FPS):.5f})"
                         f", got fps={fps!r}; write .mp4 or .mkv")
    if _CONTAINERS[suffix][0] in ("matroska", "webm") and rate > MATROSKA_MAX_FPS:
        # Written, the frames that share a time made a file the reader calls truncated.
        raise ValueError(f"{suffix} files (Matroska) time frames in whole milliseconds: at most "
                         f"{MATROSKA_MAX_FPS} frames per second, got fps={fps!r}; write .mp4")
    if name == "mpeg4" and rate.numerator > MPEG4_MAX_RATE_NUMERATOR:
        # Up front: FFmpeg refuses to open the encoder saying only "Invalid argument".
        raise ValueError(f"codec mpeg4 stores the frame rate as a fraction whose numerator is at "
                         f"most {MPEG4_MAX_RATE_NUMERATOR}; fps={fps!r} is {rate}: give it with "
                         "fewer decimal places, or choose another codec")
    _, height, width, _ = frames.shape
    encoder = _ENCODERS[name]
    if encoder.pix_fmt == "yuv420p" and (height % 2 or width % 2):
        raise ValueError(
            f"{name} writes yuv420p, which needs even height and width; got H={height}, "
            f"W={width}. Crop or pad the video, or write .mkv (ffv1) or .gif, which take any size"
        )
    write = partial(_encode_av, frames=frames, container_format=_CONTAINERS[suffix][0],
                    codec=name, fps=fps)
    try:
        return atomic_write(path, write)
    except av.error.FFmpegError as err:
        # Its reason alone: FFmpeg's message names the file it opened, the temporary beside
        # ``path`` that the user never asked for, or the FFmpeg function that failed.
        raise ValueError(f"cannot write {path} with codec {name}: {err.strerror}") from err


def _encode_av(tmp: str, *, frames: np.ndarray, container_format: str, codec: str,
               fps: float) -> None:
    av = _pyav()

    # ``tmp`` ends in ".tmp", so the container format must be named, not guessed from the suffix.
    encoder = _ENCODERS[codec]
    _, height, width, _ = frames.shape
    # An MP4 states the colours of MPEG-4 Part 2 video only in its own 'colr' box (H.264 carries
    # them in its stream as well).
    options = {"movflags": "write_colr"} if container_format == "mp4" else {}
    with av.open(tmp, "w", format=container_format, options=options) as container:
        stream = container.add_stream(
            codec, rate=check_fps(fps), options=dict(encoder.options)
        )
        stream.width, stream.height, stream.pix_fmt = width, height, encoder.pix_fmt
        if codec == "mpeg4":
            # A fixed quantiser. PyAV's qscale is FFmpeg's flag, not a value (2 and 31 wrote the
            # same bytes): no frame quality is set, so FFmpeg clips quantiser 0 to qmin, 2.
            stream.codec_context.qscale = True
        convert = {"format": encoder.pix_fmt, "interpolation": _SCALER_FLAGS,
                   "threads": _SCALER_THREADS}
        if encoder.pix_fmt.startswith("yuv"):
            # The file says which matrix and range its YUV holds, the ones the frames are
            # converted with: untagged, players guess (mpv takes frames over 576 lines or 1279
            # columns for BT.709, which shows a BT.601 red (200, 30, 60) as (213, 48, 58)).
            stream.codec_context.colorspace = convert["dst_colorspace"] = _YUV_MATRIX
            stream.codec_context.color_range = convert["dst_color_range"] = _YUV_RANGE
        for array in frames:
            if codec == "gif":
                frame = av.VideoFrame.from_ndarray(_palette_frame(array), format="pal8")
            else:
                frame = av.VideoFrame.from_ndarray(array, format="rgb24").reformat(**convert)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _palette_frame(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``(H, W, 3)`` -> (indices ``(H, W)``, ARGB palette ``(256, 4)``) for one GIF frame.

    Pillow picks an adaptive palette per frame (exact when the frame has <= 256 colours);
    Handing rgb24 to PyAV's GIF encoder means the fixed 3-3-2-bit rgb8 palette (mean error
    ~17/255 on smooth clips). Pillow's GIF writer is not used because it merges identical
    consecutive frames into one longer frame, which would change T.
    """
    image = Image.fromarray(array).quantize(
        256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
    )
    rgb = np.asarray(image.getpalette("RGB"), dtype=np.uint8).reshape(-1, 3)[:256]
    palette = np.zeros((256, 4), dtype=np.uint8)
    palette[:, 0] = 255  # opaque
    palette[: len(rgb), 1:] = rgb
    return np.asarray(image), palette


def save_comparison(
    videos: Sequence[Tensor],
    path: str | Path,
    *,
    labels: Sequence[str] | None = None,
    fps: float = 25,
    codec: str | None = None,
) -> Path:
    """Write clips side by side, e.g. "observed | synthesized" or "occluded | recovered | truth".

    Args:
        videos: clips ``(C, T, H, W)`` in ``[-1, 1]`` with the same ``T`` and ``H`` (``C`` and
            ``W`` may differ; grey clips are shown as RGB).
        labels: one caption per clip, drawn in a white band above it.
        fps, codec: as in :func:`save_video`.

    Panels are separated by a white gap of :data:`COMPARISON_GAP` pixels; the canvas is padded
    with white at the bottom/right to an even size so that yuv420p codecs accept it.
    """
    videos = list(videos)
    if not videos:
        raise ValueError("save_comparison needs at least one video")
    for i, video in enumerate(videos):
        try:
            _check_video(video)
        except ValueError as err:
            raise ValueError(f"videos[{i}]: {err}") from err
    shapes = [tuple(v.shape) for v in videos]
    if len({s[1:3] for s in shapes}) != 1:
        raise ValueError(f"all videos need the same T and H; got (C, T, H, W) shapes {shapes}")
    if labels is not None and len(labels) != len(videos):
        raise ValueError(f"got {len(labels)} labels for {len(videos)} videos")

    _, frames, height, _ = shapes[0]
    clips = [v.detach().float().cpu().clamp(-1, 1).expand(3, -1, -1, -1) for v in videos]
    gap = torch.ones(3, frames, height, COMPARISON_GAP)
    parts = [clips[0]]
    for clip in clips[1:]:
        parts += [gap, clip]
    canvas = torch.cat(parts, dim=3)
    if labels is not None:
        band = _label_band(labels, [s[3] for s in shapes])  # (3, h, W)
        canvas = torch.cat([band[:, None].expand(-1, frames, -1, -1), canvas], dim=2)
    pad_h, pad_w = canvas.shape[2] % 2, canvas.shape[3] % 2
    canvas = torch.nn.functional.pad(canvas, (0, pad_w, 0, pad_h), value=1.0)
    return save_video(canvas, path, fps=fps, codec=codec)


def _label_band(labels: Sequence[str], widths: list[int]) -> Tensor:
    """White band ``(3, h, sum(widths) + gaps)`` in ``[-1, 1]`` with each label in black,
    wrapped onto as many lines as its panel's width needs."""
    font = ImageFont.load_default()
    line_height = int(font.getbbox("Ag")[3]) + 2
    wrapped = [_wrap(str(label), width - 2, font) for label, width in zip(labels, widths)]
    height = max(len(lines) for lines in wrapped) * line_height + 2
    total = sum(widths) + COMPARISON_GAP * (len(widths) - 1)
    image = Image.new("RGB", (total, height), (255, 255, 255))
    left = 0
    for lines, width in zip(wrapped, widths):
        # Each label is drawn on a tile of its own panel's width, so that a line wider than a
        # very narrow panel (one long character) is cut at the panel's edge, not drawn over the
        # next panel's label.
        tile = Image.new("RGB", (width, height), (255, 255, 255))
        draw = ImageDraw.Draw(tile)
        for row, line in enumerate(lines):
            draw.text((2, 2 + row * line_height), line, fill=(0, 0, 0), font=font)
        image.paste(tile, (left, 0))
        left += width + COMPARISON_GAP
    return to_tensor(np.asarray(image))


def _wrap(label: str, width: int, font: ImageFont.ImageFont | ImageFont.FreeTypeFont
          ) -> list[str]:
    """``label`` split into lines no wider than ``width`` pixels in ``font``: at spaces where
    the words fit, inside a word where one word alone is wider (at least one character a
    line)."""
    lines: list[str] = []
    for word in label.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and font.getlength(candidate) <= width:
            lines[-1] = candidate
            continue
        piece = ""
        for character in word:
            if piece and font.getlength(piece + character) > width:
                lines.append(piece)
                piece = ""
            piece += character
        lines.append(piece)
    return lines or [""]

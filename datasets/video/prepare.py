"""Decode a folder of videos once into an HDF5 cache of training clips.

    python datasets/video/prepare.py ../shared/data/video/actions actions_70x150.h5 \\
        --frames 70 --size 150

The logic lives in :func:`stgconv.data.video.build_clip_cache`; this script only parses the
command line and prints a summary. See datasets/video/README.md for the cache layout.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path
from typing import Sequence

import h5py

from stgconv.data.prepare import run_build
from stgconv.data.video import CACHE_SUFFIXES, build_clip_cache


# build_clip_cache's argument names that its messages use (TooFewFramesError's "asked for
# n_frames=8 from start_frame=2"), as the options that set them.
LIBRARY_NAMES = {"n_frames": "--frames", "start_frame": "--start-frame",
                 "clips_per_video": "--clips-per-video"}


def _size(text: str) -> int | tuple[int, int]:
    """``150`` or ``150x200`` (H x W)."""
    parts = text.lower().split("x")
    try:
        values = [int(part) for part in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"size must be N or HxW with positive ints, got {text!r}")
    return values[0] if len(values) == 1 else (values[0], values[1])


def _clips_per_video(text: str) -> int | None:
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive int or 'all', got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    # No abbreviated options, as stgconv's own commands: a script relying on one breaks, or
    # means another option, once a later version adds an option of the same start.
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="python datasets/video/prepare.py",
        description="Cut clips from videos and store them in an HDF5 cache that "
                    "stgconv.data.video.VideoClips and load_training_clips read.",
    )
    parser.add_argument("src", nargs="+", type=Path,
                        help="a folder of video files, a folder of one video's frame images, "
                             "or one or more video files and frame folders")
    parser.add_argument("out", type=Path, help="the cache to write (.h5 or .hdf5)")
    parser.add_argument("--frames", type=int, required=True, help="frames per clip (T)")
    parser.add_argument("--size", type=_size, required=True,
                        help="frame size: N for NxN, or HxW; frames are resized, not cropped")
    parser.add_argument("--start-frame", type=int, default=0,
                        help="first source frame of the first clip (default 0)")
    parser.add_argument("--fps", type=float, default=None,
                        help="resample every video to this rate by picking frames at its "
                             "average rate (a variable-rate video is taken as evenly spaced; "
                             "default: keep each one's own)")
    parser.add_argument("--clips-per-video", type=_clips_per_video, default=1,
                        help="clips cut from each video, or 'all' for as many as fit (default 1)")
    parser.add_argument("--stride", type=int, default=None,
                        help="frames between the starts of consecutive clips (default: --frames)")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=3,
                        help="1: grey, 3: colour (default 3)")
    parser.add_argument("--compression", choices=("gzip", "lzf", "none"), default="gzip",
                        help="HDF5 compression of the clips (default gzip)")
    parser.add_argument("--skip-unreadable", action="store_true",
                        help="skip (and list) videos that cannot be decoded or are too short, "
                             "instead of stopping")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # One folder is read as a folder of videos (or of one video's frames); anything else is a
    # list of video files and frame folders.
    sources = args.src[0] if len(args.src) == 1 and args.src[0].is_dir() else args.src
    build = partial(
        build_clip_cache, sources, args.out, n_frames=args.frames, size=args.size,
        start_frame=args.start_frame, fps=args.fps, channels=args.channels,
        clips_per_video=args.clips_per_video, stride=args.stride,
        compression=None if args.compression == "none" else args.compression,
        skip_unreadable=args.skip_unreadable,
        # Also refused once built: another process may have written OUT meanwhile.
        overwrite=args.overwrite,
    )
    built = run_build(args.out, build, suffixes=CACHE_SUFFIXES, overwrite=args.overwrite,
                      program=parser.prog, options=LIBRARY_NAMES)
    if built is None:
        return 2
    out, seconds = built

    with h5py.File(out, "r") as h5:
        shape = h5["clips"].shape
        n_sources = len(set(h5["source"].asstr()[()]))
        skipped = list(h5.attrs["skipped"])
    megabytes = out.stat().st_size / 2**20
    raw = 1
    for dim in shape:
        raw *= dim
    print(f"wrote {out}")
    print(f"  clips:   {shape[0]} from {n_sources} video{'' if n_sources == 1 else 's'}"
          + (f" ({len(skipped)} skipped)" if skipped else ""))
    print(f"  shape:   {shape} uint8 (N, T, H, W, C)")
    print(f"  on disk: {megabytes:.1f} MiB ({raw / 2**20:.1f} MiB uncompressed)")
    print(f"  time:    {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

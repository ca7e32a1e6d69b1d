"""Voxelize a ModelNet-style mesh tree once into an HDF5 cache of solid occupancy grids.

    python datasets/voxel/prepare.py ~/data/ModelNet10 modelnet10_32.h5 --resolution 32

The tree is ``ROOT/<category>/{train,test}/*.off``. The logic lives in
:func:`stgconv.data.voxel.build_modelnet_cache`; this script only parses the command line and
prints a summary. See datasets/voxel/README.md for the cache layout.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from stgconv.data.prepare import run_build
from stgconv.data.voxel import CACHE_SUFFIXES, SPLIT_NAMES, build_modelnet_cache


def build_parser() -> argparse.ArgumentParser:
    # No abbreviated options, as stgconv's own commands: a script relying on one breaks, or
    # means another option, once a later version adds an option of the same start.
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="python datasets/voxel/prepare.py",
        description="Voxelize the meshes of a ModelNet-style tree (ROOT/<category>/{train,test}/"
                    "*.off) into an HDF5 cache that stgconv.data.voxel.VoxelShapes and "
                    "load_voxel_shapes read.",
    )
    parser.add_argument("root", type=Path, help="the tree, e.g. an unpacked ModelNet10")
    parser.add_argument("out", type=Path, help="the cache to write (.h5 or .hdf5)")
    parser.add_argument("--resolution", type=int, default=32, help="voxels per side (default 32)")
    parser.add_argument("--margin", type=int, default=1,
                        help="empty voxels kept on each side of a shape (default 1)")
    parser.add_argument("--categories", nargs="+", default=None, metavar="NAME",
                        help="categories to take, labelled 0, 1, ... in the order given "
                             "(default: every category of the tree, ModelNet10's in ModelNet10's "
                             "label order, as the shared .npz files have them)")
    parser.add_argument("--splits", nargs="+", choices=SPLIT_NAMES, default=list(SPLIT_NAMES))
    parser.add_argument("--up-axis", type=int, choices=(0, 1, 2), default=2,
                        help="the meshes' up axis, 0=x 1=y 2=z (ModelNet: 2)")
    parser.add_argument("--skip-unreadable", action="store_true",
                        help="skip (and list) meshes that cannot be read, instead of stopping")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    build = partial(
        build_modelnet_cache, args.root, args.out, resolution=args.resolution,
        categories=args.categories, splits=tuple(args.splits), margin=args.margin,
        up_axis=args.up_axis, skip_unreadable=args.skip_unreadable,
        progress=not args.quiet,  # progress_bar turns itself off where stderr is closed
        # Also refused once built: another process may have written OUT meanwhile.
        overwrite=args.overwrite,
    )
    built = run_build(args.out, build, suffixes=CACHE_SUFFIXES, overwrite=args.overwrite,
                      program=parser.prog)
    if built is None:
        return 2
    out, seconds = built

    with h5py.File(out, "r") as h5:
        shape = h5["voxels"].shape
        labels, splits = h5["label"][()], h5["split"][()]
        names = list(h5.attrs["categories"])
        skipped = list(h5.attrs["skipped"])
    counts = np.bincount(labels, minlength=len(names))
    print(f"wrote {out}")
    per_split = ", ".join(f"{name} {int((splits == i).sum())}"
                          for i, name in enumerate(SPLIT_NAMES))
    print(f"  shapes:  {shape[0]} ({per_split})" + (f", {len(skipped)} skipped" if skipped else ""))
    print("  labels:  " + ", ".join(f"{i} {name} {counts[i]}" for i, name in enumerate(names)
                                    if counts[i]))
    print(f"  shape:   {shape} uint8 (N, R, R, R), z up")
    print(f"  on disk: {out.stat().st_size / 2**20:.1f} MiB")
    meshes = shape[0] + len(skipped)  # a skipped mesh was read too
    print(f"  time:    {seconds:.1f} s ({1000 * seconds / max(meshes, 1):.0f} ms per mesh)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fill priors that never saw the clip they are tested on: one per shared DynTex clip.

For each of boiling_water, flag and fire_pot, ``stgconv fill-prior`` on the other two DynTex
clips and the ten animal clips of ``../shared/data/video/actions`` (every whole 70-frame window,
150x150, under the three mask kinds), written as ``DIR/without_<clip>.pt``;
``python -m bench.recovery --priors DIR`` then recovers each clip from the prior that left it
out, and the table says what starting from a library-trained net adds to the learned fill
trained on the clip alone (``bench/README.md``, "A prior from other clips").

Run from the repository root (about 30 CPU minutes a prior, one thread, 5 GB of memory)::

    python -m bench.fill_prior --out runs/priors --json priors.json
    python -m bench.fill_prior --quick --out /tmp/p   # smoke run on generated clips, seconds
"""

from __future__ import annotations

# First, before torch: it sets OMP_WAIT_POLICY, which libgomp reads when torch loads it.
from bench import common  # isort: skip

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Sequence  # noqa: E402

from bench.recovery import CLIPS, quick_clip  # noqa: E402
from stgconv.cli import SHIPPED_RECOVERY_CONFIG  # noqa: E402
from stgconv.config import QUICK_RECOVERY_CONFIG  # noqa: E402
from stgconv.modalities import VIDEO  # noqa: E402
from stgconv.tasks.fill_prior import train_fill_prior  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "video"),
                        help="folder with the clips and actions/ (default: ../shared/data/video)")
    parser.add_argument("--clips", nargs="+", default=list(CLIPS), help="clips to leave out")
    parser.add_argument("--out", required=True, type=common.output_folder,
                        help="folder for without_<clip>.pt")
    parser.add_argument("--config", default=str(QUICK_RECOVERY_CONFIG),
                        help="YAML config whose recovery.learned section sets the fills, a "
                             "video one (data.kind video) "
                             f"(default: {SHIPPED_RECOVERY_CONFIG})")
    parser.add_argument("--iterations", type=common.count(1), default=3000)
    parser.add_argument("--seed", type=common.seed_number, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: two generated clips a and b, 6 frames of 32x32 read, 3 "
                             "iterations (options given explicitly win)")
    parser.add_argument("--json", metavar="FILE", type=common.json_path,
                        help="also write the rows as a JSON list")
    args = common.parse_arguments(parser, argv, quick={"clips": ["a", "b"], "iterations": 3},
                                  generated=["data"])
    with tempfile.TemporaryDirectory(prefix="stgconv-bench-") as tmp:
        return run(parser, args, Path(tmp))


def run(parser: argparse.ArgumentParser, args: argparse.Namespace, tmp: Path) -> int:
    """A prior for every clip of ``args``; ``tmp`` holds the generated clips of ``--quick``."""
    overrides, frames, size = [], 70, 150
    if args.quick:
        data = tmp
        library = [quick_clip(data).rename(data / f"{clip}.mkv") for clip in ("a", "b")]
        frames, size = 6, 32
        overrides = ["recovery.learned.crop_size=8"]
    else:
        data = Path(args.data)
        library = ([data / f"{clip}.avi" for clip in CLIPS]
                   + sorted((data / "actions").glob("*.mp4")))
        if not all(path.is_file() for path in library[:len(CLIPS)]):
            parser.error(f"the DynTex clips {list(CLIPS)} are not all in {data} (pass --data)")
    unknown = sorted(set(args.clips) - {path.stem for path in library})
    if unknown:  # leaving out a clip that is not there would train on every clip, silently
        parser.error(f"--clips {' '.join(unknown)}: not among the clips "
                     f"{[path.stem for path in library]}")
    config = common.read_config(parser, args.config, [], overrides, modality=VIDEO)
    settings = config.recovery.learned
    rows = []
    for clip in args.clips:
        videos = [path for path in library if path.stem != clip]
        started = time.process_time()
        path = train_fill_prior(videos, Path(args.out) / f"without_{clip}.pt", settings=settings,
                                iterations=args.iterations, frames=frames, size=size,
                                seed=args.seed, channels=config.data.channels)
        rows.append({"left_out": clip, "prior": str(path), "videos": [p.name for p in videos],
                     "iterations": args.iterations, "cpu_seconds": time.process_time() - started})
    table = "\n".join(["# fill priors, each trained without one clip",
                       f"{'left out':<16}{'videos':>8}{'CPU s':>9}  prior"]
                      + [f"{row['left_out']:<16}{len(row['videos']):>8}{row['cpu_seconds']:>9.0f}"
                         f"  {row['prior']}" for row in rows])
    common.report(table, rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

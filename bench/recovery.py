"""Video recovery on the shared DynTex clips: our recovery against the classical baselines.

The protocol of the original recovery experiments: the first 70 frames of each clip, resized to
150x150, the masks of ``../shared/data/video/masks`` (both types: 50% of the frames missing, a
moving 60x60 block per frame) and the third experiment's 50% salt-and-pepper pixels (generated,
seeded), and the mean absolute error over the missing pixels on the 0-255 scale. Every clip x mask
pair is one :func:`stgconv.evaluation.video_recovery.eval_recovery` call, so ours and the baselines
run on the same masked input. This takes minutes per pair on a CPU.

Run from the repository root::

    python -m bench.recovery --json recovery.json
    python -m bench.recovery --clips flag --masks region --out runs/recovery  # + the clips
    python -m bench.recovery --clips actions/18_zebra --mask-clip windmill  # other clips, masks
    python -m bench.recovery --quick --json /tmp/r.json   # smoke run on a
                                                                        # generated clip, seconds
"""

from __future__ import annotations

# First, before torch: it sets OMP_WAIT_POLICY, which libgomp reads when torch loads it.
from bench import common  # isort: skip

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Sequence  # noqa: E402

import torch  # noqa: E402

from stgconv.cli import SHIPPED_RECOVERY_CONFIG  # noqa: E402
from stgconv.config import QUICK_RECOVERY_CONFIG, load_config  # noqa: E402
from stgconv.data.masks import check_mask_matches  # noqa: E402
from stgconv.evaluation.video_recovery import eval_recovery  # noqa: E402
from stgconv.io.video import save_video  # noqa: E402
from stgconv.modalities import VIDEO  # noqa: E402
from stgconv.recovery import check_schedule  # noqa: E402
from stgconv.tasks.recover_video import (  # noqa: E402
    SCHEDULE_KEYS,
    check_fits_network,
    load_clip,
    load_known,
)

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ("boiling_water", "flag", "fire_pot")
MASK_TYPES = {"missing_frame": "missing frames (50%)", "region": "moving 60x60 block",
              "salt_and_pepper": "50% of the pixels, drawn independently",
              "fixed_region": "one 60x60 block in the same place in every frame",
              "logo_and_frames": "a fixed block a fifth of the side and 30% of the frames"}
# The original experiments' three; a fixed occluder (a logo, a scratch), alone or beside dropped
# frames, on request.
PAPER_MASKS = ("missing_frame", "region", "salt_and_pepper")
# The paper's third experiment has no shared mask file: generated (seeded by the config's seed).
GENERATED_MASKS = {"salt_and_pepper": "salt_and_pepper:0.5", "fixed_region": "fixed_region:60"}
# --quick: the same mask types, generated for a small clip.
QUICK_MASKS = {"missing_frame": "missing_frames:0.5", "region": "region:12",
               "salt_and_pepper": "salt_and_pepper:0.5", "fixed_region": "fixed_region:12"}


def quick_clip(folder: Path) -> Path:
    """A moving sinusoid, 3 x 12 x 32 x 32, stored losslessly: a stand-in clip for smoke runs."""
    t, y, x = torch.meshgrid(torch.arange(12.0), torch.arange(32.0), torch.arange(32.0),
                             indexing="ij")
    wave = torch.sin(0.4 * x + 0.3 * y - 0.5 * t) * 0.6
    return save_video(torch.stack([wave, wave.roll(3, 2), -wave]), folder / "wave.mkv")


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "video"),
                        help="folder with the clips and masks/ (default: ../shared/data/video)")
    parser.add_argument("--clips", nargs="+", default=list(CLIPS))
    parser.add_argument("--masks", nargs="+", choices=sorted(MASK_TYPES), default=list(PAPER_MASKS),
                        help="default: the original experiments' three; fixed_region: a fixed "
                             "60x60 block; logo_and_frames: a fixed block a fifth of --size on "
                             "a side, with 30%% of the frames missing (generated from the "
                             "config's seed)")
    parser.add_argument("--mask-clip", default="flag",
                        help="whose masks to apply (the shared masks exist for flag and others)")
    parser.add_argument("--config", default=str(QUICK_RECOVERY_CONFIG),
                        help="YAML config of ours, a video one (data.kind video) "
                             f"(default: {SHIPPED_RECOVERY_CONFIG})")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value (repeatable)")
    parser.add_argument("--priors", metavar="DIR",
                        help="fill priors named without_<clip>.pt (bench/fill_prior.py): each "
                             "clip's learned fill starts from the one that never saw it "
                             "(default: the config's recovery.learned.prior)")
    parser.add_argument("--frames", type=common.count(1), default=70)
    parser.add_argument("--size", type=common.count(1), default=150)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: a generated 12-frame 32x32 clip (wave), its own masks, "
                             "2 iterations (options given explicitly win)")
    parser.add_argument("--json", metavar="FILE", type=common.json_path,
                        help="also write the rows as a JSON list")
    parser.add_argument("--out", metavar="DIR", type=common.output_folder,
                        help="also write each case's recovered clip, comparison and metrics "
                             "to DIR/<clip>_<mask> (what `stgconv eval recovery --out` writes)")
    args = common.parse_arguments(parser, argv,
                                  quick={"clips": ["wave"], "frames": 12, "size": 32},
                                  generated=["data", "mask_clip"])
    with tempfile.TemporaryDirectory(prefix="stgconv-bench-") as tmp:
        return run(parser, args, Path(tmp))


def run(parser: argparse.ArgumentParser, args: argparse.Namespace, tmp: Path) -> int:
    """Every clip x mask case of ``args``; ``tmp`` holds the generated clip of ``--quick``."""
    own = []
    if args.quick:
        data = tmp
        quick_clip(data)
        own = ["train.n_iterations=2", "recovery.average_last=1", "recovery.warmup=1",
               "recovery.learned.iterations=3", "recovery.learned.crop_size=8"]
    else:
        data = Path(args.data)
        if not data.is_dir():
            parser.error(f"video data folder not found: {data} (pass --data)")
    overrides = [*args.overrides, *own]
    config = common.read_config(parser, args.config, args.overrides, own, modality=VIDEO)
    try:
        # A schedule the first case would refuse with a traceback (--set train.n_iterations=2
        # under the config's recovery.warmup of 5).
        check_schedule(config.train.n_iterations, config.chains.chains_per_example,
                       config.recovery.warmup, config.recovery.average_last,
                       names=SCHEDULE_KEYS)
    except ValueError as err:
        # The pair at fault where --set items are given: the config alone (the shipped file,
        # never given) was blamed for a --set's train.n_iterations.
        sets = f" with --set {' '.join(args.overrides)}" if args.overrides else ""
        parser.error(f"--config {args.config}{sets}: {err}")
    missing = [clip for clip in args.clips
               if args.priors and not (Path(args.priors) / f"without_{clip}.pt").is_file()]
    if missing:
        parser.error(f"no prior without_<clip>.pt in {args.priors} for {missing}")
    videos = {clip: next(iter(sorted(data.glob(f"{clip}.*"))), None) for clip in args.clips}
    unknown = [clip for clip, video in videos.items() if video is None]
    if unknown:  # now, not after the clips before them have run
        parser.error(f"no clip named {', '.join(unknown)} in {data}")
    masks = {mask_type: mask_of(mask_type, args, data) for mask_type in args.masks}
    # Every clip is read as (3, --frames, --size, --size) (or refused): its shape only.
    read_clip = torch.zeros(()).expand(3, args.frames, args.size, args.size)
    for mask_type, mask in masks.items():  # now, not after the clips before it have run
        try:
            check_mask_matches(load_known(mask, read_clip.shape[1:], seed=config.seed),
                               read_clip)
        except (FileNotFoundError, ValueError) as err:
            parser.error(f"{mask_type}: {err} (clips of --frames {args.frames}, --size "
                         f"{args.size})")
    try:  # else the first case's traceback (--size 4 under the network's receptive field)
        check_fits_network(config, read_clip)
    except ValueError as err:
        parser.error(f"clips of --frames {args.frames}, --size {args.size}: {err}")
    # Each clip read once, now: one that cannot be read, or has fewer than --frames frames, is
    # refused before the first case, and every mask's case reuses it.
    clips_read = {}
    for clip, video in videos.items():
        try:
            clips_read[clip] = load_clip(video, frames=args.frames, size=args.size,
                                         start_frame=config.data.start_frame,
                                         fps=config.data.fps, channels=config.data.channels)
        except (FileNotFoundError, ValueError) as err:
            parser.error(f"clip {clip}: {err}")
    rows = []
    for clip, video in videos.items():
        if args.priors:
            prior = Path(args.priors) / f"without_{clip}.pt"
            config = load_config(args.config, [*overrides, f"recovery.learned.prior={prior}"])
        for mask_type, mask in masks.items():
            table = eval_recovery(config, video, mask, frames=args.frames, size=args.size,
                                  clip=clips_read[clip],
                                  out_dir=args.out and Path(args.out) / f"{clip}_{mask_type}")
            best_baseline = min(
                (e, name) for name, e in table["errors"].items() if name != "stgconv"
            )
            rows.append({
                "clip": clip,
                "mask": mask_type,
                "errors": table["errors"],
                "seconds": table["seconds"],
                "best_baseline": best_baseline[1],
                "stgconv_minus_best_baseline": table["errors"]["stgconv"] - best_baseline[0],
                "stgconv_over_best_baseline": table["errors"]["stgconv"] / best_baseline[0],
                # The fill the chain started from (learned, or the classical one the holdout
                # preferred) and its error: what sampling added on top of it.
                "start": table["start"],
                # The learned fill's prior (None: trained on this clip alone).
                "prior": config.recovery.learned.prior,
                # The seed the case ran (the config's, or a --set's): what the README's runs
                # of seeds 0 and 1 differ by; the options hold only a --set.
                "seed": config.seed,
                # -1: the held-out check kept the starting fill unchanged.
                "selected_iteration": table["selected_iteration"],
                "unit": table["unit"],
            })
            print(f"{clip} / {mask_type}: " + ", ".join(
                f"{name} {e:.2f}" for name, e in table["errors"].items()), flush=True)
    common.report(format_rows(rows, config.name), rows, args)
    return 0


def mask_of(mask_type: str, args: argparse.Namespace, data: Path) -> str | Path:
    """The mask ``eval_recovery`` applies for ``mask_type``: generated, or a shared file."""
    if mask_type == "logo_and_frames":  # the block scaled with the frames, as a logo is drawn
        return f"fixed_region:{max(1, round(args.size / 5))}+missing_frames:0.3"
    if args.quick:
        return QUICK_MASKS[mask_type]
    if mask_type in GENERATED_MASKS:
        return GENERATED_MASKS[mask_type]
    return data / "masks" / f"{args.mask_clip}_{mask_type}_type.mat"


def format_rows(rows: list[dict], config_name: str) -> str:
    methods = list(rows[0]["errors"]) if rows else []
    width = max([15, *(len(row["clip"]) + 2 for row in rows)])  # e.g. actions/18_zebra
    # Each method's column as wide as its name: cut to 20 characters, the header read
    # "temporal_interpolati".
    columns = {m: max(21, len(m) + 1) for m in methods}
    header = (f"{'clip':<{width}}{'mask':<17}" + "".join(f"{m:>{columns[m]}}" for m in methods)
              + f"{'x best':>8}  start (its error)")
    lines = [f"# video recovery, mean absolute error on the missing pixels (0-255); "
             f"ours = config {config_name}", header, "-" * len(header)]
    for row in rows:
        lines.append(f"{row['clip']:<{width}}{row['mask']:<17}"
                     + "".join(f"{row['errors'][m]:>{columns[m]}.2f}" for m in methods)
                     + f"{row['stgconv_over_best_baseline']:>8.3f}  "
                     f"{row['start']['fill']} ({row['start']['error']:.2f})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

"""Compare stgconv with the classical baselines (video recovery, voxel super-resolution and
recovery, learned-feature classification), and out-of-distribution detection by classifier (JEM)
models.

Same as `stgconv eval ...`: `python tools/evaluate.py --help` lists the options.
"""

from __future__ import annotations

import sys
from typing import Sequence

from stgconv import cli


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(["eval", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

"""Fill the unobserved voxels of shapes with a trained voxel model.

Same as `stgconv recover-shape ...`: `python tools/recover_shape.py --help` lists the options.
"""

from __future__ import annotations

import sys
from typing import Sequence

from stgconv import cli


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(["recover-shape", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

"""Samples between two short-run chain starts of a trained model.

Same as `stgconv interpolate ...`: `python tools/interpolate.py --help` lists the options.
"""

from __future__ import annotations

import sys
from typing import Sequence

from stgconv import cli


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(["interpolate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

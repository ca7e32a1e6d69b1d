"""Reconstruct an image through a trained model's short-run chain.

Same as `stgconv reconstruct ...`: `python tools/reconstruct.py --help` lists the options.
"""

from __future__ import annotations

import sys
from typing import Sequence

from stgconv import cli


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(["reconstruct", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

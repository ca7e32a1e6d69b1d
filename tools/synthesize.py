"""Sample new images, clips or shapes from a trained model's checkpoint.

Same as `stgconv synthesize ...`: `python tools/synthesize.py --help` lists the options.
"""

from __future__ import annotations

import sys
from typing import Sequence

from stgconv import cli


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(["synthesize", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

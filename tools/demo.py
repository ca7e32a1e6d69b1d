"""The quick start: learn a real texture, then synthesize new ones.

Same as `stgconv demo ...`: `python tools/demo.py --help` lists the options.
"""

from __future__ import annotations

import sys
from typing import Sequence

from stgconv import cli


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(["demo", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

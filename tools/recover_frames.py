"""Recover the missing pixels or frames of a clip by learning from the clip itself.

Same as `stgconv recover ...`: `python tools/recover_frames.py --help` lists the options.
"""

from __future__ import annotations

import sys
from typing import Sequence

from stgconv import cli


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(["recover", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

"""Train a model from a YAML config (defaults: the quick-start brick texture).

Same as `stgconv train ...`: `python tools/train.py --help` lists the options.
"""

from __future__ import annotations

import sys
from typing import Sequence

from stgconv import cli


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

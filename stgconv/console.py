"""Lines for the person at the terminal, shared by the ``stgconv`` command and the dataset
scripts."""

from __future__ import annotations

import sys


def tell(line: str) -> None:
    """``line`` on stderr; nothing where stderr is closed (``2>&-``: ``sys.stderr`` is None), as
    Python drops its own warnings there: ``print(file=None)`` writes to stdout, into the
    command's report."""
    if sys.stderr is not None:
        print(line, file=sys.stderr)

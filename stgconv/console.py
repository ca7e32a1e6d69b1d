"""Lines for the person at the terminal, shared by the ``stgconv`` command and the dataset
scripts."""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable

from tqdm import tqdm

# Seconds between a progress bar's redraws where stderr is a file or a pipe: each redraw is a
# carriage-return line that a log keeps (~110 bytes; 4 MB an hour at tqdm's own 0.1 s).
LOG_MININTERVAL = 30.0


def tell(line: str) -> None:
    """``line`` on stderr; nothing where stderr is closed (``2>&-``: ``sys.stderr`` is None), as
    Python drops its own warnings there: ``print(file=None)`` writes to stdout, into the
    command's report."""
    if sys.stderr is not None:
        print(line, file=sys.stderr)


def progress_bar(iterable: Iterable | None = None, **options: Any) -> tqdm:
    """``tqdm(iterable, **options)`` on stderr, redrawn at most every :data:`LOG_MININTERVAL`
    seconds where stderr is a log file or a pipe (not a terminal, nor a notebook's stream); a
    ``mininterval`` in ``options`` or the environment's ``TQDM_MININTERVAL`` (which tqdm
    reads) wins. Where stderr is closed (``2>&-``) the bar is off, whatever ``options`` ask:
    tqdm's first draw failed there (AttributeError), stopping a library caller's run."""
    if sys.stderr is None:
        options["disable"] = True
    if "TQDM_MININTERVAL" not in os.environ and _keeps_every_line(sys.stderr):
        options.setdefault("mininterval", LOG_MININTERVAL)
    return tqdm(iterable, **options)


def _keeps_every_line(stream: Any) -> bool:
    """Whether ``stream`` keeps each carriage-return redraw as a line of its own: a file or a
    pipe does; a terminal and a Jupyter kernel's stream (ipykernel's ``OutStream``, no
    terminal either) draw over the last one. A stream with no ``isatty`` (a program's own
    writer put in place of ``sys.stderr``: ``write`` is all ``print`` needs) is no terminal:
    asking it failed the run with an AttributeError as its progress bar began."""
    if stream is None or getattr(stream, "isatty", lambda: False)():
        return False
    return not type(stream).__module__.startswith("ipykernel.")

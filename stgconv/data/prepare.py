"""What the ``datasets/*/prepare.py`` scripts share: refuse an output they must not write, run
the cache build with its warnings collected, and turn bad input into ``PROGRAM: error: ...`` on
stderr, as argparse reports the scripts' bad arguments.

The scripts stay scripts (``datasets/`` is not a package); each keeps its own arguments and
summary, and calls :func:`run_build` in between.
"""

from __future__ import annotations

import re
import time
import warnings
from pathlib import Path
from typing import Callable, Mapping, Sequence

from stgconv.checks import check_output
from stgconv.console import tell
from stgconv.io.atomic import WriteError
from stgconv.io.mesh import MissingLibraryError


def run_build(out: Path, build: Callable[[], Path], *, suffixes: Sequence[str],
              overwrite: bool, program: str, options: Mapping[str, str] | None = None
              ) -> tuple[Path, float] | None:
    """Call ``build()``, which writes the cache ``out``, and print the warnings it raised that
    the warning filters show (a library's deprecations are hidden as Python hides them; a
    ``UserWarning`` is printed every time), also when it then fails. ``options`` maps the
    build function's argument names to the script's options that set them
    (``{"n_frames": "--frames"}``): the build's warnings and error print with the options the
    user typed (``asked for --frames=8``), not names of a function the user never called.

    Returns:
        ``(the written cache, seconds the build took)``; or ``None``, after printing
        ``<program>: error: ...`` to stderr (``program``: the script's parser's ``prog``),
        when ``out`` does not end in one of ``suffixes``, exists without ``overwrite``, cannot
        be written (a folder there, a name the file system refuses), or the build raised
        ``OSError``, ``ValueError`` or :class:`~stgconv.io.mesh.MissingLibraryError` (open3d
        cannot load, to voxelize meshes) (the script then exits with status 2).

    Raises:
        SystemExit: 130, after one line on stderr, when the build is interrupted (Ctrl-C);
            1, after ``<program>: error: ...``, when writing the cache failed part-way
            (:class:`~stgconv.io.atomic.WriteError`: a full disk), as the ``stgconv``
            command exits for it.
    """
    if out.suffix.lower() not in suffixes:
        tell(f"{program}: error: OUT must end in {' or '.join(suffixes)}, got {out}")
        return None
    try:  # before the build's minutes: a folder named OUT, or a file where a folder must be
        # Inside the try: a name the file system refuses (too long) fails the existence test.
        # What no --overwrite replaces (a folder, a device) is named first: "pass --overwrite"
        # sent the user to a second refusal.
        check_output(out, "OUT", folder=False)
        if out.exists() and not overwrite:
            tell(f"{program}: error: {out} exists; pass --overwrite to replace it")
            return None
    except (OSError, ValueError) as err:
        tell(f"{program}: error: {err}")
        return None
    began = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            # The build's reports (UserWarning: "skipping FILE") every time, where the default
            # filter shows a repeat from one line once; other kinds as the filters in force
            # say, so a library's deprecations stay as quiet as Python keeps them.
            warnings.simplefilter("always", UserWarning)
            written = build()
    except (OSError, ValueError, MissingLibraryError) as err:
        # What the build skipped before it failed often explains the failure.
        _print_warnings(caught, options)
        tell(f"{program}: error: {_as_typed(str(err), options)}")
        if isinstance(err, WriteError):  # the file system's failure, not the input's
            raise SystemExit(1) from None
        return None
    except KeyboardInterrupt:
        # The cache is renamed into place only once whole: there is nothing to clean up.
        tell(f"interrupted: {out} not written" + (" (the old one kept)" if out.exists() else ""))
        raise SystemExit(130) from None
    seconds = time.perf_counter() - began
    _print_warnings(caught, options)
    return written, seconds


def _print_warnings(caught: list[warnings.WarningMessage],
                    options: Mapping[str, str] | None) -> None:
    for warning in caught:
        tell(f"warning: {_as_typed(str(warning.message), options)}")


def _as_typed(message: str, options: Mapping[str, str] | None) -> str:
    """``message`` with each argument name of ``options`` (a whole word: ``n_frames=8``, not
    ``source_n_frames``) replaced by its option (``--frames=8``)."""
    if not options:
        return message
    names = "|".join(map(re.escape, options))
    return re.sub(rf"\b({names})\b", lambda name: options[name.group()], message)

"""The files of a folder in the order a person reads them: hidden files skipped, names in natural
order (``f2.png`` before ``f10.png``), so frames, clips and meshes come in the order they were
numbered whether or not the numbers are zero-padded."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Sequence


def list_files(folder: Path, suffixes: Sequence[str] | None = None, *,
               dangling_links: bool = False) -> list[Path]:
    """The visible files directly inside ``folder`` whose suffix is one of ``suffixes`` (such as
    ``(".png", ".jpg")``, in any case; every file when ``None``), in natural name order.

    ``dangling_links``: list links to nothing too, for a caller that skips and reports each
    file it cannot read (their reading raises ``FileNotFoundError``).

    Raises:
        ValueError: one of them is a link to nothing, unless ``dangling_links`` (a dataset
            linked from a drive that is not mounted would otherwise lose those files without a
            word); ``suffixes`` not a collection of suffixes with their dot (one string was
            searched as text: ".png" took names without a suffix too, and "png" took none).
    """
    wanted = None
    if suffixes is not None:
        given = suffixes if isinstance(suffixes, str) else list(suffixes)  # once, if a generator
        if isinstance(given, str) or not all(isinstance(suffix, str) and suffix.startswith(".")
                                             for suffix in given):
            raise ValueError("suffixes must be a collection of suffixes with their dot, such as "
                             f"('.png', '.jpg'), got {given!r}")
        wanted = {suffix.lower() for suffix in given}  # as the names' are compared
    files = [p for p in folder.iterdir() if not p.name.startswith(".")
             and (wanted is None or p.suffix.lower() in wanted)]
    dangling = [path for path in files if path.is_symlink() and not path.exists()]
    if dangling and not dangling_links:
        raise ValueError(f"{dangling[0]}: a link to {dangling[0].readlink()}, which does not "
                         "exist")
    return sorted((p for p in files if p.is_file() or p in dangling), key=_natural_key)


def distinct_files(files: Sequence[Path], what: str) -> list[Path]:
    """``files`` (a folder's, as :func:`list_files` lists them) with each file once: a name
    that is a link to an earlier one's file (a symbolic or a hard link) is left out, with a
    warning naming both and ``what`` the files are (``"video"``); links to nothing are kept,
    for the caller to report. In a folder the user named no file twice: a video or an image
    and a link to it (latest.mp4 -> run3.mp4) were two examples of one, weighed double in
    training without a word."""
    first: dict[tuple[int, int], Path] = {}
    once = []
    for file in files:
        if not file.exists():  # a link to nothing, listed for the caller to report
            once.append(file)
            continue
        found = os.stat(file)
        kept = first.setdefault((found.st_dev, found.st_ino), file)
        if kept is file:
            once.append(file)
        else:
            warnings.warn(f"{file} and {kept} are one {what} (a link): it is read once, as "
                          f"{kept.name}", stacklevel=3)
    return once


def list_folders(folder: Path) -> list[Path]:
    """The visible folders directly inside ``folder``, in natural name order, without
    ``__MACOSX`` (the resource forks a zip made on a Mac carries, not data)."""
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                   and p.name != "__MACOSX"), key=_natural_key)


def folder_names(folder: Path) -> str:
    """The first three of :func:`list_folders` as ``"a, b, c, ..."`` for a message about
    ``folder`` (a tree given one level too high, or deeper than read), ``""`` when none."""
    folders = list_folders(folder)
    return ", ".join(p.name for p in folders[:3]) + (", ..." if len(folders) > 3 else "")


def _natural_key(path: Path) -> tuple[list, str]:
    # The split puts the digit runs at odd positions: they compare as numbers, the rest as
    # case-folded text (asking str.isdigit instead would also take "²", which int() refuses).
    # The raw name breaks ties ("f02" and "f2", "A" and "a"), so the order never depends on
    # the order the file system lists the names in.
    parts = re.split(r"(\d+)", path.name)
    return [int(part) if i % 2 else part.lower() for i, part in enumerate(parts)], path.name

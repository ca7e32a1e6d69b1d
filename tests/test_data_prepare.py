"""``stgconv.data.prepare.run_build``: what every ``datasets/*/prepare.py`` does around its cache
build: refuse an OUT it must not write, time the build, print its warnings, and turn bad input
into ``PROGRAM: error: ...`` on stderr (the scripts then exit with status 2)."""

from __future__ import annotations

import errno
import os
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import pytest

from stgconv.data.prepare import run_build
from stgconv.io.atomic import write_error
from stgconv.io.mesh import MissingLibraryError

SUFFIXES = (".h5", ".hdf5")
PROGRAM = "python datasets/kind/prepare.py"
# run_build as a script calls it: its cache suffixes and its name for the messages.
build_as_script = partial(run_build, suffixes=SUFFIXES, program=PROGRAM)


class Build:
    """A fake cache build: writes ``out`` (unless told to fail), counting its calls."""

    def __init__(self, out: Path, *, warn: tuple[str, ...] = (), error: BaseException | None = None,
                 sleep: float = 0.0, category: type[Warning] = UserWarning) -> None:
        self.out, self.warn, self.error, self.sleep, self.calls = out, warn, error, sleep, 0
        self.category = category

    def __call__(self) -> Path:
        self.calls += 1
        for message in self.warn:
            warnings.warn(message, self.category, stacklevel=1)
        if self.error is not None:
            raise self.error
        time.sleep(self.sleep)
        self.out.write_text("cache")
        return self.out


def test_success_returns_the_build_result_and_its_time(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "clips.h5"
    build = Build(out, sleep=0.05)
    written, seconds = build_as_script(out, build, overwrite=False)
    assert written == out and out.read_text() == "cache" and build.calls == 1
    assert 0.05 <= seconds < 5
    assert capsys.readouterr() == ("", "")  # nothing to report


def test_returns_what_build_returned(tmp_path: Path) -> None:
    # The build may write somewhere else (e.g. a normalised name); its answer is passed on.
    other = tmp_path / "elsewhere.h5"
    result = build_as_script(tmp_path / "out.h5", lambda: other, overwrite=False)
    assert result is not None and result[0] == other


@pytest.mark.parametrize("name", ["clips.npz", "clips", "clips.h5.bak"])
def test_wrong_suffix_is_refused_before_building(tmp_path: Path, name: str,
                                                 capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / name
    build = Build(out)
    assert build_as_script(out, build, overwrite=True) is None
    assert build.calls == 0 and not out.exists()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"{PROGRAM}: error: OUT must end in .h5 or .hdf5, got {out}\n"


def test_suffix_check_ignores_case(tmp_path: Path) -> None:
    out = tmp_path / "CLIPS.HDF5"
    assert build_as_script(out, Build(out), overwrite=False) is not None
    assert out.read_text() == "cache"


def test_existing_out_needs_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "clips.h5"
    out.write_text("old")
    build = Build(out)
    assert build_as_script(out, build, overwrite=False) is None
    assert build.calls == 0 and out.read_text() == "old"
    assert capsys.readouterr().err == (f"{PROGRAM}: error: {out} exists; pass --overwrite to "
                                       "replace it\n")

    assert build_as_script(out, build, overwrite=True) is not None
    assert build.calls == 1 and out.read_text() == "cache"
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("error", [FileNotFoundError("no videos in /data/x"),
                                   ValueError("clip too short: a.mp4"),
                                   OSError(28, "No space left on device", "/data/clips.h5"),
                                   # Not the input's fault, but the user's to fix, in one line.
                                   MissingLibraryError("voxelizing meshes needs open3d, which "
                                                       "failed to import (...)")])
def test_bad_input_becomes_an_error_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                         error: Exception) -> None:
    out = tmp_path / "clips.h5"
    assert build_as_script(out, Build(out, error=error), overwrite=False) is None
    assert capsys.readouterr().err == f"{PROGRAM}: error: {error}\n"
    assert not out.exists()


def test_failed_overwrite_keeps_the_old_out(tmp_path: Path) -> None:
    # run_build deletes nothing itself: a failing build (which writes atomically) leaves the
    # cache that was there before.
    out = tmp_path / "clips.h5"
    out.write_text("old")
    build = Build(out, error=ValueError("bad"))
    assert build_as_script(out, build, overwrite=True) is None
    assert out.read_text() == "old"


@pytest.mark.parametrize("overwrite", [True, False])
def test_an_out_that_is_a_folder_is_refused_before_building(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture,
                                                           overwrite: bool) -> None:
    """Named as a folder with or without --overwrite (without, "pass --overwrite to replace
    it" was advice that --overwrite then refused)."""
    out = tmp_path / "clips.h5"
    out.mkdir()
    build = Build(out)
    assert build_as_script(out, build, overwrite=overwrite) is None
    assert build.calls == 0  # refused before the build's minutes (it failed after them)
    assert capsys.readouterr().err.startswith(f"{PROGRAM}: error: OUT {out} is a folder")


def test_an_out_whose_name_is_too_long_is_one_error_line(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    """The file system refuses the name itself: that was a traceback from the existence test,
    before any check."""
    out = tmp_path / ("x" * 300 + ".h5")
    build = Build(out)
    assert build_as_script(out, build, overwrite=False) is None
    assert build.calls == 0
    err = capsys.readouterr().err
    assert err.startswith(f"{PROGRAM}: error: ") and err.count("\n") == 1
    assert os.strerror(errno.ENAMETOOLONG) in err


def test_ctrl_c_is_one_line_and_status_130(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "clips.h5"
    out.write_text("old")
    with pytest.raises(SystemExit) as stopped:
        build_as_script(out, Build(out, error=KeyboardInterrupt()), overwrite=True)
    assert stopped.value.code == 130 and out.read_text() == "old"
    assert capsys.readouterr().err == f"interrupted: {out} not written (the old one kept)\n"


def test_a_cache_that_fails_part_way_through_its_write_is_one_line_and_status_1(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A full disk while the cache is written is the file system's failure, not the input's:
    status 1, as the stgconv command's (it was 2, bad input)."""
    out = tmp_path / "clips.h5"
    error = write_error(errno.ENOSPC, "No space left on device", out)
    with pytest.raises(SystemExit) as stopped:
        build_as_script(out, Build(out, error=error), overwrite=False)
    assert stopped.value.code == 1
    assert capsys.readouterr().err == (f"{PROGRAM}: error: [Errno 28] No space left on device: "
                                       f"'{out}'\n")


@pytest.mark.parametrize("error", [RuntimeError("bug"), KeyError("k")])
def test_other_errors_propagate(tmp_path: Path, error: Exception) -> None:
    # Only bad input is turned into a message; a bug must surface with its traceback.
    out = tmp_path / "clips.h5"
    with pytest.raises(type(error)):
        build_as_script(out, Build(out, error=error), overwrite=False)


def test_warnings_are_printed_every_time_and_not_reraised(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "clips.h5"
    # The same warning twice, from the same line: the default filter would show it once.
    build = Build(out, warn=("skipped a.mp4: unreadable", "skipped a.mp4: unreadable",
                             "fps differs"))
    with warnings.catch_warnings(record=True) as outside:
        warnings.simplefilter("default")  # as in a script run: repeats would be hidden
        result = build_as_script(out, build, overwrite=False)
    assert result is not None and result[0] == out
    assert outside == []  # reported once, on stderr, not also as Python warnings
    assert capsys.readouterr().err == ("warning: skipped a.mp4: unreadable\n"
                                       "warning: skipped a.mp4: unreadable\n"
                                       "warning: fps differs\n")


def test_a_library_deprecation_the_filters_hide_is_not_printed(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A deprecation warned inside a library the build calls (h5py, av, open3d) is noise to
    the script's user: hidden as Python's default filters hide it, not printed as a warning."""
    out = tmp_path / "clips.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # as in a script run: deprecations outside __main__
        warnings.simplefilter("ignore", DeprecationWarning)  # are not shown
        result = build_as_script(out, Build(out, warn=("Dataset.value is deprecated",),
                                            category=DeprecationWarning), overwrite=False)
    assert result is not None and result[0] == out
    assert capsys.readouterr().err == ""


def test_warning_filters_are_restored(tmp_path: Path) -> None:
    out = tmp_path / "clips.h5"
    before = list(warnings.filters)
    build_as_script(out, Build(out, warn=("w",)), overwrite=False)
    assert warnings.filters == before


def test_warnings_of_a_failed_build_come_before_its_error(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cache.h5"
    build = Build(out, warn=("skipped a.mp4: unreadable",), error=ValueError("no clip left"))
    assert build_as_script(out, build, overwrite=False) is None
    assert capsys.readouterr().err == (f"warning: skipped a.mp4: unreadable\n{PROGRAM}: error: no "
                                       "clip left\n")


def test_a_closed_stderr_keeps_errors_and_warnings_out_of_stdout(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under `2>&-` sys.stderr is None, and print(file=None) wrote the lines to stdout, where
    the script's summary (or a program reading it) is."""
    monkeypatch.setattr(sys, "stderr", None)
    assert build_as_script(tmp_path / "out.txt", Build(tmp_path / "out.txt"),
                           overwrite=False) is None
    out = tmp_path / "out.h5"
    failing = Build(out, warn=("skipping bad.off",), error=ValueError("no shapes"))
    assert build_as_script(out, failing, overwrite=False) is None
    assert capsys.readouterr().out == ""

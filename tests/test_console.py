"""The progress bars' pace: tqdm's on a terminal, slower into a log."""

from __future__ import annotations

import io
import sys

import pytest
from tqdm import tqdm

from stgconv.console import LOG_MININTERVAL, progress_bar, tell


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Writer:
    """A program's own stand-in for stderr: ``write`` and ``flush``, nothing more."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


# What Jupyter gives a kernel for stderr: no terminal, and it draws a redraw over the last.
OutStream = type("OutStream", (io.StringIO,), {"__module__": "ipykernel.iostream"})


@pytest.mark.parametrize(("stderr", "environment", "log_pace"), [
    (io.StringIO(), None, True),  # a log file or a pipe
    (Terminal(), None, False),
    (OutStream(), None, False),  # a notebook's bar kept tqdm's pace
    (io.StringIO(), "0.5", False),  # TQDM_MININTERVAL, read by tqdm, wins
    (Writer(), None, True),  # no isatty to ask: an AttributeError as the bar began
])
def test_a_bar_redraws_at_tqdms_pace_unless_it_writes_into_a_log(
        monkeypatch, stderr: io.StringIO | Writer, environment: str | None, log_pace: bool) -> None:
    monkeypatch.setattr(sys, "stderr", stderr)
    if environment is None:
        monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    else:
        monkeypatch.setenv("TQDM_MININTERVAL", environment)
    with progress_bar(range(1)) as bar, tqdm(range(1)) as plain:
        assert bar.mininterval == (LOG_MININTERVAL if log_pace else plain.mininterval)
        assert LOG_MININTERVAL > plain.mininterval  # a log's pace is the slower
    with progress_bar(range(1), mininterval=2.0) as bar:  # the caller's wins
        assert bar.mininterval == 2.0


def test_a_bar_asked_for_where_stderr_is_closed_is_off(monkeypatch) -> None:
    """Under `2>&-` sys.stderr is None: a bar a library caller asked for (tasks.train's
    progress=True) failed its first draw there with an AttributeError; the command line's
    bars are turned off here too."""
    monkeypatch.setattr(sys, "stderr", None)
    with progress_bar(range(2), disable=False) as bar:
        assert list(bar) == [0, 1] and bar.disable


def test_a_line_told_is_one_line_on_stderr(capsys) -> None:
    tell("a line")
    assert capsys.readouterr() == ("", "a line\n")

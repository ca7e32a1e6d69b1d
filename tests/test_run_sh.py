"""run.sh, the README's entry point, against an environment stand-in: a folder with the
installed marker and a ``bin/python`` script that records what run.sh asks of it."""

from __future__ import annotations

import fcntl
import hashlib
import os
import select
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATH = "/usr/bin:/bin:/usr/sbin:/sbin"

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("flock") is None,
    reason="run.sh serialises installs with flock(1), which only Linux has here")

# The stand-in's python: the fast path's check says the install points at another clone, so
# every run.sh reinstalls; a reinstall that finds another one going records an overlap; the
# command says it ran, and records whether run.sh's install lock is still open in it (file
# descriptor 9).
FAKE_PYTHON = """#!/bin/sh
case "$1" in
-I) exit 1 ;;
-m)
    [ -e "{venv}/installing" ] && echo overlap >>"{venv}/overlaps"
    touch "{venv}/installing"
    sleep {pause}
    rm -f "{venv}/installing"
    ;;
*)
    echo "ran $*"
    [ -e /proc/$$/fd/9 ] && echo held >>"{venv}/held"
    ;;
esac
exit 0
"""


def stand_in(venv: Path, *, pause: float = 0.0, installed: bool = True) -> Path:
    """The stand-in's ``bin/python`` for an environment at ``venv`` (written there, with the
    installed marker, where ``installed``), its pip ``pause`` seconds long."""
    python = (venv / "bin" / "python") if installed else venv.parent / "stand-in-python"
    python.parent.mkdir(parents=True, exist_ok=True)
    python.write_text(FAKE_PYTHON.format(venv=venv, pause=pause))
    python.chmod(0o755)
    if installed:
        key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:12]
        (venv / ".stgconv-installed").write_text(key + "\n")
    return python


def start_run_sh(env: dict[str, str]) -> subprocess.Popen:
    """``run.sh python -c pass`` started with only ``env`` (and a plain PATH unless it has one)."""
    return subprocess.Popen([str(ROOT / "run.sh"), "python", "-c", "pass"],
                            env={"PATH": PATH, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_two_run_sh_started_together_install_one_at_a_time_and_free_the_lock(tmp_path: Path
                                                                            ) -> None:
    venv = tmp_path / "venv"
    stand_in(venv, pause=0.5)
    runs = [start_run_sh({"HOME": str(tmp_path), "STGCONV_VENV": str(venv)}) for _ in range(2)]
    outputs = [run.communicate(timeout=60)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert not (venv / "overlaps").exists(), "two reinstalls ran at once"
    assert not (venv / "held").exists(), "the command ran holding the install lock"


def test_a_venv_path_ending_in_a_slash_is_made_and_locked_beside_it(tmp_path: Path) -> None:
    """STGCONV_VENV=.../venv/ for an environment not made yet: its lock is venv.lock beside it
    (inside, the folder to open it in did not exist yet and run.sh died)."""
    venv = tmp_path / "venv"
    maker = tmp_path / "python3"  # makes the environment as `python -m venv DIR` would
    maker.write_text(f'#!/bin/sh\n[ "$1" = -m ] && mkdir -p "$3/bin" && '
                     f'cp "{stand_in(venv, installed=False)}" "$3/bin/python"\nexit 0\n')
    maker.chmod(0o755)
    run = start_run_sh({"HOME": str(tmp_path), "STGCONV_VENV": f"{venv}/", "PYTHON": str(maker)})
    output = run.communicate(timeout=60)[0]
    assert run.returncode == 0 and "ran -c pass" in output, output
    assert (venv / ".stgconv-installed").exists() and (tmp_path / "venv.lock").exists()


@pytest.mark.parametrize("obstacle", ["no locks", "lock not writable"])
def test_the_command_runs_unlocked_where_the_install_cannot_lock(tmp_path: Path,
                                                                 obstacle: str) -> None:
    """flock(1) refused (NFS without its lock manager), or a lock file run.sh cannot open
    (another user's; here a folder in its place): the install goes on unlocked, as it did
    before the lock, instead of run.sh dying, and says nothing of waiting for another."""
    venv = tmp_path / "venv"
    stand_in(venv)
    tools = tmp_path / "tools"
    tools.mkdir()
    if obstacle == "no locks":
        flock = tools / "flock"
        flock.write_text('#!/bin/sh\necho "flock: $1: No locks available" >&2\nexit 1\n')
        flock.chmod(0o755)
    else:
        (tmp_path / "venv.lock").mkdir()
    run = start_run_sh({"HOME": str(tmp_path), "STGCONV_VENV": str(venv),
                        "PATH": f"{tools}:{PATH}"})
    output = run.communicate(timeout=60)[0]
    assert run.returncode == 0 and "ran -c pass" in output, output
    assert "waiting" not in output, output


def test_a_wait_for_the_lock_that_fails_goes_on_unlocked(tmp_path: Path) -> None:
    """flock(1) says another run.sh holds the lock, then fails to wait for it (interrupted, or
    locks gone): the install goes on unlocked, as where it cannot lock at all, instead of
    `set -e` ending run.sh without a word after its "waiting" line."""
    venv = tmp_path / "venv"
    stand_in(venv)
    tools = tmp_path / "tools"
    tools.mkdir()
    flock = tools / "flock"
    flock.write_text('#!/bin/sh\n[ "$1" = -n ] && exit 75\nexit 1\n')
    flock.chmod(0o755)
    run = start_run_sh({"HOME": str(tmp_path), "STGCONV_VENV": str(venv),
                        "PATH": f"{tools}:{PATH}"})
    output = run.communicate(timeout=60)[0]
    assert "run.sh: waiting for another run.sh" in output, output
    assert run.returncode == 0 and "ran -c pass" in output, output


def test_a_closed_stderr_does_not_stop_run_sh_at_its_waiting_line(tmp_path: Path) -> None:
    """Under `2>&-` the "waiting" line's write failed, and `set -e` ended run.sh (exit 1)
    without running the command."""
    venv = tmp_path / "venv"
    stand_in(venv)
    tools = tmp_path / "tools"
    tools.mkdir()
    flock = tools / "flock"  # another run.sh holds the lock, then frees it
    flock.write_text('#!/bin/sh\n[ "$1" = -n ] && exit 75\nexit 0\n')
    flock.chmod(0o755)
    run = subprocess.run(["bash", "-c", 'exec "$@" 2>&-', "bash", str(ROOT / "run.sh"),
                          "python", "-c", "pass"],
                         env={"PATH": f"{tools}:{PATH}", "HOME": str(tmp_path),
                              "STGCONV_VENV": str(venv)},
                         stdout=subprocess.PIPE, text=True, timeout=60)
    assert (run.returncode, run.stdout) == (0, "ran -c pass\n")  # the note on stderr only


def test_a_closed_stderr_stops_run_sh_at_none_of_its_notes(tmp_path: Path) -> None:
    """The same for its other notes, here the environment's creation and `shell`'s; where
    run.sh may install libusb (as root), that one's too. Each goes to stderr: stdout holds the
    command's output alone."""
    venv = tmp_path / "venv"
    maker = tmp_path / "python3"  # makes the environment as `python -m venv DIR` would
    maker.write_text(f'#!/bin/sh\n[ "$1" = -m ] && mkdir -p "$3/bin" && '
                     f'cp "{stand_in(venv, installed=False)}" "$3/bin/python"\nexit 0\n')
    tools = tmp_path / "tools"
    tools.mkdir()
    shell = tools / "shell"
    shell.write_text('#!/bin/sh\necho "shell ran"\n')
    for tool in (maker, shell):
        tool.chmod(0o755)
    if os.geteuid() == 0:  # no libusb found, and an apt-get that installs it
        for name in ("ldconfig", "apt-get"):
            (tools / name).write_text("#!/bin/sh\nexit 0\n")
            (tools / name).chmod(0o755)
    run = subprocess.run(["bash", "-c", 'exec "$@" 2>&-', "bash", str(ROOT / "run.sh"), "shell"],
                         env={"PATH": f"{tools}:{PATH}", "HOME": str(tmp_path),
                              "STGCONV_VENV": str(venv), "PYTHON": str(maker),
                              "SHELL": str(shell)},
                         stdout=subprocess.PIPE, text=True, timeout=60)
    assert (run.returncode, run.stdout) == (0, "shell ran\n")


def test_a_run_sh_that_waits_for_another_install_says_so(tmp_path: Path) -> None:
    """Another install holds the lock (a first one takes minutes): run.sh says why it waits,
    and goes on when the lock is freed."""
    venv = tmp_path / "venv"
    stand_in(venv)
    with open(tmp_path / "venv.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        run = start_run_sh({"HOME": str(tmp_path), "STGCONV_VENV": str(venv)})
        ready, _, _ = select.select([run.stdout], [], [], 30)
        said = run.stdout.readline() if ready else ""
        fcntl.flock(lock, fcntl.LOCK_UN)
    output = run.communicate(timeout=60)[0]
    assert said.startswith("run.sh: waiting for another run.sh installing into"), said
    assert run.returncode == 0 and "ran -c pass" in output, output


def test_a_relative_venv_path_is_the_callers_even_where_run_sh_moves(tmp_path: Path) -> None:
    """STGCONV_VENV=venv from the caller's folder: `test` runs pytest from the repository root,
    where the relative path named another folder."""
    stand_in(tmp_path / "venv")
    run = subprocess.run([str(ROOT / "run.sh"), "test", "--co"], cwd=tmp_path,
                         env={"PATH": PATH, "HOME": str(tmp_path), "STGCONV_VENV": "venv"},
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


def test_without_home_run_sh_says_what_to_set(tmp_path: Path) -> None:
    run = subprocess.run([str(ROOT / "run.sh"), "python", "-c", "pass"], cwd=tmp_path,
                         env={"PATH": PATH}, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "HOME is not set: set it, or STGCONV_VENV" in run.stderr, run.stderr

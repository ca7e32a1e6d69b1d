"""run.sh, the README's entry point, against an environment stand-in: a folder with the
installed marker and a ``bin/python`` script that records what run.sh asks of it."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("flock") is None,
    reason="run.sh serialises installs with flock(1), which only Linux has here")

# The stand-in's python: the fast path's check says the install points at another clone, so
# every run.sh reinstalls; a reinstall that finds another one going records an overlap; the
# command records whether run.sh's install lock is still open in it (file descriptor 9).
FAKE_PYTHON = """#!/bin/sh
case "$1" in
-I) exit 1 ;;
-m)
    [ -e "{venv}/installing" ] && echo overlap >>"{venv}/overlaps"
    touch "{venv}/installing"
    sleep 0.5
    rm -f "{venv}/installing"
    ;;
*) [ -e /proc/$$/fd/9 ] && echo held >>"{venv}/held" ;;
esac
exit 0
"""


def test_two_run_sh_started_together_install_one_at_a_time_and_free_the_lock(tmp_path: Path
                                                                            ) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:12]
    (venv / ".stgconv-installed").write_text(key + "\n")
    python = venv / "bin" / "python"
    python.write_text(FAKE_PYTHON.format(venv=venv))
    python.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(tmp_path),
           "STGCONV_VENV": str(venv)}
    runs = [subprocess.Popen([str(ROOT / "run.sh"), "python", "-c", "pass"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(2)]
    outputs = [run.communicate(timeout=60)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert not (venv / "overlaps").exists(), "two reinstalls ran at once"
    assert not (venv / "held").exists(), "the command ran holding the install lock"

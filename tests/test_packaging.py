"""The sdist and the wheel as a user gets them: the sdist built from the source tree, the wheel
built from the unpacked sdist (as pip builds one), each file list checked."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Iterator

import pytest

from stgconv.config import QUICK_RECOVERY_CONFIG
from stgconv.io.mesh import OPEN3D_SYSTEM_LIBRARIES
from stgconv.version import __version__

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("setuptools", minversion="77", reason="builds with setuptools>=77 (pyproject)")

BUILD = """import sys
from setuptools import build_meta
print(getattr(build_meta, sys.argv[1])(sys.argv[2]))
"""


def build(kind: str, source: Path, out: Path) -> Path:
    """``build_sdist`` or ``build_wheel`` of the project in ``source``; the file written."""
    result = subprocess.run([sys.executable, "-c", BUILD, kind, str(out)], cwd=source,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list[str]]:
    """(the sdist's paths under its top folder, the wheel's paths)."""
    tmp = tmp_path_factory.mktemp("packaging")
    # A copy, so the build's egg-info and build/ folders stay out of the checkout; without what
    # .gitignore keeps out of it (an environment inside the clone would be gigabytes).
    shutil.copytree(ROOT, tmp / "source", ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.egg-info", ".venv", "outputs", "runs", "build", ".pytest_cache"))
    sdist = build("build_sdist", tmp / "source", tmp)
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp / "unpacked", filter="data")
        top = sdist.name.removesuffix(".tar.gz")
        sdist_files = [name.removeprefix(f"{top}/") for name in archive.getnames()]
    wheel = build("build_wheel", tmp / "unpacked" / top, tmp)
    with zipfile.ZipFile(wheel) as archive:
        return sdist_files, archive.namelist()


def test_the_wheel_holds_the_package_and_the_config_its_commands_default_to(built) -> None:
    """`recover`, `fill-prior` and `eval recovery` read QUICK_RECOVERY_CONFIG without --config:
    an installed copy lacked it (it lived in the checkout's configs/)."""
    _, wheel = built
    assert QUICK_RECOVERY_CONFIG.relative_to(ROOT).as_posix() in wheel
    assert {name.split("/")[0] for name in wheel} == {"stgconv", f"stgconv-{__version__}.dist-info"}
    # Without the marker, type checkers of a user's code skip the package's annotations.
    assert "stgconv/py.typed" in wheel
    # The MIT licence asks for its text to travel with every copy (pyproject names it only).
    assert f"stgconv-{__version__}.dist-info/licenses/LICENSE" in wheel


def test_the_sdist_holds_a_test_suite_that_runs(built) -> None:
    """setuptools alone took tests/test_*.py without the helpers every test file imports."""
    sdist, _ = built
    for name in ("README.md", "LICENSE", "pyproject.toml", "run.sh", "tests/conftest.py",
                 "tests/_tiny.py",
                 "configs/image/texture_brick.yaml", "tools/train.py", "bench/common.py",
                 "examples/jem_ood.py",
                 "datasets/video/prepare.py", QUICK_RECOVERY_CONFIG.relative_to(ROOT).as_posix()):
        assert name in sdist, name
    assert not [name for name in sdist if "__pycache__" in name or name.endswith(".pyc")]


# A path under the checkout's own folders (not the package's stgconv/configs/) or in the shared
# data beside it: none of them is in an installed copy.
SOURCE_TREE_PATH = re.compile(
    r"(?<![\w/.])((?:datasets|configs|bench|tools|examples|tests)/[\w/.-]*\w|\.\./shared\b)")


def runtime_strings(module: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of every string literal the module's code uses (messages, help texts,
    defaults), an f-string whole with ``{}`` for its fields; not its docstrings."""
    tree = ast.parse(module.read_text())
    docstrings = {id(node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    parts = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts.update(id(value) for value in node.values)
            yield node.lineno, "".join(value.value if isinstance(value, ast.Constant) else "{}"
                                       for value in node.values)
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docstrings | parts):
            yield node.lineno, node.value


def test_no_message_or_help_sends_an_installed_copy_to_a_file_it_lacks() -> None:
    """An installed user was told to "build one with datasets/voxel/prepare.py" (or a clip
    cache's script, or configs/video/), which no wheel holds, and not of the function that
    does it in the package. A checkout's file may be named where the text says it is the
    source tree's (and it must still be there)."""
    unsaid = []
    for module in sorted((ROOT / "stgconv").rglob("*.py")):
        for line, text in runtime_strings(module):
            for path in SOURCE_TREE_PATH.findall(text):
                if "of the source tree" not in text:
                    unsaid.append(f"{module.relative_to(ROOT)}:{line}: {path}")
                else:
                    assert (ROOT / path).exists(), f"{module.relative_to(ROOT)}:{line}: {path}"
    assert not unsaid, "\n".join(unsaid)


def test_the_readme_installs_the_system_libraries_the_error_names() -> None:
    """A pip user reads the README's apt-get line before any error: the same packages."""
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert f"apt-get install {' '.join(OPEN3D_SYSTEM_LIBRARIES.values())}`" in readme

"""What stgconv's messages tell a user to change must exist: every config key that a string of
the library, the tools, the bench scripts or the examples names (``set train.energy_l2``,
``multigrid.grids[i].sampler.precision``) is a key of today's config, and every option that a
string of the library names (``--resume``) is an option of a ``stgconv`` command, so that
renaming a setting or an option fails here until the advice naming it follows. README.md's own
keys and commands are test_readme.py's."""

from __future__ import annotations

import argparse
import ast
import re

import pytest
from _tiny import ROOT
from test_readme import config_key_problem

from stgconv.cli import _parser
from stgconv.config import WITHDRAWN_SETTINGS, ExperimentConfig

SECTIONS = sorted(ExperimentConfig.__dataclass_fields__, key=len, reverse=True)
# A section's name, then fields and indices (``[i]``, ``[{}]`` where an f-string fills it in,
# ``.0``); not inside a longer word or path, and not a method call (``data.float()``).
KEY = re.compile(rf"(?<![\w./-])((?:{'|'.join(SECTIONS)})(?:\.\w+|\[[^\]\s]*\])+)(?![\w(])")
# Dotted names that are no keys: files (``recovery.py``, ``jem.json``), what an f-string ends
# with a field's name (``cooperative.inference_`` + ``step_size``), the function a message is
# about (``cooperative.interpolate``, the module's) and a sampler object's method.
FILE_SUFFIX = re.compile(r"\.(py|json|pkl|yaml|npz|npy|png|h5)$")
NOT_KEYS = {"cooperative.interpolate", "sampler.run"}


def named_keys(source: str) -> list[tuple[int, str]]:
    """``(line, key)`` for each config key a string of ``source`` (Python) names, docstrings
    aside; an f-string's replaced fields read as ``{}``."""
    return [(line, key) for line, text in message_strings(source) for match in KEY.finditer(text)
            if not (FILE_SUFFIX.search(key := match[1]) or key.endswith("_")
                    or key in NOT_KEYS)]


def message_strings(source: str) -> list[tuple[int, str]]:
    """``(line, text)`` of each string of ``source`` (Python), docstrings aside; an f-string
    whole, its replaced fields read as ``{}``."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                       ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}
    # An f-string's pieces are read whole with it, not again one by one.
    pieces = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)
              for part in node.values}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            found.append((node.lineno, "".join(part.value if isinstance(part, ast.Constant)
                                               else "{}" for part in node.values)))
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docstrings | pieces):
            found.append((node.lineno, node.value))
    return found


def key_problem(key: str) -> str | None:
    """Why ``key`` names no config setting, or None; any index reads as the first entry."""
    if key in WITHDRAWN_SETTINGS:  # named on purpose, as withdrawn
        return None
    return config_key_problem(re.sub(r"\[[^\]]*\]|(?<=\.)\d+(?=\.|$)", "[0]", key))


SOURCES = sorted(path for folder in ("stgconv", "tools", "bench", "examples")
                 for path in (ROOT / folder).rglob("*.py"))


def test_every_config_key_a_message_names_exists() -> None:
    problems = [f"{path.relative_to(ROOT)}:{line}: {key}: {problem}"
                for path in SOURCES for line, key in named_keys(path.read_text(encoding="utf-8"))
                if (problem := key_problem(key)) is not None]
    assert not problems, "\n".join(problems)
    # The scan finds the keys it is for (else the check above could pass on nothing).
    named = {key for path in SOURCES for _, key in named_keys(path.read_text(encoding="utf-8"))}
    assert {"train.energy_l2", "chains.buffer_fresh", "jem.px_weight",
            "multigrid.grids[{}].sampler"} <= named
    # The bench scripts' too: recovery.learned.crop_size is named there alone.
    assert "recovery.learned.crop_size" in named


@pytest.mark.parametrize(("source", "key"), [
    ('raise ValueError("lower train.learning_rate")', "train.learning_rate"),
    ('raise ValueError(f"set multigrid.grids[{i}].sampler.steps={n}")',
     "multigrid.grids[{}].sampler.steps"),
    ('warnings.warn("chains.buffer.fresh is ignored")', "chains.buffer.fresh"),
    ('ADVICE = "set recovery.learned.step: 0"', "recovery.learned.step"),
])
def test_a_message_naming_no_key_is_found(source: str, key: str) -> None:
    assert [named for _, named in named_keys(source)] == [key]
    assert key_problem(key) is not None


@pytest.mark.parametrize("source", [
    '"""Trains with train.nope, a docstring."""',
    'raise ValueError("see recovery.py and jem.json")',
    'raise ValueError(f"{key}.clamp is set")',
    'raise ValueError("convert it first, e.g. data.float()")',
])
def test_what_names_no_key_is_passed_over(source: str) -> None:
    assert named_keys(source) == []


OPTION = re.compile(r"(?<![\w-])--[a-z][\w-]*")
# Options of the programs a message tells to run beside stgconv's own.
OTHER_PROGRAMS_OPTIONS = {"--nproc_per_node": "torchrun", "--logdir": "tensorboard"}


def stgconv_options() -> set[str]:
    """Every option of the ``stgconv`` command and its subcommands."""
    options: set[str] = set()
    parsers = [_parser()]
    while parsers:
        parser = parsers.pop()
        for action in parser._actions:
            options.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                parsers += action.choices.values()
    return options


def test_every_option_a_message_of_the_library_names_exists() -> None:
    known = stgconv_options() | set(OTHER_PROGRAMS_OPTIONS)
    named = [(path, line, option) for path in sorted((ROOT / "stgconv").rglob("*.py"))
             for line, text in message_strings(path.read_text(encoding="utf-8"))
             for option in OPTION.findall(text)]
    assert {"--resume", "--overwrite", "--set"} <= {option for *_, option in named}
    # Read in the subpackages too (stgconv/tasks/train.py names --set), not the top level alone.
    assert any(path.parent.name == "tasks" for path, *_ in named)
    unknown = [f"{path.relative_to(ROOT)}:{line}: {option}" for path, line, option in named
               if option not in known]
    assert not unknown, "\n".join(unknown)

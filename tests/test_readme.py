"""README.md as a reader uses it: its commands, its ``--set`` keys and its config files, and its
```python blocks.

The commands (``stgconv ...``, ``./run.sh ...``, ``torchrun ... -m stgconv``, the bench
scripts), in code blocks and inline, are checked without running any: each must parse with the
parser its program builds today, abbreviations refused, with real ``--set`` keys and config
files, so that renaming an option, a subcommand or a config key fails here until the README
follows.

The ```python blocks run, in order, in one namespace (later blocks use ``g``, ``sampler``,
``torch`` and ``stgconv`` from the first), as a reader would paste them.

One change keeps the suite fast: every ``.fit(N)`` runs one training iteration instead of N
(as written, the blocks take about 100 s on one CPU thread, 80 s of it the first block's 150
iterations); every other line runs as written. A ``.fit(...)`` whose argument is not a number
fails the test rather than running at full length. The blocks' own asserts run, and so does
one more per shape comment: ``name = ...  # (8, 1, 64, 64)`` checks ``name.shape`` after that
statement.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import re
import runpy
import shlex

import pytest
import torch
from _tiny import ROOT

from stgconv.cli import _parser
from stgconv.config import ExperimentConfig, UnknownKeys, config_from_dict

PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
TRAINING_LENGTH = re.compile(r"\.fit\(\d+\)")
SHAPE_COMMENT = re.compile(r"#\s*\((\d+(?:,\s*\d+)*)\)")


def shortened(block: str) -> str:
    """``block`` with every ``.fit(N)`` made ``.fit(1)``; refuses a ``.fit(...)`` it cannot
    shorten."""
    block, n_shortened = TRAINING_LENGTH.subn(".fit(1)", block)
    assert n_shortened == block.count(".fit("), f"a .fit(...) without a number:\n{block}"
    return block


def with_shape_checks(block: str) -> tuple[str, int]:
    """``block`` with an assert after each top-level ``name = ...  # (d0, d1, ...)`` statement
    (the comment on its first line) that ``name`` has that shape, and how many it added."""
    lines = block.splitlines()
    checks: dict[int, str] = {}
    for statement in ast.parse(block).body:
        if not (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)):
            continue
        comment = SHAPE_COMMENT.search(lines[statement.lineno - 1])
        if comment:
            name = statement.targets[0].id
            checks[statement.end_lineno] = (
                f"assert tuple({name}.shape) == ({comment[1]},), "
                f"f'{name}: shape {{tuple({name}.shape)}}, the comment says ({comment[1]})'")
    checked = []
    for number, line in enumerate(lines, 1):
        checked.append(line)
        if number in checks:
            checked.append(checks[number])
    return "\n".join(checked), len(checks)


def test_readme_python_blocks_run_in_order() -> None:
    blocks = PYTHON_BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    assert blocks, "README.md has no ```python block"
    namespace: dict[str, object] = {}
    n_shape_checks = 0
    # Block 1 seeds torch's global generator, as a reader's script would; other tests keep theirs.
    with torch.random.fork_rng(devices=[]):
        for number, block in enumerate(blocks, 1):
            source, n_checks = with_shape_checks(shortened(block))
            n_shape_checks += n_checks
            exec(compile(source, f"README.md python block {number}", "exec"), namespace)
    # Guards the shape checks themselves: the README states shapes in such comments.
    assert n_shape_checks > 0, "no `name = ...  # (shape)` comment found in README.md's blocks"


FENCED_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
CODE_SPAN = re.compile(r"`([^`]+)`")
COMMAND = re.compile(r"(?:stgconv|\./run\.sh|torchrun|python -m|bench/\w+\.(?:py|sh))(?:\s|$)")
SET_KEY = re.compile(r"--set\s+([\w.\[\]]+)=")
CONFIG_PATH = re.compile(r"(?<![\w/.])((?:stgconv/)?configs/[\w/.-]+\.yaml)")
SHELL_OPERATORS = {"|", "&&", ";", ">"}
PLACEHOLDER_KEYS = {"KEY", "key.sub"}  # the README's words for any config key


def readme_commands(text: str) -> list[str]:
    """Every command ``text`` (markdown) shows: each line of a code block other than Python's
    (a trailing backslash continues it) and each inline code span, its lines joined (a table
    cell's ``\\|`` read as ``|``), that starts with ``stgconv``, ``./run.sh``, ``torchrun``,
    ``python -m`` or a bench script."""
    candidates = []
    for language, block in FENCED_BLOCK.findall(text):
        if language != "python":
            candidates += block.replace("\\\n", " ").splitlines()
    spans = CODE_SPAN.findall(FENCED_BLOCK.sub("", text))
    candidates += [span.replace("\\|", "|") for span in spans]
    commands = [" ".join(line.split()) for line in candidates]
    return [command for command in commands if COMMAND.match(command)]


def config_key_problem(key: str) -> str | None:
    """Why ``key`` (``train.lr``, ``multigrid.grids.0.size``) names no config setting, or None.
    Only the key is judged: a config holding just it, valued null, is refused for its unknown
    key (UnknownKeys) or, when the key is real, for its value."""
    value = None
    for step in reversed(re.findall(r"[^.\[\]]+", key)):
        value = [value] if step.isdigit() else {step: value}
    try:
        config_from_dict(ExperimentConfig, value)
    except UnknownKeys as err:
        return " ".join(str(err).split())
    except (ValueError, TypeError):
        pass
    return None


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def bench_parser(script: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser ``bench/<script>.py``'s ``main`` builds, taken at its ``parse_args``."""
    def capture(parser, *_: object) -> None:
        raise _Captured(parser)

    with monkeypatch.context() as patch:
        patch.syspath_prepend(str(ROOT))  # the scripts import bench.common
        patch.setattr(argparse.ArgumentParser, "parse_args", capture)
        with pytest.raises(_Captured) as captured:
            runpy.run_path(str(ROOT / "bench" / f"{script}.py"))["main"]([])
    return captured.value.parser


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next((action.choices for action in parser._actions
                 if isinstance(action, argparse._SubParsersAction)), {})


def command_problems(command: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the program a README command runs would refuse in it: an unknown subcommand or
    option (abbreviations refused, so that a documented prefix of a renamed option fails), a
    value it does not take, an unknown ``--set`` key, a missing config file. A usage synopsis
    (``[--out DIR]``, ``VIDEO...``) has its option names checked; a command without options
    (``stgconv eval recovery``) names the subcommand only; ``...`` or ``<task>`` ends what is
    checked; ``./run.sh test`` and ``./run.sh shell`` run no parser of ours, and ``torchrun``
    or ``python`` without ``-m`` is the program named, not a command line."""
    words = shlex.split(command, comments=True)
    words = words[:next((i for i, word in enumerate(words)
                         if word in SHELL_OPERATORS or word == "..." or word.startswith("<")),
                        len(words))]
    if words[:2] == ["./run.sh", "demo"]:
        words = ["stgconv", *words[1:]]
    elif words[0] == "./run.sh":
        words = words[1:]
    if words[0] in ("torchrun", "python"):
        if "-m" not in words:  # the program named, not a command line
            return []
        words = words[words.index("-m") + 1:]
    if words[0] in ("test", "shell"):
        return []
    problems = [f"no file {word}" for word in words if CONFIG_PATH.fullmatch(word)
                and not (ROOT / word).exists()]
    problems += [f"--set {key}: {problem}" for key in SET_KEY.findall(" ".join(words))
                 if key not in PLACEHOLDER_KEYS and (problem := config_key_problem(key))]
    if words[0] == "stgconv":
        root = _parser()
    elif re.fullmatch(r"bench\.\w+|bench/\w+\.py", words[0]):
        script = re.split(r"[./]", words[0])[1]
        if not (ROOT / "bench" / f"{script}.py").exists():
            return [*problems, f"no bench script {script}"]
        root = bench_parser(script, monkeypatch)
    elif words[0].endswith(".sh"):
        return [*problems, *([] if (ROOT / words[0]).exists() else [f"no file {words[0]}"])]
    else:
        return [*problems, f"no program of ours: {words[0]}"]
    arguments = words[1:]
    parser, commands = root, []
    while arguments and arguments[0] in subcommands(parser):  # down the subcommands named
        commands.append(arguments.pop(0))
        parser = subcommands(parser)[commands[-1]]
    if arguments and subcommands(parser) and not arguments[0].startswith("-"):
        return [*problems, f"{parser.prog}: no command {arguments[0]}"]
    if any("[" in word or word.endswith("...") for word in arguments):
        options = {option for action in parser._actions for option in action.option_strings}
        named = {word.strip("[]|.") for word in arguments if word.lstrip("[").startswith("-")}
        return [*problems, *(f"{parser.prog}: no option {option}"
                             for option in sorted(named - options))]
    if not arguments:
        return problems
    refusal = io.StringIO()
    try:
        with contextlib.redirect_stderr(refusal), contextlib.redirect_stdout(io.StringIO()):
            _, unknown = root.parse_known_args([*commands, *arguments])
    except SystemExit as exit_:
        if exit_.code == 0:  # --version, --help
            return problems
        return [*problems, refusal.getvalue().strip().splitlines()[-1]]
    return [*problems, *([f"unrecognized arguments: {' '.join(unknown)}"] if unknown else [])]


def test_readme_commands_parse(monkeypatch) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = readme_commands(text)
    # Guards the extraction itself: the README shows about 80 commands and mentions of one.
    assert len(commands) >= 60, commands
    problems = {command: found for command in commands
                if (found := command_problems(command, monkeypatch))}
    assert not problems, "\n".join(f"{command}\n    {found}"
                                   for command, found in problems.items())


def test_the_command_tables_synopses_name_every_output_a_command_takes() -> None:
    """Each row of the README's command table names, in its synopsis, every option by which its
    command writes (--out, --json, --tensorboard): eval super-resolution offered --tensorboard
    and --out, and reconstruct and interpolate --out, where their rows never said so."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    synopses = re.findall(r"^\| `(stgconv [^`]*)` \|", text, re.MULTILINE)
    assert len(synopses) >= 14, synopses  # guards the pattern
    outputs = {"--out", "--json", "--tensorboard"}
    missing = {}
    for synopsis in synopses:
        words = synopsis.replace("\\|", " ").split()[1:]
        parser = _parser()
        while words and words[0] in subcommands(parser):
            parser = subcommands(parser)[words.pop(0)]
        offered = {option for action in parser._actions for option in action.option_strings}
        named = {word.strip("[]") for word in words}
        if lacking := sorted((offered & outputs) - named):
            missing[synopsis.split(" [")[0].split(" --")[0]] = lacking
    assert missing == {}


def test_readme_settings_and_config_files_exist() -> None:
    """Every ``--set KEY=...`` the README names, inside a command or not, is a config key, and
    every config file it names is there."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    keys = [key for key in SET_KEY.findall(text) if key not in PLACEHOLDER_KEYS]
    paths = CONFIG_PATH.findall(text)
    assert len(keys) >= 5 and len(paths) >= 10, (keys, paths)  # guards the patterns
    assert {key: problem for key in keys if (problem := config_key_problem(key))} == {}
    assert [path for path in paths if not (ROOT / path).exists()] == []


@pytest.mark.parametrize("command", [
    "stgconv train --bogus",
    "stgconv train [--bogus DIR]",
    "stgconv train --set train.bogus=1",
    "stgconv train configs/image/bogus.yaml",
    "stgconv synthesize RUN --start bogus",
    "stgconv bogus",
    "stgconv synthesize RUN --step 3",  # an abbreviation of --steps
    "python -m bench.langevin --bogus",
    "python -m bench.langevin --quic",  # an abbreviation of --quick
    "./run.sh python -m bench.bogus --quick",
])
def test_a_command_the_cli_would_refuse_is_found(command, monkeypatch) -> None:
    """``readme_commands`` finds each of these commands, and ``command_problems`` the reason
    the CLI or a bench script would refuse it."""
    text = f"Run `{command}` to see."
    assert readme_commands(text) == [command]
    assert command_problems(command, monkeypatch) != []

"""The README's ```python blocks run, in order, in one namespace (later blocks use ``g``,
``sampler``, ``torch`` and ``stgconv`` from the first), as a reader would paste them.

One change keeps the suite fast: every ``.fit(N)`` runs one training iteration instead of N
(as written, the blocks take about 100 s on one CPU thread, 80 s of it the first block's 150
iterations); every other line runs as written. A ``.fit(...)`` whose argument is not a number
fails the test rather than running at full length. The blocks' own asserts run, and so does
one more per shape comment: ``name = ...  # (8, 1, 64, 64)`` checks ``name.shape`` after that
statement.
"""

from __future__ import annotations

import ast
import re

import torch
from _tiny import ROOT

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

"""TensorBoard event files (``stgconv.io.tensorboard``): a write that fails in tensorboard's own
thread is raised once in the caller, naming the folder; other errors in the block are not
taken for it."""

from __future__ import annotations

import errno
import shutil
import threading
from pathlib import Path

import pytest

from stgconv.io.tensorboard import summary_writer


def test_an_error_of_other_code_in_the_block_keeps_its_own_message(tmp_path: Path) -> None:
    """Only the writer's failures are renamed after the TensorBoard folder: a full disk met by
    other code in the block (a file object's write, which names no file) stays as it was."""
    with pytest.raises(OSError) as failure:
        with summary_writer(tmp_path / "tb") as writer:
            writer.add_scalar("loss", 1.0, 1)
            raise OSError(errno.ENOSPC, "No space left on device")
    assert str(failure.value) == f"[Errno {errno.ENOSPC}] No space left on device"


def test_an_error_in_the_block_is_not_hidden_by_the_writers(tmp_path: Path) -> None:
    """A divergence raised in the block while the folder is gone stays the error raised: the
    writer's failure on closing (its events unwritten) came in its place."""
    log_dir = tmp_path / "tb"
    with pytest.raises(FloatingPointError, match="diverged"):
        with summary_writer(log_dir) as writer:
            shutil.rmtree(log_dir)
            writer.add_scalar("loss", 1.0, 1)
            raise FloatingPointError("diverged")


def test_writers_open_together_leave_the_thread_hook_as_it_was(tmp_path: Path) -> None:
    """Two blocks that overlap without nesting (the first closed first) restore the hook they
    found: the first restored it while the second's was installed, which the second then
    replaced by the first's, left installed for good (catching later writers' failures)."""
    hook = threading.excepthook
    first, second = summary_writer(tmp_path / "a"), summary_writer(tmp_path / "b")
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    second.__exit__(None, None, None)
    assert threading.excepthook is hook

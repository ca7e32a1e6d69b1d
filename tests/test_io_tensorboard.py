"""TensorBoard event files (``stgconv.io.tensorboard``): a write that fails in tensorboard's own
thread is raised once in the caller, naming the folder; other errors in the block are not
taken for it."""

from __future__ import annotations

import errno
import os
import queue
import re
import shutil
import threading
import time
import traceback
from pathlib import Path

import pytest

from _tiny import read_events

from stgconv.io.atomic import WriteError
from stgconv.io.tensorboard import _WRITER_THREAD_MODULE, summary_writer


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


def test_writers_open_together_leave_the_thread_hook_as_it_was(tmp_path: Path,
                                                               monkeypatch) -> None:
    """Two blocks that overlap without nesting (the first closed first) restore the hook they
    found: the first restored it while the second's was installed, which the second then
    replaced by the first's, left installed for good (catching later writers' failures)."""
    def hook(_: threading.ExceptHookArgs) -> None:  # not one that earlier tests may have left
        pass

    monkeypatch.setattr(threading, "excepthook", hook)
    first, second = summary_writer(tmp_path / "a"), summary_writer(tmp_path / "b")
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    second.__exit__(None, None, None)
    assert threading.excepthook is hook


def test_another_threads_failure_in_the_block_reaches_the_hook_it_found(tmp_path: Path,
                                                                        monkeypatch) -> None:
    """While a block is open, a failure of a thread that is not its writer's goes to the hook
    the block found (a program's own, pytest's), not swallowed nor printed past it."""
    seen: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    with summary_writer(tmp_path / "tb"):
        thread = threading.Thread(target=lambda: 1 / 0)
        thread.start()
        thread.join()
    assert [type(error) for error in seen] == [ZeroDivisionError]


def test_a_hook_set_between_two_open_blocks_gets_other_threads_failures(tmp_path: Path,
                                                                         monkeypatch) -> None:
    """The inner block found the hook set after the outer one opened: a failure of a thread
    that is no writer's goes to it, the latest, not to the hook the outer block found."""
    outer_seen: list[BaseException] = []
    between_seen: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: outer_seen.append(args.exc_value))
    with summary_writer(tmp_path / "outer"):
        monkeypatch.setattr(threading, "excepthook",
                            lambda args: between_seen.append(args.exc_value))
        with summary_writer(tmp_path / "inner"):
            thread = threading.Thread(target=lambda: 1 / 0)
            thread.start()
            thread.join()
    assert ([type(error) for error in between_seen], outer_seen) == ([ZeroDivisionError], [])


def test_a_thread_started_beside_the_writer_is_not_taken_for_it(tmp_path: Path,
                                                                 monkeypatch) -> None:
    """The writer's thread is told from others started while the writer was made (a progress
    bar's monitor, a loader's) by its module: such a thread's failure is its own, for the hook
    the block found, not the block's WriteError or error."""
    import torch.utils.tensorboard

    seen: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    go = threading.Event()  # keeps the other thread alive until the writer is made
    other = threading.Thread(target=lambda: go.wait() and 1 / 0)
    made = torch.utils.tensorboard.SummaryWriter

    def writer_and_another_thread(*args, **kwargs):
        other.start()
        return made(*args, **kwargs)

    monkeypatch.setattr(torch.utils.tensorboard, "SummaryWriter", writer_and_another_thread)
    with summary_writer(tmp_path / "tb") as writer:
        writer.add_scalar("loss", 1.0, 1)
        go.set()
        other.join()
    assert [type(error) for error in seen] == [ZeroDivisionError]


@pytest.mark.parametrize("error", [FloatingPointError, KeyboardInterrupt])
def test_the_events_before_an_error_in_the_block_are_on_disk(tmp_path: Path,
                                                             error: type[BaseException]) -> None:
    """A block that fails (a divergence, Ctrl-C) still closes its writer: the curve up to the
    failure is on disk, and the writer's thread and file are not left open for the process's
    life."""
    log_dir = tmp_path / "tb"
    with pytest.raises(error):
        with summary_writer(log_dir) as writer:
            for step in range(3):
                writer.add_scalar("loss", float(step), step)
            raise error("stopped")
    assert [event.step for event in read_events(log_dir).Scalars("loss")] == [0, 1, 2]
    assert not [thread for thread in threading.enumerate()  # nor its thread left waiting
                if type(thread).__module__ == _WRITER_THREAD_MODULE]


@pytest.mark.parametrize("after_another_block", [False, True])
def test_a_failure_the_writers_close_misses_is_raised(tmp_path: Path, monkeypatch,
                                                      after_another_block: bool) -> None:
    """The writer's thread marks its event done before it records the event's failure: a
    caller whose flush wakes in between sees no failure, and close checks none. Only the
    thread hook keeps it; it is raised when the block ends, naming the folder, also where
    another block, opened before, ended first (the hook stays for this one's writer)."""
    from tensorboard.summary.writer.record_writer import RecordWriter

    write, task_done = RecordWriter.write, queue.Queue.task_done
    caller = threading.current_thread()

    def full_for_the_scalar(self, data: bytes) -> None:
        if b"loss" in data:
            raise OSError(errno.ENOSPC, "No space left on device")
        write(self, data)

    def done_then_slow(self) -> None:
        task_done(self)
        if threading.current_thread() is not caller:
            time.sleep(0.1)  # the caller's flush has looked and found nothing

    monkeypatch.setattr(RecordWriter, "write", full_for_the_scalar)
    monkeypatch.setattr(queue.Queue, "task_done", done_then_slow)
    log_dir = tmp_path / "tb"
    with pytest.raises(WriteError, match=re.escape(
            f"No space left on device (TensorBoard events): '{log_dir}'")) as failure:
        other = summary_writer(tmp_path / "other")
        if after_another_block:
            other.__enter__()
        with summary_writer(log_dir) as writer:
            if after_another_block:
                other.__exit__(None, None, None)
            writer.add_scalar("loss", 1.0, 1)
    # The system's number, and the writer thread's own error (its traceback) as the cause.
    assert failure.value.errno == errno.ENOSPC
    assert isinstance(failure.value.__cause__, OSError)


def test_a_hook_installed_in_the_block_stays(tmp_path: Path, monkeypatch) -> None:
    """A program that installs its own thread hook while a block is open keeps it: the block
    restores the one it replaced only where its own is still installed."""
    def programs_hook(_: threading.ExceptHookArgs) -> None:
        pass

    with summary_writer(tmp_path / "tb"):
        monkeypatch.setattr(threading, "excepthook", programs_hook)
    assert threading.excepthook is programs_hook


def test_a_hook_installed_in_a_block_that_calls_the_one_it_found_reaches_the_hook_before(
        tmp_path: Path, monkeypatch) -> None:
    """A program's hook installed in a block that hands on to the hook it found (the block's):
    after another block has come and gone, a thread's failure still ends at the hook found
    before the first block, not going round the program's hook until the recursion limit."""
    seen: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    with summary_writer(tmp_path / "a"):
        found = threading.excepthook

        def programs_hook(args: threading.ExceptHookArgs) -> None:
            found(args)

        monkeypatch.setattr(threading, "excepthook", programs_hook)
    with summary_writer(tmp_path / "b"):
        pass
    assert threading.excepthook is programs_hook
    thread = threading.Thread(target=lambda: 1 / 0)
    thread.start()
    thread.join()
    assert [type(error) for error in seen] == [ZeroDivisionError]


def test_a_writers_error_without_a_number_keeps_its_message(tmp_path: Path) -> None:
    """tensorboard's own refusals carry no errno (an event file closed by other code): no
    system failure to name the folder for, so its message stays as it was."""
    with pytest.raises(OSError, match="^Writer is closed$") as failure:
        with summary_writer(tmp_path / "tb") as writer:
            writer.file_writer.event_writer.close()
            writer.add_scalar("loss", 1.0, 1)
            writer.flush()
    assert not isinstance(failure.value, WriteError)


def test_a_folder_named_not_in_utf8_is_refused_naming_it(tmp_path: Path) -> None:
    """The writer takes its folder as UTF-8: a Latin-1 name (a run folder of a zip made on
    Windows) was "'utf-8' codec can't encode character", naming no folder."""
    log_dir = tmp_path / os.fsdecode(b"caf\xe9") / "tb"
    with pytest.raises(ValueError,
                       match="TensorBoard folder .*caf.*tb cannot be written") as failure:
        with summary_writer(log_dir):
            pass
    # Its traceback shows the folder refused, not the codec's error that found it out.
    assert "codec" not in "".join(traceback.format_exception(failure.value))


@pytest.mark.parametrize("where", ["tb", "file/tb"])
def test_a_folder_that_is_or_lies_under_a_file_is_refused_before_a_writer_is_made(
        tmp_path: Path, where: str) -> None:
    """The writer itself said only "File exists (TensorBoard events)" (a library caller of
    Trainer.fit with such a log_dir); now the folder is named and what is in its way."""
    (tmp_path / where.split("/")[0]).write_text("a file")
    log_dir = tmp_path / where
    threads = set(threading.enumerate())
    with pytest.raises(ValueError, match=re.escape(f"the TensorBoard folder {log_dir} ")
                       + ("is a file, not a folder" if where == "tb" else
                          f"lies under {tmp_path / 'file'}, which is a file")):
        with summary_writer(log_dir):
            pass
    assert set(threading.enumerate()) == threads  # no writer thread was started
    assert (tmp_path / where.split("/")[0]).read_text() == "a file"


def test_a_folder_named_in_utf8_beyond_latin1_is_written(tmp_path: Path) -> None:
    log_dir = tmp_path / "\u65e5\u8a8c" / "tb"  # Japanese, which Latin-1 cannot encode
    with summary_writer(log_dir) as writer:
        writer.add_scalar("loss", 1.0, 1)
    assert [event.step for event in read_events(log_dir).Scalars("loss")] == [1]


def test_blocks_opened_in_two_threads_at_once_each_take_their_own_writer(tmp_path: Path,
                                                                         monkeypatch) -> None:
    """Two runs of a thread pool open their blocks together: the first to make its writer,
    slowed until the second had made its own, took the second's thread for its own too, and
    the second block to end failed with a KeyError after its work."""
    import torch.utils.tensorboard

    made = torch.utils.tensorboard.SummaryWriter
    second_made, first_made = threading.Event(), threading.Event()

    def writer_made_late(*args, **kwargs):
        if threading.current_thread().name == "first":
            second_made.wait(timeout=0.3)  # the second block cannot make its writer meanwhile
            writer = made(*args, **kwargs)
            first_made.set()
            return writer
        writer = made(*args, **kwargs)
        second_made.set()
        return writer

    monkeypatch.setattr(torch.utils.tensorboard, "SummaryWriter", writer_made_late)
    errors: list[BaseException] = []

    def log(name: str) -> None:
        try:
            with summary_writer(tmp_path / name) as writer:
                first_made.wait(timeout=1)  # both writers' threads running together
                writer.add_scalar("loss", 1.0, 1)
        except BaseException as error:
            errors.append(error)

    first = threading.Thread(target=log, args=("first",), name="first")
    first.start()
    time.sleep(0.05)  # the first block is making its writer
    second = threading.Thread(target=log, args=("second",), name="second")
    second.start()
    first.join()
    second.join()
    assert errors == []
    assert [event.step for event in read_events(tmp_path / "second").Scalars("loss")] == [1]

"""TensorBoard event files, whose failure to write is reported once, naming the folder.

tensorboard's ``SummaryWriter`` writes from a thread of its own. A write that fails there (a
full disk, the folder removed or made read-only) is printed as that thread's traceback and
raised again by the writer's next call in the caller's thread, without a usable file name (none,
or a ``bytes`` path); the check in ``close`` can miss it, as the thread marks its last event
done before it records the failure.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Callable, Iterator

from stgconv.checks import check_output
from stgconv.io.atomic import write_error
from stgconv.io.h5 import to_text

# The module of tensorboard's writer thread, whose failure summary_writer raises itself.
_WRITER_THREAD_MODULE = "tensorboard.summary.writer.event_file_writer"

# The writer threads of the open summary_writer blocks, each with its block's failures; while
# any is open, threading.excepthook is _keep_writer_failure, over the hook it replaced.
_failures_of: dict[threading.Thread, list[BaseException]] = {}
_replaced_hook: list[Callable[[threading.ExceptHookArgs], Any]] = []
# Held while a block installs or restores the hook and while it makes its writer and tells its
# thread from the others: of two blocks opened in two threads at once (two runs of a program's
# thread pool), one took the other's writer thread for its own too, and the second to end
# raised a KeyError after its work.
_bookkeeping = threading.Lock()


def _keep_writer_failure(args: threading.ExceptHookArgs) -> None:
    failures = _failures_of.get(args.thread)  # type: ignore[arg-type]
    if failures is None:  # another thread's, a writer of no open block's too
        _replaced_hook[-1](args)
    else:
        failures.append(args.exc_value)  # type: ignore[arg-type]


@contextmanager
def summary_writer(log_dir: str | Path, *, purge_step: int | None = None) -> Iterator[Any]:
    """A ``torch.utils.tensorboard.SummaryWriter`` into ``log_dir``, closed when the block ends.

    Raises:
        ValueError: ``log_dir`` cannot be written (:func:`check_log_dir`), before any writer
            is made.
        WriteError: an event could not be written (when the block ends at the latest), naming
            ``log_dir``; the writer thread's traceback is not printed.
    """
    from torch.utils.tensorboard import SummaryWriter  # takes a second to import

    check_log_dir(log_dir, "the TensorBoard folder")
    failures: list[BaseException] = []
    # One hook for all open blocks, each failure kept by the block whose writer it is: a hook
    # per block, each restoring the one it replaced, left its own installed for good when
    # blocks overlapped without nesting (and kept another block's failures).
    own: set[threading.Thread] = set()
    try:
        with _bookkeeping:
            if threading.excepthook is not _keep_writer_failure:
                _replaced_hook.append(threading.excepthook)
                threading.excepthook = _keep_writer_failure
            before = set(threading.enumerate())
            writer = SummaryWriter(str(log_dir), purge_step=purge_step)  # starts its thread
            own = {thread for thread in set(threading.enumerate()) - before
                   if type(thread).__module__ == _WRITER_THREAD_MODULE}
            _failures_of.update(dict.fromkeys(own, failures))
        try:
            yield writer
        except BaseException:
            with suppress(OSError):  # the block's own error (a divergence) says more
                writer.close()
            raise
        writer.close()  # waits for its thread: a failure of the last events is kept now
        if failures:
            raise failures[0]
    except OSError as err:
        if err.errno is None or not _raised_by_writer(err):
            raise
        raise write_error(err.errno, f"{err.strerror} (TensorBoard events)", log_dir) from err
    finally:
        with _bookkeeping:
            for thread in own:
                del _failures_of[thread]
            if not _failures_of and threading.excepthook is _keep_writer_failure:
                threading.excepthook = _replaced_hook.pop()


def check_log_dir(log_dir: str | Path, name: str) -> None:
    """Refuse a folder that TensorBoard cannot write into, naming it ``name``: its writer takes
    the path as UTF-8, so a name in other bytes (Latin-1, from a zip made on Windows) failed
    with "'utf-8' codec can't encode character", naming no folder (an evaluation, after its
    work); and a folder that is a file, lies under one or takes no new file
    (:func:`stgconv.checks.check_output`), where the writer said only "File exists"."""
    try:
        str(log_dir).encode("utf-8")
    except UnicodeEncodeError:
        # Its bytes escaped ("caf\\xe9"): the name itself fails to print on an output that
        # encodes strictly (a logging handler's file, pytest's capture).
        raise ValueError(f"{name} {to_text(str(log_dir))} cannot be written: TensorBoard takes "
                         "only folder names in UTF-8; rename it or give another") from None
    check_output(log_dir, name)


def _raised_by_writer(err: OSError) -> bool:
    """Whether tensorboard's writer raised ``err`` (in its thread or the caller's), not other
    code run inside the block."""
    traceback = err.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_globals.get("__name__", "").startswith("tensorboard."):
            return True
        traceback = traceback.tb_next
    return False

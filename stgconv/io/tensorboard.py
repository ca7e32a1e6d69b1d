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
from typing import Any, Iterator

from stgconv.io.atomic import write_error

# The module of tensorboard's writer thread, whose failure summary_writer raises itself.
_WRITER_THREAD_MODULE = "tensorboard.summary.writer.event_file_writer"


@contextmanager
def summary_writer(log_dir: str | Path, *, purge_step: int | None = None) -> Iterator[Any]:
    """A ``torch.utils.tensorboard.SummaryWriter`` into ``log_dir``, closed when the block ends.

    Raises:
        WriteError: an event could not be written (when the block ends at the latest), naming
            ``log_dir``; the writer thread's traceback is not printed.
    """
    from torch.utils.tensorboard import SummaryWriter  # takes a second to import

    failures: list[BaseException] = []
    previous_hook = threading.excepthook

    def keep_writer_failure(args: threading.ExceptHookArgs) -> None:
        if type(args.thread).__module__ == _WRITER_THREAD_MODULE:
            failures.append(args.exc_value)
        else:
            previous_hook(args)

    threading.excepthook = keep_writer_failure
    try:
        writer = SummaryWriter(str(log_dir), purge_step=purge_step)
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
        if threading.excepthook is keep_writer_failure:
            threading.excepthook = previous_hook


def _raised_by_writer(err: OSError) -> bool:
    """Whether tensorboard's writer raised ``err`` (in its thread or the caller's), not other
    code run inside the block."""
    traceback = err.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_globals.get("__name__", "").startswith("tensorboard."):
            return True
        traceback = traceback.tb_next
    return False

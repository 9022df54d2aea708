"""A run's file writes, carried out by one thread of their own while training goes on.

A durable write waits for the disk (``fsync``): a few milliseconds each, about ten times an
epoch. Made by the training thread, each wait takes that thread off its core, and on a busy
machine the kernel hands the core to other programs and gives it back late. Made here, the
training thread keeps computing while this thread waits. The jobs run one at a time, in the
order given, so files still become durable in the order that keeps a run whole; once a job has
failed, the jobs after it are skipped, so nothing is written after a failed write.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor


class WriteBehind:
    """Jobs run in order by one thread; :meth:`finish` waits for them and reports the first
    that failed."""

    def __init__(self) -> None:
        # not a daemon thread: an interpreter that exits waits for the job under way to end
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vaekit-writes")
        self._pending: list[tuple[str, Future]] = []
        self._failed = False

    def submit(self, what: str, job: Callable[[], None]) -> None:
        """Run ``job`` (which writes ``what``, as an error would name it) after every job
        submitted before it; never, once one of them has failed."""
        self._pending.append((what, self._thread.submit(self._run, job)))

    def _run(self, job: Callable[[], None]) -> None:
        if self._failed:
            return
        try:
            job()
        except BaseException:
            self._failed = True
            raise

    def finish(self) -> tuple[str, OSError] | None:
        """Wait until every job submitted has ended. Returns what the failed job wrote and its
        OSError (None when none failed; the jobs after a failed one are skipped, so at most one
        fails); an error of another kind is raised. A job whose wait is interrupted (Ctrl-C)
        stays to be waited for by the next call."""
        failure = None
        while self._pending:
            what, future = self._pending[0]
            error = future.exception()  # waits
            self._pending.pop(0)
            if error is not None:
                failure = (what, error)
        if failure is not None and not isinstance(failure[1], OSError):
            raise failure[1]
        return failure

    def close(self) -> None:
        """Wait for the jobs under way, then end the thread."""
        self._thread.shutdown(wait=True)

"""How many CPU threads the engines' products use: a run's ``threads`` setting, applied to torch,
to NumPy's BLAS and to OpenMP alike.

The count is a setting, recorded in the run, and never read from the machine's load: threads
change the order in which a product's partial sums are added, so a resumed run repeats its
earlier steps bit for bit only with the same count.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from threadpoolctl import threadpool_limits


@contextmanager
def cpu_threads(count: int | None) -> Iterator[None]:
    """Within the block, torch (when it is imported on entry, as it is once a torch engine is
    built: a NumPy-engine run never imports it), the BLAS behind NumPy and every OpenMP library
    loaded (another package may bring its own) use ``count`` threads on the calling thread;
    None leaves the libraries' own default, one thread per core. The previous counts come back
    afterwards, so the estimator's ``fit`` leaves the calling program's threads as they were."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    libraries = threadpool_limits(count) if count is not None else nullcontext()
    try:
        with libraries:
            if torch is not None and count is not None:
                torch.set_num_threads(count)
            yield
    finally:
        if torch is not None and before is not None:
            torch.set_num_threads(before)


def one_thread_in_this_thread() -> None:
    """The products of the calling thread use one thread: OpenMP keeps its count per thread, and
    a thread the program starts begins with one per core, whatever the thread that started it
    was set to (``cpu_threads`` sets its caller's). Applied to torch and to every OpenMP
    library loaded (another package may bring its own). For a pool's ``initializer``."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    threadpool_limits(1, user_api="openmp")  # per thread: nothing to give back


def usable_cores() -> int:
    """The number of cores this process may run on (its CPU affinity, where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1

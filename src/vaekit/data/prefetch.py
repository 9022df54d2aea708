"""Batches of an epoch, read in the order the loop will use them.

Data held in memory (a NumPy array) are sliced as the loop asks. Data read on demand (the
array-likes of :mod:`vaekit.data.sources`: files read row by row, images decoded) are read by a
background thread up to ``depth`` batches ahead, so reading overlaps training; the batches and
their order are the same either way, and an error while reading is raised in the loop.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

#: Name of the reading thread (one per epoch being read).
THREAD_NAME = "vaekit-prefetch"
_END = object()


def batches(x: Any, order: np.ndarray, batch_size: int, depth: int = 4) -> Iterator[np.ndarray]:
    """``x[order[i : i + batch_size]]`` for i = 0, batch_size, …: the examples of each batch of
    an epoch whose permutation is ``order``.

    When ``x`` is not a NumPy array (and ``depth`` > 0), a thread reads up to ``depth`` batches
    ahead; closing the generator (``close()``, or leaving a ``for`` loop over it by ``break``
    or an exception) stops the thread and waits for it.
    """
    starts = range(0, len(order), batch_size)
    if isinstance(x, np.ndarray) or depth <= 0:
        for start in starts:
            yield x[order[start : start + batch_size]]
        return
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def read() -> None:
        try:
            for start in starts:
                if stop.is_set():
                    return
                ready.put((x[order[start : start + batch_size]], None))
            ready.put((_END, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            ready.put((None, exc))

    reader = threading.Thread(target=read, name=THREAD_NAME, daemon=True)
    reader.start()
    try:
        while True:
            batch, error = ready.get()
            if error is not None:
                raise error
            if batch is _END:
                return
            yield batch
    finally:
        stop.set()
        while reader.is_alive():  # make room for a put the reader may be blocked in
            with contextlib.suppress(queue.Empty):
                ready.get(timeout=0.1)
        reader.join()

"""Long-lived objects out of the garbage collector's full passes.

A full collection walks every container object in the process: with a model, its feature code
and the libraries loaded, one pass takes a long while, and a loop that allocates as scoring does
triggers one every few seconds. The server freezes what it loaded once at start-up
(``service.py``); batch scoring and the benchmarks freeze what exists while they run.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def frozen() -> Iterator[None]:
    """Leave the objects that exist on entry out of collections until exit.

    Garbage among them waits until exit. A process that froze objects of its own keeps them
    frozen: nothing is frozen or thawed here then.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()

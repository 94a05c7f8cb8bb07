"""A server worker dies with the server.

BentoML starts each worker in a session of its own, so a signal to the server's process group
(a ``kill -9`` of ``make serve``'s group, a container runtime killing the entry process) does
not reach it: the worker would outlive the server, still bound to the port, and the next
``serve`` on that port fails with "Address already in use". On Linux the worker asks the kernel
to kill it when its parent (the server) dies; elsewhere nothing changes.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> bool:
    """SIGKILL this process when its parent dies; ``parent``: the parent's pid, read as early
    as possible (if it already died, this process exits now). False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)
    return True

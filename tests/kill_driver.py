"""Run the vaekit command line, killing this process with SIGKILL at its N-th durable write.

    python tests/kill_driver.py N vaekit-arguments...

Every ``os.fsync`` and ``os.replace`` the program makes counts as one write boundary; at the N-th
the process kills itself (N = 0: never), as a power cut or ``kill -9`` would at that instant. The
fault-tolerance tests use it to stop training inside checkpoint saves, not only between them.
"""

import os
import signal
import sys

from vaekit.cli import main


def kill_at(target: int) -> None:
    calls = 0

    def counted(function):
        def wrapper(*args, **kwargs):
            nonlocal calls
            calls += 1
            if calls == target:
                os.kill(os.getpid(), signal.SIGKILL)
            return function(*args, **kwargs)

        return wrapper

    os.fsync = counted(os.fsync)
    os.replace = counted(os.replace)


if __name__ == "__main__":
    kill_at(int(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))

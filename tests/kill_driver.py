"""Run the vaekit command line and kill this process with SIGKILL at an event it reaches.

    python tests/kill_driver.py EVENT:N vaekit-arguments...
    python tests/kill_driver.py hold:N:GATE vaekit-arguments...

Events are counted inside the process, so a kill lands at the same point of the work however
fast the machine is:

- ``write:N``: the N-th durable write boundary (every ``os.fsync`` and ``os.replace``): inside
  checkpoint saves and their renames, metrics lines, figures, config.json;
- ``step:N``: the N-th optimizer step of this process, before it runs;
- ``load:N``: the N-th data set load (start-up, before the run directory is touched);
- ``never``: run to the end.

``hold:N:GATE`` kills nothing: before its N-th optimizer step the process creates the file
``GATE.reached`` and waits (holding the run's lock) until the file ``GATE`` exists. Either way the
process dies as a power cut or ``kill -9`` would at that instant.
"""

import os
import signal
import sys
import time
from pathlib import Path

from vaekit.cli import main, training
from vaekit.data import pipeline
from vaekit.train import start

#: How long a held process waits for its gate: a guard against a test that died, nothing more.
HOLD_LIMIT_SECONDS = 600


class Countdown:
    """Does ``action()`` before the ``target``-th call (from 1) of the functions it wraps, all
    counted together."""

    def __init__(self, target: int, action) -> None:
        self.target, self.action, self.calls = target, action, 0

    def wrap(self, function):
        def wrapper(*args, **kwargs):
            self.calls += 1
            if self.calls == self.target:
                self.action()
            return function(*args, **kwargs)

        return wrapper


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def hold(gate: Path) -> None:
    gate.with_name(gate.name + ".reached").touch()
    deadline = time.monotonic() + HOLD_LIMIT_SECONDS
    while not gate.exists():
        if time.monotonic() > deadline:
            die()
        time.sleep(0.01)


def on_step(target: int, action) -> None:
    """Do ``action()`` before the ``target``-th optimizer step of the engine the run builds."""
    build, countdown = start.engine_for, Countdown(target, action)

    def engine_for(*args, **kwargs):
        engine = build(*args, **kwargs)
        engine.train_step = countdown.wrap(engine.train_step)
        return engine

    start.engine_for = engine_for


def arm(spec: str) -> None:
    event, _, rest = spec.partition(":")
    if event == "never":
        return
    if event == "hold":
        target, _, gate = rest.partition(":")
        on_step(int(target), lambda: hold(Path(gate)))
    elif event == "step":
        on_step(int(rest), die)
    elif event == "write":
        countdown = Countdown(int(rest), die)
        os.fsync, os.replace = countdown.wrap(os.fsync), countdown.wrap(os.replace)
    elif event == "load":
        countdown = Countdown(int(rest), die)
        training.load_raw = countdown.wrap(training.load_raw)
        pipeline.load_raw = countdown.wrap(pipeline.load_raw)
    else:
        raise SystemExit(f"kill_driver: unknown event {spec!r}")


if __name__ == "__main__":
    arm(sys.argv[1])
    sys.exit(main(sys.argv[2:]))

"""Start-up time of the command line: the median wall time of commands that neither train nor
draw, each in a fresh interpreter, and the heavy libraries each one loads.

The console script ``vaekit`` beside this interpreter is timed (``python -m vaekit`` where there
is none), beside ``python -c pass`` (the interpreter's own floor) and ``python -c "import numpy"``
(which every command imports: the configs name the likelihoods of :mod:`vaekit.model.objectives`,
NumPy code), twice: with vaekit's bytecode cached (as after an install; kept in a temporary
``PYTHONPYCACHEPREFIX``, written by one untimed run first) and with every vaekit module compiled
from source on each run (``PYTHONDONTWRITEBYTECODE=1`` and no cache). Which libraries a command
loads is read from ``python -X importtime`` (its own run, not the timed ones).

    python benchmarks/startup.py              # 5 runs of each command
    python benchmarks/startup.py --runs 11
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = (("--version",), ("--help",), ("presets",))
#: Libraries that cost start-up time; the table names those a command loads.
HEAVY = ("torch", "matplotlib", "scipy", "sklearn", "fastapi", "PIL", "pooch")


def vaekit_command() -> list[str]:
    """How ``vaekit`` is run: the console script installed beside this interpreter, else
    ``python -m vaekit``."""
    script = Path(sys.executable).parent / "vaekit"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "vaekit"]


def median_seconds(argv: list[str], runs: int, env: dict[str, str]) -> float:
    """The median wall time, seconds, of ``runs`` runs of ``argv`` in environment ``env``, after
    one untimed run (each must succeed)."""
    times = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def environments(cache: str) -> tuple[dict[str, str], dict[str, str]]:
    """This environment with bytecode cached under ``cache``, and with no bytecode written."""
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**base, "PYTHONPYCACHEPREFIX": cache}, {**base, "PYTHONDONTWRITEBYTECODE": "1"}


def heavy_imports(args: tuple[str, ...]) -> list[str]:
    """The :data:`HEAVY` libraries ``vaekit ARGS`` imports, from ``python -X importtime``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "vaekit", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    loaded = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    return [name for name in HEAVY if name in loaded]


def startup_table(runs: int = 5) -> None:
    """Print the start-up table: median seconds of ``runs`` fresh runs of each command."""
    command = vaekit_command()
    print(
        f"start-up, median of {runs} run{'' if runs == 1 else 's'}, each a fresh interpreter "
        f"({' '.join(Path(part).name for part in command)}), seconds:\n"
    )
    print("| command | bytecode cached | compiled each run | heavy libraries loaded |")
    print("| --- | ---: | ---: | --- |")
    rows = [
        ("python -c pass", [sys.executable, "-c", "pass"], ""),
        ('python -c "import numpy"', [sys.executable, "-c", "import numpy"], ""),
    ]
    for args in COMMANDS:
        loaded = ", ".join(heavy_imports(args)) or "none"
        rows.append(("vaekit " + " ".join(args), [*command, *args], loaded))
    with tempfile.TemporaryDirectory() as cache:
        cached, compiled = environments(cache)
        for name, argv, loaded in rows:
            warm, cold = (median_seconds(argv, runs, env) for env in (cached, compiled))
            print(f"| {name} | {warm:.3f} | {cold:.3f} | {loaded} |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each command (default 5)")
    startup_table(parser.parse_args().runs)


if __name__ == "__main__":
    main()

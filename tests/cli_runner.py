"""Running the command line inside a test: its exit code and output, and its one-line errors."""

from __future__ import annotations

from vaekit.cli import main


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``vaekit ARGV`` run in this process (argv as strings)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def user_error(capsys, *argv) -> str:
    """The one line a refused command prints: exit code 2, one ``vaekit: error:`` line."""
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaekit: error: "), err
    return lines[0]

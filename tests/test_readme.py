"""The README's two set-up commands are the ones CI runs and the ones that exist."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = quick.split("```bash\n")[1:]
    return [block.split("```", 1)[0].strip() for block in blocks]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    demo, tests = _setup_commands()
    assert demo.endswith("&& vaekit demo") and "pip install" in demo
    assert tests.endswith("python -m pytest") and ".[test]" in tests
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert tests in ci

"""Every command and code block of README.md and docs/*.md runs as written, so that a newcomer who
copies them succeeds.

Each document runs in its own empty working directory, its fenced blocks in order (later blocks
use the runs of earlier ones): ```bash blocks command by command, ```python blocks as scripts,
and plain ``` blocks by what they hold: command lines (starting with ``vaekit ``, ``python ``,
``torchrun `` or ``curl ``) are run, a synopsis of the command line is checked against the
parser, anything else is shown output. Only the SUBSTITUTIONS below change a command, all for
speed (or for data this machine cannot download); NOT_RUN lists, with the reason, the few
commands that cannot run here. Any other kind of block fails the test, so a new one cannot go
unrun.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import selectors
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from vaekit.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND_STARTS = ("vaekit ", "python ", "torchrun ", "curl ")
DEADLOCK_GUARD = 600  # seconds; never a pass/fail criterion

#: The speed substitutions: (regular expression, replacement, why),
#: applied in this order to every command and Python block.
SUBSTITUTIONS = [
    (r"--epochs \d+", "--epochs 1", "one epoch"),
    (r"\bepochs=\d+", "epochs=1", "one epoch (the Python estimators)"),
    (
        r"^(?!.*--epochs)(?!.*--resume)(.*\bvaekit (?:train|demo)\b.*)$",
        r"\1 --epochs 1",
        "one epoch where a preset or the demo would train more",
    ),
    (r"--iw-samples \d+", "--iw-samples 5", "5 importance samples, not 1,000"),
    (
        r"^(?!.*--iw-samples)(.*\bvaekit score\b.*)$",
        r"\1 --iw-samples 5",
        "5 importance samples, not the default 100",
    ),
    (r" --data-dir \S+", "", "small data: the bundled subset, not a data directory"),
    (r"(?<=\s)mnist(?=\s|$)", "mnist-small", "small data: 5,000 digits, not 60,000"),
    (
        r"^(?!.*--data )(.*\bvaekit train --preset .*)$",
        r"\1 --data mnist-small",
        "small data: presets train on mnist",
    ),
    (
        r"(?<=\s)fashion-mnist(?=\s|$)",
        "mnist-small",
        "small data, and a test does not download",
    ),
    (
        r"^vaekit serve (\S+)$",
        r"vaekit serve \1 --port 0",
        "any free port; the test reads it from the printed URL, and curl lines use it",
    ),
]

#: Commands that are not run, by how they start: why, and what is checked instead.
NOT_RUN = {
    "torchrun --nnodes 2": "needs two machines and a rendezvous host (node0.example.org); its "
    "vaekit arguments are parsed, and the one-machine torchrun command runs",
    "python -m pytest": "the test suite itself; CI runs this very line (tests/test_readme.py)",
    "python -m pip install": "CI's own install; checked: it installs this checkout with CI's "
    "torch pin",
}


def substitute(text: str) -> str:
    """``text`` with the SUBSTITUTIONS applied, line by line."""
    for pattern, replacement, _ in SUBSTITUTIONS:
        text = re.sub(pattern, replacement, text, flags=re.MULTILINE)
    return text


def fenced_blocks(path: Path) -> list[tuple[str, str, int]]:
    """(language, text, line number) of each fenced block of a Markdown file."""
    blocks, lines = [], path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = re.match(r"^```(\S*)\s*$", lines[i])
        if match:
            end = lines.index("```", i + 1)
            blocks.append((match.group(1), "\n".join(lines[i + 1 : end]), i + 1))
            i = end
        i += 1
    return blocks


def commands(text: str) -> list[str]:
    """The commands of a shell block: comment lines and trailing comments dropped, lines ending
    in a backslash joined, and a quotation left open carried on to the next line."""
    out, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        line = re.sub(r"\s+#[^\"']*$", "", line)  # a trailing comment (quotes are code)
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        pending += line.strip() if not pending.endswith("\n") else line
        try:
            shlex.split(pending)
        except ValueError:  # an open quotation: the command goes on
            pending += "\n"
            continue
        out.append(pending.strip())
        pending = ""
    assert not pending, f"an unfinished command: {pending!r}"
    return out


def synopsis_lines(text: str) -> list[str]:
    """The lines of a command-line synopsis, each with its indented continuation lines."""
    out: list[str] = []
    for line in text.splitlines():
        if line.startswith(" ") and out:
            out[-1] += " " + line.strip()
        elif line.strip():
            out.append(line.strip())
    return out


def is_synopsis(text: str) -> bool:
    """A plain block that shows the command line's shape: [optional] parts, A|B choices."""
    return any(line.startswith(COMMAND_STARTS) and "[" in line for line in text.splitlines())


def subcommand_parsers() -> dict[str, object]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a.choices, dict))
    return action.choices


def check_synopsis(text: str) -> None:
    """Each line names a real command with only its real options, and every command is shown."""
    parsers = subcommand_parsers()
    shown = set()
    for line in synopsis_lines(text):
        words = line.split("#", 1)[0].split()
        name = words[words.index("vaekit") + 1]
        assert name in parsers, f"the synopsis shows 'vaekit {name}', which does not exist"
        shown.add(name)
        options = set(parsers[name]._option_string_actions)
        for flag in re.findall(r"(?<![\w-])--?[a-z][\w-]*", " ".join(words[1:])):
            if words[0] == "torchrun" and flag in ("--nproc_per_node", "-m"):
                continue
            assert flag in options, f"'vaekit {name}' has no option {flag} (synopsis: {line})"
    assert shown == set(parsers), f"commands missing from the synopsis: {set(parsers) - shown}"


def check_pip_install(command: str) -> None:
    """The install line installs this checkout with the torch version CI pins."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    pin = re.search(r"torch==[\d.]+", ci).group(0)
    words = shlex.split(command)
    assert pin in words, f"{command!r} does not pin {pin} as CI does"
    assert "-e" in words and words[words.index("-e") + 1] in (".", ".[test]"), command


class Document:
    """One document's working directory, its environment, and its explorer server if one runs."""

    def __init__(self, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.workdir = workdir
        monkeypatch.chdir(workdir)
        monkeypatch.setenv("VAEKIT_DATA_DIR", str(workdir / "no-data"))  # only what docs name
        bin_dir = str(Path(sys.executable).parent)  # `python` and `vaekit` of this environment
        self.env = {
            **os.environ,
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "PYTHONUNBUFFERED": "1",
        }
        self.server: subprocess.Popen | None = None
        self.url: str | None = None

    def run(self, command: str) -> None:
        parts = command.split(" && ") if "\n" not in command else [command]
        for part in parts:
            self.run_one(part.strip())

    def run_one(self, command: str) -> None:
        skipped = next((k for k in NOT_RUN if command.startswith(k)), None)
        if skipped == "python -m pip install":
            check_pip_install(command)
        elif skipped == "torchrun --nnodes 2":
            words = shlex.split(command)
            build_parser().parse_args(words[words.index("vaekit") + 1 :])
        elif skipped is None:
            self.execute(substitute(command))

    def execute(self, command: str) -> None:
        if command.startswith("vaekit serve "):
            self.start_server(command)
        elif command.startswith("curl "):
            assert self.url, f"{command!r} needs 'vaekit serve' earlier in the document"
            self.shell(re.sub(r"http://(127\.0\.0\.1|localhost):8000/?", self.url, command))
        elif command.startswith("vaekit ") and not re.search(r"[|<>;&$`]", command):
            out, err = io.StringIO(), io.StringIO()  # the console script's main, in-process
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(shlex.split(command)[1:])
            assert code == 0, f"{command!r} exited with {code}: {err.getvalue()[-2000:]}"
        else:
            self.shell(command)

    def shell(self, command: str) -> None:
        proc = subprocess.run(
            ["bash", "-c", command],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=DEADLOCK_GUARD,
        )
        assert proc.returncode == 0, f"{command!r} failed:\n{proc.stderr[-3000:]}"

    def python(self, code: str, name: str) -> None:
        script = self.workdir / name
        script.write_text(code, encoding="utf-8")
        self.shell(f"python {script.name}")

    def start_server(self, command: str) -> None:
        assert self.server is None, "one explorer per document"
        self.server = subprocess.Popen(
            shlex.split(command),
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        printed = b""
        with selectors.DefaultSelector() as selector:
            selector.register(self.server.stdout, selectors.EVENT_READ)
            while self.url is None:  # until it prints its URL
                assert selector.select(DEADLOCK_GUARD), "the explorer printed nothing"
                chunk = os.read(self.server.stdout.fileno(), 65536)
                assert chunk, f"the explorer stopped: {printed.decode()[-2000:]}"
                printed += chunk
                match = re.search(rb"http://[\d.]+:\d+/", printed)
                self.url = match.group(0).decode() if match else None

    def close(self) -> None:
        if self.server is not None:
            self.server.terminate()
            self.server.wait(timeout=DEADLOCK_GUARD)
            self.server.stdout.close()


@contextlib.contextmanager
def document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Document]:
    doc = Document(tmp_path, monkeypatch)
    try:
        yield doc
    finally:
        doc.close()


def run_document(path: Path, doc: Document) -> None:
    """Run (or check) every fenced block of ``path`` in order, in ``doc``."""
    for number, (language, text, line) in enumerate(fenced_blocks(path)):
        if language == "python":
            doc.python(substitute(text), f"block-{number}.py")
        elif language == "bash":
            for command in commands(text):
                doc.run(command)
        elif language == "" and is_synopsis(text):
            check_synopsis(text)
        elif language == "":  # command lines are run; anything else is shown output
            for command in text.splitlines():
                if command.startswith(COMMAND_STARTS):
                    doc.run(command)
        else:
            pytest.fail(f"{path.name}, line {line}: a ```{language} block, which is not run")


@pytest.mark.parametrize("path", DOCUMENTS, ids=[p.name for p in DOCUMENTS])
def test_every_block_of_the_document_runs(path, tmp_path, monkeypatch):
    with document(tmp_path, monkeypatch) as doc:
        run_document(path, doc)


def test_the_substitutions_only_shorten():
    """Each substitution keeps the command's meaning: the same command, fewer epochs/samples."""
    before = "vaekit train --data mnist --data-dir ../shared/data --epochs 10 --out runs/mnist"
    after = substitute(before)
    assert after.startswith("vaekit train --data ") and after.endswith(
        "--epochs 1 --out runs/mnist"
    )
    assert substitute("vaekit demo") == "vaekit demo --epochs 1"
    assert substitute("vaekit train --resume --out r") == "vaekit train --resume --out r"
    assert substitute("vae = VAE(latent_dim=2, epochs=10)") == "vae = VAE(latent_dim=2, epochs=1)"
    assert substitute("vaekit serve runs/demo") == "vaekit serve runs/demo --port 0"


def test_a_block_of_an_unknown_kind_fails(tmp_path, monkeypatch):
    text = "```bash\nvaekit datasets \\\n  --json\n```\n\n```console\n$ vaekit demo\n```\n"
    (tmp_path / "doc.md").write_text(text)
    assert commands(fenced_blocks(tmp_path / "doc.md")[0][1]) == ["vaekit datasets --json"]
    with (
        document(tmp_path, monkeypatch) as doc,
        pytest.raises(pytest.fail.Exception, match="console"),
    ):
        run_document(tmp_path / "doc.md", doc)


def nav_pages(entries: object) -> Iterator[str]:
    """The pages a MkDocs ``nav`` lists: its strings, at any depth (``Title: page.md`` or a
    section of such entries)."""
    if isinstance(entries, str):
        yield entries
    elif isinstance(entries, list):
        for entry in entries:
            yield from nav_pages(entry)
    elif isinstance(entries, dict):
        for value in entries.values():
            yield from nav_pages(value)


def test_every_page_is_in_the_site_nav_and_every_nav_entry_exists():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    listed = list(nav_pages(config["nav"]))
    pages = {path.name for path in (ROOT / "docs").glob("*.md")}
    assert len(listed) == len(set(listed)), f"listed twice in the nav: {listed}"
    assert set(listed) - pages == set(), "the nav lists pages that do not exist"
    assert pages - set(listed) == set(), "docs pages missing from mkdocs.yml's nav"


def test_the_readme_links_only_to_pages_that_exist():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\((docs/[^)#\s]*)", readme)
    assert links, "the README links to its documentation"
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing, f"the README links to missing files: {missing}"

"""The house's floors: every module of src/vaekit imports only from its own package and the
packages below it (docs/architecture.md draws the order), no module imports another that
imports it back, counting every import (at module level, inside functions, under
``TYPE_CHECKING``), and the NumPy engine imports and trains where torch is not installed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import vaekit

SRC = Path(vaekit.__file__).resolve().parent
#: The packages from the ground up: a module may import its own floor and the floors below.
#: The public face (vaekit/__init__.py) and the entry point (__main__) stand on top.
FLOORS = (
    ("vaekit.errors", "vaekit.text", "vaekit.disk"),
    ("vaekit.config",),
    ("vaekit.model",),
    ("vaekit.data",),
    ("vaekit.engines",),
    ("vaekit.runs",),
    ("vaekit.measure",),
    ("vaekit.draw",),
    ("vaekit.train",),
    ("vaekit.api",),
    ("vaekit.serve",),
    ("vaekit.cli",),
    ("vaekit", "vaekit.__main__"),
)
#: At most this many modules sit directly in src/vaekit (the rest live in packages).
TOP_LEVEL_MODULES = 5


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The vaekit modules that ``path`` imports, anywhere in the file (at module level, inside
    functions, under ``if TYPE_CHECKING:``). ``from a import b`` is a.b when that is a module,
    a otherwise."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in modules else node.module)
    return {name for name in found if name in modules}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in SRC.rglob("*.py")}
    return {name: imported_modules(path, set(paths)) for name, path in paths.items()}


def floor(module: str) -> int:
    """The floor of ``module``: that of the longest package (or module) that holds it."""
    best, level = -1, None
    for number, names in enumerate(FLOORS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, level = len(name), number
    assert level is not None, f"{module} stands on no floor: add its package to FLOORS"
    return level


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (a list of modules, first = last), or None: depth-first search."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_reader_sees_a_cycle_and_every_kind_of_import(tmp_path):
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nfrom vaekit.config import settings\n"
        "if TYPE_CHECKING:\n    from vaekit.errors import ConfigError\n"
        "def f():\n    import vaekit.model.priors\n",
        encoding="utf-8",
    )
    modules = {"vaekit", "vaekit.config.settings", "vaekit.errors", "vaekit.model.priors"}
    assert imported_modules(source, modules) == set(modules) - {"vaekit"}
    assert floor("vaekit.model.priors") == 2 and floor("vaekit.disk") == 0
    assert floor("vaekit") == len(FLOORS) - 1


def test_src_has_no_import_cycles_counting_every_import():
    graph = import_graph()
    assert "vaekit.engines.numpy.engine" in graph and "vaekit.api.scratch" in graph
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph))


def test_every_import_goes_down_the_floors_or_stays_on_its_own():
    graph = import_graph()
    upward = sorted(
        f"{name} (floor {floor(name)}) imports {dependency} (floor {floor(dependency)})"
        for name, dependencies in graph.items()
        for dependency in dependencies
        if floor(dependency) > floor(name)
    )
    assert not upward, "\n".join(upward)


def test_few_modules_sit_at_the_top_and_none_shares_a_name():
    top = sorted(path.name for path in SRC.glob("*.py"))
    assert len(top) <= TOP_LEVEL_MODULES, top
    names: dict[str, list[str]] = {}
    for path in SRC.rglob("*.py"):
        if path.name != "__init__.py":
            names.setdefault(path.stem, []).append(module_name(path))
    mirrored = {"model", "engine"}  # the engines' mirrored files: numpy/, handwritten/, torch/
    shared = {stem: where for stem, where in names.items() if len(where) > 1}
    assert set(shared) <= mirrored, shared
    assert all(m.startswith("vaekit.engines.") for stem in shared for m in shared[stem])


def test_numpy_engine_imports_and_trains_with_torch_blocked():
    """``sys.modules["torch"] = None`` makes any ``import torch`` fail, as where it is absent."""
    script = """
import sys
sys.modules["torch"] = None
import numpy as np
from vaekit.config.settings import ModelConfig
from vaekit.engines import build_engine
from vaekit.measure.evaluation import evaluate_elbo, iwae_log_likelihood

engine = build_engine(ModelConfig(input_shape=(6,), hidden=(5,), latent_dim=2), "numpy")
x = np.random.default_rng(0).uniform(size=(8, 6)).astype(np.float32)
first = engine.train_step(x, 1.0).loss
for _ in range(20):
    last = engine.train_step(x, 1.0).loss
assert last < first, (first, last)
assert np.isfinite(evaluate_elbo(engine, x).loss)
assert np.isfinite(iwae_log_likelihood(engine, x, 3)).all()
heavy = {"matplotlib", "vaekit.train.loop", "vaekit.api.estimator", "vaekit.runs.checkpoint"}
print("loaded:", sorted(heavy & set(sys.modules)))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "loaded: []"

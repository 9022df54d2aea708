"""The package's layers: no import cycles in src/vaekit, engines that import nothing above them,
and a NumPy engine that imports and trains where torch is not installed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import vaekit

SRC = Path(vaekit.__file__).resolve().parent
#: What an engine may import from vaekit, besides other engine modules.
BELOW_ENGINES = {
    "vaekit.config",
    "vaekit.config.settings",
    "vaekit.model",
    "vaekit.data.labels",
    "vaekit.model.custom_networks",
    "vaekit.errors",
    "vaekit.text",
    "vaekit.disk",
    "vaekit.model.objectives",
    "vaekit.model.priors",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The vaekit modules that ``path`` imports, at module level or inside functions; imports
    under ``if TYPE_CHECKING:`` do not run and are left out. ``from a import b`` is a.b when that
    is a module, a otherwise."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            children: list[ast.AST] = node.orelse
        else:
            children = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in modules else node.module)
        for child in children:
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {name for name in found if name in modules}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in SRC.rglob("*.py")}
    return {name: imported_modules(path, set(paths)) for name, path in paths.items()}


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


def test_the_graph_reader_sees_a_cycle_and_skips_type_checking_imports(tmp_path):
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
    assert imported_modules(source, modules) == {"vaekit.config.settings", "vaekit.model.priors"}


def test_src_has_no_import_cycles():
    graph = import_graph()
    assert "vaekit.engines.numpy.engine" in graph and "vaekit.api.learner" in graph
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph))


def test_engines_import_nothing_above_them():
    graph = import_graph()
    above = {
        (name, dependency)
        for name, dependencies in graph.items()
        if name.startswith("vaekit.engines")
        for dependency in dependencies
        if not dependency.startswith("vaekit.engines") and dependency not in BELOW_ENGINES
    }
    assert not above
    for lower in BELOW_ENGINES:  # and what they import stays below the engines too
        assert graph[lower] <= BELOW_ENGINES, lower


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

"""The shape of the house: imports at the top of each module, no import cycles, small modules and functions.

Lazy imports are kept for heavy third-party packages only; a project module is imported at the top, where a
reader (and import-linter, which states the floors of tools/) can see it. tools/recipe/ is the training
program inlined into train.py: its size rules are its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tools.core.paths import PROJECT_ROOT

PROJECT_PACKAGES = ("agent", "tools")
LAZY_ALLOWED = (
    "torch",
    "transformers",
    "peft",
    "datasets",
    "bitsandbytes",
    "tokenizers",
    "gguf",
    "modal",
    "chainlit",
    "langchain_openai",
    "matplotlib",
    "mlflow",
)
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(p for package in PROJECT_PACKAGES for p in (PROJECT_ROOT / package).rglob("*.py")):
        parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]


def _local_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """Every import statement inside a function, with what it imports."""
    found = []
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    found += [(node.lineno, name) for name in _imported(node)]
    return found


def test_the_house_has_its_floors() -> None:
    for floor in ("core", "recipe", "inputs", "plan", "policy", "run", "evals", "report", "job"):
        assert f"tools.{floor}" in MODULES, floor
    for module in ("agent.cli", "agent.cli.__main__", "agent.ui.app", "agent.evals.scenarios", "agent.results"):
        assert module in MODULES, module
    for command in ("estimate", "train", "chat", "evaluate", "ui", "options", "output"):
        assert f"agent.cli.{command}" in MODULES, command


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_project_module_is_imported_inside_a_function(module: str) -> None:
    local = _local_imports(_tree(MODULES[module]))
    project = [(line, name) for line, name in local if name.split(".")[0] in PROJECT_PACKAGES]
    assert not project, f"{module}: function-local imports of project modules {project}"
    heavy = [(line, name) for line, name in local if name.split(".")[0] not in LAZY_ALLOWED]
    assert not heavy, f"{module}: function-local imports of light packages {heavy}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith("tools.recipe")))
def test_modules_and_functions_stay_small(module: str) -> None:
    path = MODULES[module]
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module} has {lines} lines"
    long = [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{module}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def _import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        targets: set[str] = set()
        for node in _tree(path).body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                targets |= {name for name in _imported(node) if name in MODULES and name != module}
        graph[module] = targets
    return graph


def test_modules_import_each_other_without_a_cycle() -> None:
    graph = _import_graph()
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert graph["agent.cli"] >= {"agent.cli.estimate", "agent.cli.chat"}  # the graph sees submodule imports
    assert "tools.policy.store" in graph["tools.job.attempt"]

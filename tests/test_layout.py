"""The house rules docs/architecture.md states, read from the source: no import cycle among bench/'s modules
(imports inside functions count), Ray only in the sweep module, MLflow only in the tracking package, methods/
never imports bench/, and no file longer than a reader takes in."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _modules(package: str) -> dict[str, Path]:
    found = {}
    for path in (ROOT / package).rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports anywhere in its file (top level or inside functions)."""
    modules = _modules(package)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = here.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_planted_cycle_and_nothing_in_a_chain():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_among_bench_modules_counting_imports_inside_functions():
    graph = import_graph("bench")
    assert {"bench.cli", "bench.session", "bench.trainer"} <= set(graph)
    assert "bench.session" in graph["bench.cli"]   # imported inside a function: counted
    assert cycles(graph) == []


def test_no_import_cycle_among_the_methods_modules():
    """The plugins import the registry (methods/registry.py), not the package that imports them."""
    graph = import_graph("methods")
    assert "methods.registry" in graph["methods.l1l2"] and "methods" not in graph["methods.l1l2"]
    assert cycles(graph) == []


def test_every_import_inside_a_function_says_why_it_is_lazy():
    """Imports sit at the top of a module; one inside a function carries a ``# lazy:`` reason on its line or the
    line above (what it keeps light: ``import bench``, ``bench --help``, the report; or an optional extra)."""
    silent = []
    for package in ("bench", "methods"):
        for name, path in _modules(package).items():
            lines = path.read_text().splitlines()
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        here = lines[inner.lineno - 2:inner.end_lineno]
                        if not any("# lazy:" in line for line in here):
                            silent.append(f"{path.relative_to(ROOT)}:{inner.lineno}")
    assert sorted(set(silent)) == []


@pytest.mark.parametrize("module, kept_out", [
    ("bench", {"torch", "ray", "mlflow", "pandas"}),
    ("bench.cli", {"torch", "ray", "mlflow", "pandas"}),           # `bench --help` stays fast
    ("bench.report", {"torch", "ray"}),
])
def test_the_light_entry_points_import_no_heavy_library(module, kept_out):
    import subprocess
    import sys
    code = f"import sys, {module}; print(sorted(set({sorted(kept_out)!r}) & {{m.split('.')[0] for m in sys.modules}}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["[]"]


def _importers(package: str, library: str) -> set[str]:
    found = set()
    for name, path in _modules(package).items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            if any(n == library or n.startswith(library + ".") for n in names):
                found.add(name)
    return found


@pytest.mark.parametrize("library, allowed", [
    ("ray", {"bench.sweep"}),
    ("mlflow", {"bench.tracking.store", "bench.tracking.runs"}),
    ("bench", set()),   # from methods/: the methods never import the harness
])
def test_each_library_is_imported_only_where_its_layer_lives(library, allowed):
    package = "methods" if library == "bench" else "bench"
    assert _importers(package, library) <= allowed


def test_no_module_is_longer_than_600_lines_and_the_cli_at_most_350():
    lengths = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines())
               for p in [*(ROOT / "bench").rglob("*.py"), *(ROOT / "methods").rglob("*.py")]}
    assert lengths["bench/cli.py"] <= 350
    assert {p: n for p, n in lengths.items() if n > 600} == {}


def test_docs_architecture_names_every_module_with_its_current_length():
    """The module table of docs/architecture.md stays true: every module of bench/ and methods/checks.py is a
    row, and its line count is the file's (within 30 lines: small edits need not touch the docs)."""
    import re

    table = dict(re.findall(r"^\| `((?:bench|methods)/[\w/]+\.py)` \| (\d+) \|", (ROOT / "docs/architecture.md")
                            .read_text(), flags=re.M))
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "bench").rglob("*.py")
               if p.name not in ("__init__.py", "version.py")}
    assert sorted(modules - set(table)) == []
    for path, lines in table.items():
        assert abs(len((ROOT / path).read_text().splitlines()) - int(lines)) <= 30, path


def test_no_module_outside_the_protocols_package_names_a_protocol():
    """A protocol is one unit: its name is spelled only in bench/protocols/ (the trainer runs a plan, the rest asks
    the protocol's attributes), so adding one touches no other module."""
    from bench.protocols import list_protocols

    names = {f'"{name}"' for name in list_protocols()} | {f"'{name}'" for name in list_protocols()}
    found = [f"{path.relative_to(ROOT)}:{n}" for path in (ROOT / "bench").rglob("*.py")
             if "protocols" not in path.relative_to(ROOT).parts
             for n, line in enumerate(path.read_text().splitlines(), start=1) if any(q in line for q in names)]
    assert found == []

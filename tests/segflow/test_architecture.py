"""segflow's packages import each other in one direction: no cycle, and no package above its layer.

The layers, bottom to top (a package may import only packages of lower layers):
    errors | progress | layout -> store -> config -> data -> models -> evaluate -> train -> search | compress -> cli
errors.py, progress.py and layout.py (the run folder's paths) are single modules that several layers use. store sits under config
because config/loader.py reads a recipe from a store URI. search and compress share a layer, so
neither may import the other. Every import counts: module level, inside functions and in
TYPE_CHECKING blocks, since each is a dependency a reader must follow, and a cycle that only
function-level imports hold together is still a cycle. The registries' builders and readers,
named by import path in segflow/config/recipe.py, are imported by models and data themselves,
within their own layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import segflow

ROOT = Path(segflow.__file__).parent
LAYERS = {
    "errors": 0, "progress": 0, "layout": 0, "store": 1, "config": 2, "data": 3, "models": 4, "evaluate": 5, "train": 6,
    "search": 7, "compress": 7, "cli": 8,
}


def package_of(module: str) -> str | None:
    """The segflow package a dotted module name belongs to ('segflow.train.fit' -> 'train'), if any."""
    parts = module.split(".")
    if parts[0] == "segflow" and len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return None


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Every module a source file imports, at any depth of its syntax tree (functions, TYPE_CHECKING)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from segflow import train`
    return found


def package_graph(root: Path) -> dict[str, set[str]]:
    """{package: the other segflow packages it imports}, read from the source tree at `root` (segflow/)."""
    graph: dict[str, set[str]] = {name: set() for name in LAYERS}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent).with_suffix("")
        is_package = relative.name == "__init__"
        module = ".".join(relative.parts[:-1] if is_package else relative.parts)
        own = package_of(module)
        if own is None:
            continue
        for target in imported_modules(path.read_text(), module, is_package):
            other = package_of(target)
            if other is not None and other != own:
                graph[own].add(other)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path that ends where it starts (['a', 'b', 'a']), or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, path + [node])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [])):
            return cycle
    return None


def layer_violations(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    """'a -> b' for every import of a package that is not in a lower layer than the importer."""
    return [f"{pkg} -> {other}" for pkg, others in sorted(graph.items()) for other in sorted(others)
            if layers[other] >= layers[pkg]]


def test_segflow_packages_import_one_another_without_a_cycle():
    assert find_cycle(package_graph(ROOT)) is None


def test_each_package_imports_only_lower_layers():
    assert layer_violations(package_graph(ROOT), LAYERS) == []


def test_every_segflow_package_and_module_has_a_layer():
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    modules = {p.stem for p in ROOT.glob("*.py") if p.name != "__init__.py"}
    assert packages | modules == set(LAYERS)


@pytest.mark.parametrize("graph,cycle", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b"}, "b": {"a"}, "c": set()}, ["a", "b", "a"]),
    ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, None),
])
def test_the_cycle_finder_on_small_graphs(graph, cycle):
    assert find_cycle(graph) == cycle


def test_the_layer_check_on_a_small_graph():
    layers = {"low": 0, "mid": 1, "peer": 1, "high": 2}
    graph = {"low": {"high"}, "mid": {"low", "peer"}, "peer": set(), "high": {"mid"}}
    assert layer_violations(graph, layers) == ["low -> high", "mid -> peer"]


def test_the_reader_sees_function_level_type_checking_and_relative_imports(tmp_path):
    root = tmp_path / "segflow"
    for package in ("models", "compress", "train", "evaluate"):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
    (root / "models" / "__init__.py").write_text(
        "def build():\n    from segflow.compress.prune import build_pruned\n")
    (root / "compress" / "prune.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from segflow import models\n")
    (root / "train" / "fit.py").write_text("from ..evaluate import metrics\nfrom . import loop\n")
    graph = package_graph(root)
    assert graph["models"] == {"compress"} and graph["compress"] == {"models"}
    assert graph["train"] == {"evaluate"}
    assert find_cycle(graph) == ["compress", "models", "compress"]


# ---- faces: other packages import a core package through its __init__'s __all__ -------------

FACED = ("store", "models", "evaluate", "train", "search", "compress")
# Public to segflow.compress only: the modules of the models it writes (see segflow/models/__init__.py).
COMPRESSED_MODELS = {"darts", "pruned", "quantized", "traced"}


def face(root: Path, package: str) -> set[str]:
    """The names in a package's __all__, read from its source (importing it would load torch, Ray, NNI)."""
    for node in ast.walk(ast.parse((root / package / "__init__.py").read_text())):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    return set()


def face_violations(root: Path, sources: list[Path]) -> list[str]:
    """'file: import' for every import of a core package's internals from outside that package."""
    faces = {package: face(root, package) for package in FACED}
    found = []
    for path in sources:
        own = package_of(".".join(path.relative_to(root.parent).with_suffix("").parts))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                targets = [(node.module, alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [(alias.name, None) for alias in node.names]
            else:
                continue
            for module, name in targets:
                parts = module.split(".")
                package = parts[1] if len(parts) > 1 and parts[0] == "segflow" else None
                if package not in FACED or package == own:
                    continue
                if len(parts) == 2:  # from segflow.train import fit
                    ok = name is None or name in faces[package]
                else:  # from segflow.models.artifact import load_model: artifact must be a public module
                    ok = parts[2] in faces[package] or (own == "compress" and parts[2] in COMPRESSED_MODELS)
                if not ok:
                    found.append(f"{path.name}: {module}{'.' + name if name and len(parts) == 2 else ''}")
    return found


def test_other_packages_import_only_faces():
    repo = ROOT.parent
    sources = [p for folder in (ROOT, repo / "serving", repo / "components", repo / "pipelines")
               for p in sorted(folder.rglob("*.py"))]
    assert face_violations(ROOT, sources) == []


def test_each_face_is_small():
    assert {package: len(face(ROOT, package)) for package in FACED if len(face(ROOT, package)) > 12} == {}


def test_the_face_check_on_a_fake_tree(tmp_path):
    root = tmp_path / "segflow"
    for package in FACED:
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text('__all__ = ["fit", "metrics"]\n')
    caller = root / "compress" / "x.py"
    caller.write_text("from segflow.train import fit\nfrom segflow.train.loop import STOPPED\n"
                      "from segflow.evaluate.metrics import QUALITY\nfrom segflow.models.darts import build\n")
    other = tmp_path / "serving" / "y.py"
    other.parent.mkdir()
    other.write_text("from segflow.models.darts import build\nfrom segflow.train import loop\n")
    assert face_violations(root, [caller, other]) == [
        "x.py: segflow.train.loop", "y.py: segflow.models.darts", "y.py: segflow.train.loop"]


def test_a_lazy_face_names_no_submodule():
    # compress loads its face on first use (module __getattr__), which a loaded submodule of the same name
    # would shadow: `from segflow.compress import nas` would give the module, not the function.
    submodules = {p.stem for p in (ROOT / "compress").glob("*.py")}
    assert face(ROOT, "compress") & submodules == set()

"""The package's import graph: no circles, imports only from a module's own stage or a lower one,
no ``sys.path`` editing, every package installed; and what every module must keep (at most 400
lines, graph functions made without AutoGraph).

Every ``import`` counts, including those inside functions (a lazy import still ties two
modules together), and so do the builders the package loads by name
(``tf_medseg.resources.builders("gi_phantom")``). ``datasets/`` is walked under the name it is
imported by, ``tf_medseg_datasets``.

The stages, in the order of the data's way (ARCHITECTURE.md): config -> data (and the TFDS
builders) -> models -> export -> inference -> evaluation -> training -> workflows -> cli. A
stage uses the stages below it: training scores a model with the predictor (inference) and the
metrics (evaluation) and exports it, as nnU-Net's trainer validates with its predictor.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"tf_medseg": ROOT / "tf_medseg", "tf_medseg_datasets": ROOT / "datasets",
            "benchmarks": ROOT / "benchmarks"}
STAGES = ("config", "data", "planning", "models", "export", "inference", "evaluation", "training",
          "workflows", "cli")
# The few modules outside a stage's folder, which every stage may use.
SHARED = ("tf_medseg", "tf_medseg.errors", "tf_medseg.files", "tf_medseg.run_dir",
          "tf_medseg.resources")
# Entry points and the public alias of DESIGN.md's tf_medseg.metrics: above every stage.
TOP = ("tf_medseg.__main__", "tf_medseg.metrics")
# tf_medseg/dicom gathers one concern across the stages: each module keeps the stage of what
# it does (reading and writing DICOM objects: data; predict's writer: inference; the node,
# its service loop on top: workflows).
DICOM = {"reader": "data", "contours": "data", "rtstruct": "data", "seg": "data",
         "tg263": "data", "studies": "data", "writer": "inference", "settings": "workflows",
         "intake": "workflows", "versions": "workflows", "sender": "workflows",
         "node": "workflows"}


def stage(module: str) -> int:
    """The stage of a module of ours: -1 shared, len(STAGES) for entry points and peers."""
    if module in SHARED:
        return -1
    if module.startswith("tf_medseg_datasets"):
        return STAGES.index("data")
    if module in TOP or module.startswith("benchmarks"):
        return len(STAGES)
    if module == "tf_medseg.dicom":  # the folder's map (a docstring)
        return -1
    if module.startswith("tf_medseg.dicom."):
        return STAGES.index(DICOM[module.split(".")[2]])
    return STAGES.index(module.split(".")[1])


def modules() -> dict[str, Path]:
    """{dotted module name: file} of every module of both packages."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _target(name: str, known: dict) -> str | None:
    """The module of ours that importing ``name`` runs (the deepest that exists)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, known: dict) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")
                up = up[:len(up) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] or [base]
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "builders"
              and node.args and isinstance(node.args[0], ast.Constant)):
            names = [f"tf_medseg_datasets.{node.args[0].value}"]
        for name in names:
            target = _target(name, known)
            if target and target != module:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports_of(m, p, known) for m, p in known.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_walk_sees_the_imports_it_should():
    edges = graph()
    assert "tf_medseg.data.records" in edges["tf_medseg.data.dataset"]  # a lazy import counts
    assert "tf_medseg.inference.predictor" in edges["tf_medseg.training.experiment"]
    assert {"tf_medseg_datasets.gi_phantom", "tf_medseg_datasets.nnunet",
            "tf_medseg_datasets.folder"} <= edges["tf_medseg.data.records"]  # by builders()
    assert "tf_medseg_datasets.kaggle_layout" in edges[
        "tf_medseg_datasets.gi_phantom.gi_phantom_dataset_builder"]  # relative
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_itself_through_others():
    assert circles(graph()) == []


def test_imports_go_down_the_stages_only():
    upward = sorted(f"{a} -> {b}" for a, targets in graph().items() for b in targets
                    if stage(b) > stage(a) or (stage(a) == -1 and stage(b) != -1))
    assert upward == []


def test_nothing_imports_the_benchmarks_or_the_alias():
    edges = graph()
    users = sorted(a for a, targets in edges.items() for b in targets
                   if (b.startswith("benchmarks") and not a.startswith("benchmarks"))
                   or b == "tf_medseg.metrics")
    assert users == []


def test_nothing_edits_the_import_path():
    for path in modules().values():
        assert "sys.path" not in path.read_text(), f"{path} edits sys.path"


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in modules().values()
            if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def _tf_functions(tree: ast.AST):
    """The ``tf.function`` of a module: (line, its call or None for a bare decorator)."""
    def is_tf_function(node):
        return (isinstance(node, ast.Attribute) and node.attr == "function"
                and isinstance(node.value, ast.Name) and node.value.id == "tf")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and is_tf_function(node.func):
            yield node.lineno, node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from ((d.lineno, None) for d in node.decorator_list if is_tf_function(d))


def test_every_tf_function_is_made_without_autograph():
    """None of the package's graph functions holds Python control flow on tensors, so none
    pays AutoGraph's conversion (2.4 s of a process's first tiny training,
    docs/measurements.md): a new one says ``autograph=False`` too (a Python ``if`` on a tensor
    then fails loudly when traced, it is never silently converted)."""
    made = [(f"{path.relative_to(ROOT)}:{line}", call) for path in modules().values()
            for line, call in _tf_functions(ast.parse(path.read_text()))]
    assert len(made) >= 10  # the walk sees them
    assert [where for where, call in made
            if call is None or not any(k.arg == "autograph" and isinstance(k.value, ast.Constant)
                                       and k.value.value is False for k in call.keywords)] == []


def test_pyproject_installs_every_package_and_the_configs():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    ours = {m for m, p in modules().items() if p.name == "__init__.py"
            and not m.startswith("benchmarks")}  # the peers are not installed
    assert ours <= listed, f"add {sorted(ours - listed)} to pyproject.toml's packages"
    assert setuptools["package-dir"]["tf_medseg_datasets"] == "datasets"
    assert setuptools["package-dir"]["tf_medseg.configs"] == "configs"
    assert project["project"]["scripts"]["tf-medseg"] == "tf_medseg.cli:main"
    pinned = {re.split(r"[=<>]", line)[0].lower() for line in
              (ROOT / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    def names(requirements):
        return {re.split(r"[=<>~! ]", d)[0].lower() for d in requirements}
    declared = names(project["project"]["dependencies"])
    tests = names(project["project"]["optional-dependencies"]["test"])
    assert tests == {"pytest", "pytest-xdist"}
    assert declared == pinned - tests, "pyproject's dependencies follow requirements.txt"

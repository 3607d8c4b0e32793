"""Layering of the package, read from the source (no imports run): lower layers never import upper ones."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cnnray"


# DESIGN.md's direction of imports: a package imports only packages listed before it (module-level and
# function-local imports alike). `compress` (the plain-PyTorch methods) sits below `classifier`, which rebuilds
# compressed versions from their structure; `compress.job` (candidates, checks, registration) sits above `tune`.
# `train` is the compatibility alias of the loop's old names.
BASE = {"errors", "console", "threads", "name_registry", "ray_compat", "commands", "scores", "__init__"}
ORDER = ["config", "data", "layers", "models", "loop", "compress", "classifier", "tracking", "cluster", "serve",
         "promote", "run", "tune", "compress.job", "replay", "insight", "jobs", "bench", "tutorial", "train", "cli"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes under `if TYPE_CHECKING:` (imports for type hints only; they never run)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    return skip


def _imports(path: Path, *, runtime_only: bool = False) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in a file, at any depth (function-level imports included);
    `from cnnray import tracking` counts as an import of cnnray.tracking. `runtime_only`: without the imports
    made for type hints only."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    out: list[tuple[str, int]] = []
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_nodes(tree) if runtime_only else set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.append((module, node.lineno))
            if module == "cnnray":  # `from cnnray import tracking`; `__version__` is the package root's
                out += [(f"cnnray.{alias.name}", node.lineno) for alias in node.names if not alias.name.startswith("_")]
    return out


def _imported_modules(path: Path) -> set[str]:
    return {m for m, _ in _imports(path)}


def _rank(module: str) -> int | None:
    """Position in ORDER (-1: a base module or the package root; None: not cnnray)."""
    parts = module.split(".")
    if parts[0] != "cnnray":
        return None
    if len(parts) == 1 or parts[1] in BASE:
        return -1
    matches = [i for i, name in enumerate(ORDER) if parts[1:1 + len(name.split("."))] == name.split(".")]
    assert matches, f"{module}: a package DESIGN.md's direction list does not name (add it to ORDER)"
    return max(matches, key=lambda i: len(ORDER[i]))


def _files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_imports_run_one_way():
    """No import against DESIGN.md's direction list; each offence named by file and line."""
    offences = []
    for path in _files():
        mine = _rank(_module_name(path))
        for module, line in _imports(path):
            other = _rank(module)
            if other is not None and other > mine and other != -1:
                offences.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    assert not offences, "imports against the direction of DESIGN.md:\n" + "\n".join(offences)


def test_no_import_cycle_between_files():
    """No two files import each other, directly or through others (function-local imports included): a cycle
    is kept from failing only by import order, and it hides which of the two is the lower one."""
    modules = {_module_name(p): p for p in _files()}

    def target(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {m: {t for name, _ in _imports(p, runtime_only=True) if (t := target(name)) and t != m}
             for m, p in modules.items()}
    # A package's __init__ that only re-exports its own files is no cycle with them: leave those arrows out.
    for m in graph:
        if modules[m].name == "__init__.py":
            graph[m] = {t for t in graph[m] if not t.startswith(m + ".")}
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_rank_scan_sees_imports():
    """The scans are not vacuous: they find known imports, function-local ones included."""
    assert "cnnray.run.outcome" in _imported_modules(PACKAGE / "tune" / "runs.py")
    assert _rank("cnnray.tracking.runs") < _rank("cnnray.serve.batch") < _rank("cnnray.run.training")
    assert _rank("cnnray.compress.prune") < _rank("cnnray.classifier") < _rank("cnnray.compress.job.main")
    local = [m for m, _ in _imports(PACKAGE / "run" / "training.py")]
    assert "cnnray.tracking" in local  # `from cnnray import tracking` inside a function


def test_tracking_imports_nothing_that_decides():
    """MLflow tracking records and reads; it never imports the packages that train, serve, promote or report."""
    above = ("cnnray.serve", "cnnray.promote", "cnnray.run", "cnnray.tune", "cnnray.compress.job", "cnnray.insight",
             "cnnray.train", "cnnray.jobs")
    offenders = {
        str(path.relative_to(PACKAGE.parent)): sorted(m for m in _imported_modules(path) if m.startswith(above))
        for path in sorted((PACKAGE / "tracking").rglob("*.py"))
    }
    assert not {k: v for k, v in offenders.items() if v}, offenders


def test_only_tracking_imports_mlflow():
    offenders = sorted(str(p.relative_to(PACKAGE.parent)) for p in _files()
                       if "tracking" not in p.parts and any(m.split(".")[0] == "mlflow" for m in _imported_modules(p)))
    assert not offenders, offenders


def test_ray_internals_only_through_ray_compat():
    offenders = [f"{p.relative_to(PACKAGE.parent)}:{line} {m}" for p in _files() if p.name != "ray_compat.py"
                 for m, line in _imports(p) if m.split(".")[0] == "ray"
                 and any(part.startswith("_") for part in m.split("."))]
    assert not offenders, offenders


def test_pytest_keeps_deprecation_warnings_visible():
    """Only named library noise is filtered: a deprecation of an API cnnray calls must show in test runs."""
    import tomllib

    ini = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    for f in ini.get("filterwarnings", []):
        action, message, category, module = (f.split(":") + ["", "", ""])[:4]
        if action == "ignore" and category.endswith("DeprecationWarning"):
            assert message or module, f"filterwarnings hides every deprecation: {f!r}"
    assert "-p no:warnings" not in ini.get("addopts", "") and "--disable-warnings" not in ini.get("addopts", "")


def test_compression_is_plain_pytorch():
    """The compression methods import neither Ray nor MLflow (DESIGN.md): a workflow wires them to those."""
    offenders = {
        str(path.relative_to(PACKAGE.parent)): sorted(m for m in _imported_modules(path)
                                                     if m.split(".")[0] in ("ray", "mlflow"))
        for path in sorted((PACKAGE / "compress").rglob("*.py"))
    }
    assert offenders and not {k: v for k, v in offenders.items() if v}, offenders

"""Layering of the package, read from the source (no imports run): lower layers never import upper ones."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cnnray"


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included), as absolute names."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)  # `from cnnray import train`
    return out


def test_tracking_imports_nothing_from_train():
    """MLflow tracking knows nothing of training: the trainer hands it what it registers."""
    offenders = {
        str(path.relative_to(PACKAGE.parent)): sorted(m for m in _imported_modules(path)
                                                     if m == "cnnray.train" or m.startswith("cnnray.train."))
        for path in sorted((PACKAGE / "tracking").rglob("*.py"))
    }
    assert not {k: v for k, v in offenders.items() if v}, offenders


def test_the_scan_sees_imports():
    """The scan is not vacuous: it finds a known import of the training package."""
    assert "cnnray.train.run" in _imported_modules(PACKAGE / "tune" / "runs.py")


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

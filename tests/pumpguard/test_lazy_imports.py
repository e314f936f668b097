"""Package ``__init__`` files re-export lazily, and a missing extra is named.

These run in the development venv, where the server extra is installed, so
an eager import of Flask or SQLAlchemy would succeed and must be caught by
looking at ``sys.modules``. ``test_base_install.py`` proves the same in a
venv without the extras.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from pumpguard.cli import EXTRA_MODULES

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pumpguard", "signer", "update_server", "device_agent", "sbom", "threat_model")
#: The packages that re-export names through :func:`pumpguard.lazy.lazy_exports`.
LAZY_PACKAGES = ("update_server", "signer", "sbom", "threat_model")


def test_importing_a_package_imports_no_server_module() -> None:
    code = (
        "import sys\n"
        f"import {', '.join(PACKAGES)}, pumpguard.cli, update_server.cli\n"
        f"print(sorted({{m.partition('.')[0] for m in sys.modules}} & {set(EXTRA_MODULES)!r}))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert r.stdout.strip() == "[]"


def _type_checking_imports(tree: ast.Module) -> dict[str, str]:
    names: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.module
                names.update({a.name: imp.module for a in imp.names})
    return names


def _lazy_map(tree: ast.Module) -> dict[str, str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "lazy_exports":
            value = ast.literal_eval(node.args[1])
            assert isinstance(value, dict)
            return value
    raise AssertionError("no lazy_exports(...) call")


def _eager_imports(tree: ast.Module) -> set[str]:
    return {
        a.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module not in ("typing", "__future__")
        for a in node.names
    }


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_lazy_exports_agree_with_the_type_checking_imports_and_all(package: str) -> None:
    tree = ast.parse((ROOT / package / "__init__.py").read_text())
    typed, lazy = _type_checking_imports(tree), _lazy_map(tree)
    assert typed == lazy
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted({*lazy, *_eager_imports(tree)})
    for name in module.__all__:
        value = getattr(module, name)
        if name in lazy:
            assert value is getattr(importlib.import_module(lazy[name]), name)
    assert set(module.__all__) <= set(dir(module))
    with pytest.raises(AttributeError):
        _ = module.no_such_name


def test_threat_model_trace_is_the_function_after_its_submodule_loads() -> None:
    import threat_model
    import threat_model.trace  # binds the submodule on the package, were it last

    assert threat_model.trace is not sys.modules["threat_model.trace"]
    assert callable(threat_model.trace)


def _extra_distributions() -> Iterator[str]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    for extra in ("server", "pkcs11"):
        for requirement in extras[extra]:
            yield canonicalize_name(Requirement(requirement).name)


def test_every_extra_dependency_has_its_install_hint() -> None:
    provides: dict[str, set[str]] = {}
    for module, dists in packages_distributions().items():
        for dist in dists:
            provides.setdefault(canonicalize_name(dist), set()).add(module)
    for dist in _extra_distributions():
        assert provides.get(dist, set()) & set(EXTRA_MODULES), f"{dist}: no EXTRA_MODULES entry"

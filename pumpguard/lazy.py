"""Lazy re-exports for package ``__init__`` files (PEP 562).

A component package names its public API in ``__init__`` but imports a
module only when one of its names is first used, so ``import update_server``
does not import Flask and ``import signer`` does not import TUF (DESIGN.md,
Layout: the device agent and the operator's tools install without the server
extra). The package lists the names twice for type checkers, once under
``if TYPE_CHECKING:`` as imports and once in ``__all__``, and once for the
runtime as the mapping given to :func:`lazy_exports`;
``tests/pumpguard/test_base_install.py`` checks that the three agree.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module ``__getattr__`` and ``__dir__`` that import re-exported names on use.

    Args:
        package: The package's ``__name__``.
        exports: Public name -> the module (absolute name) defining it.

    Returns:
        ``(__getattr__, __dir__)`` to assign in the package's ``__init__``.
        The first access to a name imports its module and caches the value
        in the package's namespace; an unknown name raises
        :class:`AttributeError`, so ``from package import submodule`` still
        imports the submodule.
    """
    names = dict(exports)

    def __getattr__(name: str) -> Any:  # noqa: N807 (PEP 562 names it so)
        module_name = names.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module_name), name)
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__() -> list[str]:  # noqa: N807 (PEP 562 names it so)
        return sorted({*vars(importlib.import_module(package)), *names})

    return __getattr__, __dir__

"""Public names that load on first use (PEP 562), for the packages' `__init__` modules.

Importing a package then costs only what its first used name needs: the CLI answers
`--help` and `validate` without importing torch. Lives in `graphs`, the base layer every
package may import; it imports nothing but the standard library.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from importlib import import_module
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, Sequence[str]], namespace: dict[str, Any]
) -> tuple[dict[str, str], Callable[[str], Any], Callable[[], list[str]]]:
    """The name -> module table, and the `__getattr__` and `__dir__` of `package`.

    `exports` maps each private module to the public names it defines; `namespace` is the
    package's `globals()`, where a loaded name is kept so later lookups are plain.
    """
    module_of = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *module_of})

    return module_of, __getattr__, __dir__

"""The import graph of toolkit/ as DESIGN.md draws it, read from the source with ast.

Leaf packages (data, text, features, scoring, nn, losses) may import, from toolkit, only
themselves and toolkit.utils; toolkit.utils imports no other toolkit package.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

TOOLKIT = Path(__file__).resolve().parent.parent / "toolkit"
LEAVES = ("data", "text", "features", "scoring", "nn", "losses")


def module_name(path: Path) -> str:
    parts = path.relative_to(TOOLKIT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def toolkit_imports(source: str, package: str) -> set[str]:
    """Absolute names of the toolkit modules ``source`` imports, anywhere in the file.

    ``package`` is the importing module's package (``toolkit.text``), for relative imports.
    """
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.add(node.module)
    return {name for name in found if name == "toolkit" or name.startswith("toolkit.")}


def imports_of(path: Path) -> set[str]:
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    return toolkit_imports(path.read_text(encoding="utf-8"), package)


def package_of(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def modules_of(package: str) -> list[Path]:
    return sorted((TOOLKIT / package).rglob("*.py"))


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaf_package_imports_only_itself_and_utils(leaf):
    crossing = [f"{module_name(p)} imports {name}" for p in modules_of(leaf)
                for name in sorted(imports_of(p)) if package_of(name) not in (leaf, "utils")]
    assert not crossing, "leaf packages may import only toolkit.utils from toolkit:\n" + "\n".join(crossing)


def test_utils_imports_no_other_toolkit_package():
    crossing = [f"{module_name(p)} imports {name}" for p in modules_of("utils")
                for name in sorted(imports_of(p)) if package_of(name) != "utils"]
    assert not crossing, "\n".join(crossing)


def test_the_check_sees_absolute_relative_and_nested_imports():
    source = ("import os\nfrom toolkit.utils.fileio import InputError\nfrom ..data.datadir import DataDir\n"
              "def f():\n    import toolkit.features.cmvn\n")
    assert {package_of(n) for n in toolkit_imports(source, "toolkit.text")} == {"utils", "data", "features"}

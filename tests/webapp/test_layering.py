"""Imports run one way: a module imports only from its own layer or the layers below it.

Shared code (the catalog's vocabulary, outside systems, the HTTP edge, the embedding pipeline)
never reaches up into a feature, so a feature can change without the layers under it noticing.
Imports inside functions count too: they are how a cycle hides.
"""

from __future__ import annotations

import ast
from pathlib import Path

import webapp

# Lowest first. A package's modules share its layer; features share one layer and may use
# each other (search's query reader serves suggestions too).
LAYERS: list[tuple[str, ...]] = [
    ("webapp.catalog", "webapp.config"),
    ("webapp.observability",),
    ("webapp.adapters",),
    ("webapp.http",),
    ("webapp.embedding",),
    ("webapp.services",),
    ("webapp.items", "webapp.search", "webapp.suggest", "webapp.analytics", "webapp.imports"),
    ("webapp.runtime",),
    ("webapp.app",),
    ("webapp.cli",),
]
ROOT = Path(webapp.__file__).parent


def layer_of(module: str) -> int | None:
    for rank, names in enumerate(LAYERS):
        if any(module == name or module.startswith(name + ".") for name in names):
            return rank
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, module: str) -> list[tuple[int, str]]:
    """Every webapp module ``path`` imports, anywhere in it, with the line."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # "from webapp import cli" imports webapp.cli.
            names = [f"{base}.{alias.name}" for alias in node.names] if base == "webapp" else [base]
            found += [(node.lineno, name) for name in names]
    return [(line, name) for line, name in found if name.startswith("webapp.")]


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(
        name for path in ROOT.rglob("*.py") if layer_of(name := module_name(path)) is None and name != "webapp"
    )
    assert not unplaced, f"add these to LAYERS: {unplaced}"


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        module = module_name(path)
        own = layer_of(module)
        if own is None:
            continue
        for line, target in imported(path, module):
            rank = layer_of(target)
            if rank is not None and rank > own:
                upward.append(f"{path.relative_to(ROOT.parent)}:{line} {module} imports {target}")
    assert not upward, "imports running up the layers:\n" + "\n".join(upward)

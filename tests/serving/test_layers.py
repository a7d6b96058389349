"""The layers of serving/, read from the imports of every module (no module is run).

The request path (api, backends, preprocessing, app.py and the shared top-level modules)
never imports the process runtime, so the app runs the same under any server; the
runtime sits on top and starts it.
"""

import ast
from pathlib import Path

import pytest

from tests.utils.environment import REPO_ROOT

SERVING = REPO_ROOT / "serving"
LAYERS = ("api", "backends", "preprocessing", "runtime")  # the sub-packages
SHARED = "shared"  # stands for every top-level module but app.py and __main__.py

# What each part of serving/ may import from serving/, besides itself. A part is a
# layer, app.py (which assembles the app from the layers), __main__.py (the entry point,
# which starts the runtime), or any other top-level module (one rule for all of them).
MAY_IMPORT: dict[str, set[str]] = {
    "runtime": {"app", "settings", "preprocessing"},
    "api": {"backends", "preprocessing", SHARED},
    "backends": {SHARED},
    "preprocessing": {SHARED},
    "app": {"api", "backends", "preprocessing", SHARED},
    "__main__": {"runtime"},
    SHARED: {SHARED},
}


def part_of(module: str) -> str:
    """ "serving.api.routes.predict" -> "api"; "serving.errors" -> "errors"."""
    parts = module.split(".")
    assert parts[0] == "serving", module
    if len(parts) == 1 or parts[1] == "__init__":
        return "__init__"
    assert parts[1] in LAYERS or not (SERVING / parts[1]).is_dir(), (
        f"serving/{parts[1]}/ is a package with no rule in MAY_IMPORT"
    )
    return parts[1]


def rule_for(part: str) -> str:
    return part if part in MAY_IMPORT else SHARED


def may_import(importer: str, imported: str) -> bool:
    if imported == importer or imported == "__init__":
        return True
    allowed = MAY_IMPORT[rule_for(importer)]
    return imported in allowed or (rule_for(imported) == SHARED and SHARED in allowed)


def module_name(path: Path) -> str:
    relative = path.relative_to(REPO_ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """The serving modules `source` imports, at the top or inside a function: for
    `from X import Y`, X.Y where that is a module, else X."""
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = node.module
            if node.level:
                base = package.rsplit(".", node.level - 1)[0]
                target = f"{base}.{node.module}" if node.module else base
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.add(submodule if _exists(submodule) else target)
    return {name for name in found if name == "serving" or name.startswith("serving.")}


def _exists(module: str) -> bool:
    path = REPO_ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    importer = part_of(module)
    return sorted(
        f"{module} ({importer}) imports {imported} ({part_of(imported)})"
        for imported in imported_modules(source, module, is_package)
        if not may_import(importer, part_of(imported))
    )


MODULES = sorted(p for p in SERVING.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_layer_has_a_rule():
    packages = {p.name for p in SERVING.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(LAYERS)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SERVING)))
def test_module_imports_only_what_its_layer_may(path):
    module = module_name(path)
    assert violations(path.read_text(), module, path.name == "__init__.py") == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        (
            "serving.api.routes.predict",
            "def f():\n    from serving.runtime import launcher\n",
            ["serving.api.routes.predict (api) imports serving.runtime.launcher (runtime)"],
        ),
        (
            "serving.backends.batching",
            "from serving.api.deps import BackendDep\n",
            ["serving.backends.batching (backends) imports serving.api.deps (api)"],
        ),
        (
            "serving.preprocessing.decode",
            "from ..runtime import nodelay\n",
            [
                "serving.preprocessing.decode (preprocessing) imports "
                "serving.runtime.nodelay (runtime)"
            ],
        ),
        (
            "serving.observability",
            "from serving import preprocessing\n",
            ["serving.observability (observability) imports serving.preprocessing (preprocessing)"],
        ),
        (
            "serving.runtime.launcher",
            "import serving.errors\n",
            ["serving.runtime.launcher (runtime) imports serving.errors (errors)"],
        ),
        ("serving.app", "from serving.api.routes import health\n", []),
        ("serving.runtime.worker", "from serving.app import create_app\n", []),
    ],
)
def test_the_rules_catch_a_wrong_import(module, source, expected):
    assert violations(source, module) == expected

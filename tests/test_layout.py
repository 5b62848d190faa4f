"""The tree is the architecture: imports flow one way between the layers (http -> jobs -> run
-> store -> the shared modules; the client beside them, over HTTP only), no module imports
itself round a cycle, and each package says what lives in it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conftest import REPO_ROOT

pytestmark = pytest.mark.source_only

PACKAGE = REPO_ROOT / "jobd"
#: Each layer may import those below it and itself; "client" only the shared layer; the
#: worker (jobd worker) sits beside jobs (the central's), and neither imports the other.
LAYERS = {"shared": 0, "store": 1, "run": 2, "jobs": 3, "worker": 3, "http": 4, "entry": 5}
SHARED = {
    "jobd",
    "errors",
    "models",
    "logs",
    "loop",
    "metrics",
    "frozen",
    "sysfiles",
    "config",
    "formats",
}
ENTRY = {"__main__", "cli", "server"}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    top = module.split(".")[1] if "." in module else "jobd"
    if top in SHARED:
        return "shared"
    if top in ENTRY:
        return "entry"
    return top


def imports(path: Path) -> set[str]:
    """Every jobd module `path` imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jobd"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                known = (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py")
                package = PACKAGE.parent / candidate.replace(".", "/") / "__init__.py"
                found.add(candidate if known.exists() or package.exists() else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("jobd")}
    return found


GRAPH = {module_name(path): imports(path) for path in PACKAGE.rglob("*.py")}


def test_imports_flow_down_the_layers() -> None:
    upward = []
    for module, targets in GRAPH.items():
        here = layer(module)
        for target in targets:
            there = layer(target)
            if here == "client" or there == "client":
                allowed = there in ("shared", "client") or here == "entry"
            else:
                allowed = LAYERS[there] < LAYERS[here] or there == here  # siblings: apart
            if not allowed:
                upward.append(f"{module} ({here}) imports {target} ({there})")
    assert not upward, "\n".join(upward)


def test_no_module_imports_itself_round_a_cycle() -> None:
    done: set[str] = set()

    def visit(module: str, trail: tuple[str, ...]) -> None:
        if module in trail:
            cycle = (*trail[trail.index(module) :], module)
            raise AssertionError(" -> ".join(cycle))
        if module in done:
            return
        for target in GRAPH.get(module, ()):
            if target != "jobd" and not module.startswith(target + "."):
                visit(target, (*trail, module))
        done.add(module)

    for module in GRAPH:
        visit(module, ())


def test_each_package_says_what_lives_there_and_what_it_may_import() -> None:
    for init in PACKAGE.rglob("__init__.py"):
        if init.parent == PACKAGE:
            continue
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "import" in doc.lower(), f"{init.relative_to(REPO_ROOT)} does not say it"


def test_nothing_imports_what_the_binary_leaves_out() -> None:
    """build.spec's `excludes` keep the binary small; a module that imports one of them works
    from the source and fails in the binary (as `jobd worker` once did with requests)."""
    spec = (REPO_ROOT / "build.spec").read_text()
    listed = spec[spec.index("excludes=[") : spec.index("]", spec.index("excludes=["))]
    left_out = {name for name in re.findall(r'"([A-Za-z_][\w.]*)"', listed)}
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                if name in left_out or name.split(".")[0] in left_out:
                    found.append(f"{module_name(path)} imports {name}")
    assert not found, "\n".join(found)

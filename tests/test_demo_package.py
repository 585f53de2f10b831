"""The demo is its own package beside the library: ``vop`` never imports ``vop_demo`` (only the
``vop demo`` command does, inside its ``run``), and the demo's package has no import cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

IMPORT_EVERYTHING = """
import importlib, pkgutil, sys
import vop
assert not [m for m in sys.modules if m.split('.')[0] == 'vop_demo'], 'import vop'
failed = {}
names = [m.name for m in pkgutil.walk_packages(vop.__path__, 'vop.') if m.name != 'vop.__main__']
for name in names:
    try:
        importlib.import_module(name)
    except ImportError as err:  # an optional extra that is not installed: the check still runs
        failed[name] = str(err)
from vop.cli import build_parser
build_parser()
leaked = sorted(m for m in sys.modules if m.split('.')[0] == 'vop_demo')
print(len(names), len(failed), leaked)
assert not leaked, leaked
assert len(failed) < len(names) / 4, failed
"""


def test_importing_vop_and_every_vop_module_never_imports_vop_demo():
    done = subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    count, _failed, leaked = done.stdout.split(maxsplit=2)
    assert int(count) > 40 and leaked.strip() == "[]"


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at top level) of every import in ``path``."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, id(node) in top))
    return out


def test_only_the_demo_command_names_vop_demo_and_only_inside_a_function():
    users = {}
    for path in (SRC / "vop").rglob("*.py"):
        mine = [(m, top) for m, top in _imports(path) if m.split(".")[0] == "vop_demo"]
        if mine:
            users[path.relative_to(SRC).as_posix()] = mine
    assert set(users) == {"vop/cli/demo_cmd.py"}, users
    assert not any(top for _, top in users["vop/cli/demo_cmd.py"])


def test_the_demo_package_has_no_import_cycle():
    """Module-level imports between ``vop_demo`` modules form no cycle (claims <-> run was one)."""
    graph = {}
    for path in (SRC / "vop_demo").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        graph[name] = {m for m, top in _imports(path) if top and m.split(".")[0] == "vop_demo" and m != name}
    graph = {k: {m for m in v if m in graph} for k, v in graph.items()}
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph[node]:
            assert state.get(nxt) != "open", " -> ".join([*stack, node, nxt])
            if nxt not in state:
                visit(nxt, [*stack, node])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [])
    assert {"vop_demo.world.spec", "vop_demo.claims", "vop_demo.runs", "vop_demo.pipeline"} <= set(graph)

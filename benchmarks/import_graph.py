"""The package's import graph in figures: how deep it is and where it runs back up.

    python -m benchmarks.import_graph [--src DIR ...]

For each package source (default: this checkout; pass an older ``git worktree`` too to
compare), reads every ``recbole_hllm`` module's imports of other ``recbole_hllm``
modules with ``ast`` (nothing is imported or run) and prints:

* top-level modules: ``.py`` files directly in ``recbole_hllm/`` (``__init__`` and
  ``__main__`` not counted);
* module depth: the longest chain of module-level imports, in modules (cycles are
  collapsed to one node first);
* module cycles: groups of modules that import each other at module level;
* folder edges and upward imports: the same graph between the package's rooms (a
  sub-package, or a top-level module on its own); an upward import is a folder edge
  inside a cycle of rooms, i.e. one that a layered order cannot have (counted over
  module-level imports, and again with the function-level ones);
* the rooms that ``import recbole_hllm`` plus registering the models reaches (what the
  RecBole integration pulls in), counted over module-level imports from the models, the
  trainers and the datasets.

Function-level (lazy) imports are listed separately: they do not load at import time.
"""
from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "recbole_hllm"


def modules(src: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package in ``src``."""
    found = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> tuple[set[str], set[str]]:
    """(module-level, function-level) package modules that ``name`` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top, lazy = set(), set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def targets(node) -> set[str]:
        if isinstance(node, ast.Import):
            return {a.name for a in node.names}
        base = node.module or ""
        if node.level:
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
        # ``from pkg import sub`` imports the submodule; ``from mod import name`` the module
        return {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}

    def visit(node, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for target in targets(child):
                    while target and target not in known:
                        target = target.rpartition(".")[0]
                    if target and target != name and target != PACKAGE:
                        (lazy if nested else top).add(target)
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                continue
            visit(child, inner)

    visit(tree, False)
    return top, lazy - top


def _is_type_checking(test) -> bool:
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"


def room(module: str) -> str:
    """The sub-package a module lives in, or the module itself at the top."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components (iterative)."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]

    def connect(start):
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                out.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return out


def longest_chain(graph: dict[str, set[str]]) -> int:
    """Nodes on the longest path of ``graph`` after collapsing each cycle to one node."""
    components = strongly_connected(graph)
    owner = {node: i for i, comp in enumerate(components) for node in comp}
    dag = {i: {owner[t] for n in comp for t in graph[n]} - {i} for i, comp in enumerate(components)}
    depth = {}
    for i in range(len(components)):  # Tarjan emits components in reverse topological order
        depth[i] = 1 + max((depth[j] for j in dag[i]), default=0)
    return max(depth.values(), default=0)


def reached(graph: dict[str, set[str]], starts: list[str]) -> set[str]:
    seen, todo = set(), [s for s in starts if s in graph]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo += graph[node]
    return seen


def figures(src: Path) -> dict:
    found = modules(src)
    known = set(found)
    top, lazy = {}, {}
    for name, path in found.items():
        top[name], lazy[name] = imports(name, path, known)
    cycles = [sorted(c) for c in strongly_connected(top) if len(c) > 1]
    every = {name: top[name] | lazy[name] for name in found}
    all_cycles = [sorted(c) for c in strongly_connected(every) if len(c) > 1]
    room_graph, upward = _rooms(found, top)
    _, upward_any = _rooms(found, every)
    entry = [m for m in found if m.endswith((".hllm", ".hllm_creator", ".trainer", ".dataset", ".creative_dataset"))]
    pulled = sorted({room(m) for m in reached(top, entry)})
    return {
        "module_cycles_with_lazy": all_cycles, "upward_imports_with_lazy": upward_any,
        "top_level_modules": sorted(m for m in found if m.count(".") == 1 and not found[m].name.startswith("__")
                                    and found[m].parent.name == PACKAGE),
        "modules": len(found), "module_depth": longest_chain(top), "module_cycles": cycles,
        "folder_edges": sum(len(t) for t in room_graph.values()), "upward_imports": upward,
        "folder_depth": longest_chain(room_graph), "models_pull_in": pulled,
        "lazy_imports": sum(len(v) for v in lazy.values()),
    }


def _rooms(found: dict, graph: dict) -> tuple[dict, list[str]]:
    """The graph between rooms, and its upward imports (room edges inside a room cycle)."""
    rooms = {room(m) for m in found if m != PACKAGE} | {"__init__"}
    room_graph = {r: set() for r in rooms}
    for name, targets in graph.items():
        for target in targets:
            if room(name) != room(target):
                room_graph[room(name)].add(room(target))
    room_cycles = [c for c in strongly_connected(room_graph) if len(c) > 1]
    return room_graph, sorted(f"{a} -> {b}" for c in room_cycles for a in c for b in room_graph[a] if b in c)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--src", action="append", help="a package source (repeat to compare); default: this checkout")
    args = p.parse_args(argv)
    for src in [Path(s).resolve() for s in (args.src or [str(ROOT)])]:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=src).stdout.strip() or src.name
        f = figures(src)
        print(f"{commit} ({src}):")
        print(f"  top-level modules: {len(f['top_level_modules'])} ({', '.join(f['top_level_modules'])})")
        print(f"  modules: {f['modules']}, module depth: {f['module_depth']}, "
              f"module cycles: {len(f['module_cycles'])} {f['module_cycles'] or ''}")
        print(f"  folder edges: {f['folder_edges']}, folder depth: {f['folder_depth']}, "
              f"upward imports: {len(f['upward_imports'])} {f['upward_imports'] or ''}")
        print(f"  models, trainers and datasets pull in: {', '.join(f['models_pull_in'])}")
        print(f"  function-level (lazy) imports: {f['lazy_imports']}; with them, module cycles: "
              f"{len(f['module_cycles_with_lazy'])} {f['module_cycles_with_lazy'] or ''}, upward imports: "
              f"{len(f['upward_imports_with_lazy'])} {f['upward_imports_with_lazy'] or ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

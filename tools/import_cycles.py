"""Print the import cycles between edgerun's modules, read from the source with ``ast``.

Every ``import`` counts, also one inside a function (a lazy import is still a dependency: the
layer above may not be needed to read the layer below); only those under ``if TYPE_CHECKING:``
(annotations, never run) do not. A cycle is a strongly connected group of
two or more modules; each is printed with one path around it.

    python tools/import_cycles.py            # module level
    python tools/import_cycles.py --packages # edgerun.engines.onnx counts as edgerun.engines, ...

Exit status 1 when there is a cycle, 0 when there is none. tests/test_layers.py checks the rules
the package diagram in docs promises (formats below artifact and engines, artifact not above engines)
and that no circle but its few known ones (KNOWN_CYCLES there) comes back.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "edgerun"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path = ROOT) -> set[str]:
    """The edgerun modules ``path`` imports (``from edgerun.x import y`` counts as edgerun.x.y when that
    is a module, else edgerun.x)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    type_only = {  # `if TYPE_CHECKING:` blocks: annotations, never run
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m == "edgerun" or m.startswith("edgerun.")}


def graph(root: Path = ROOT, packages: bool = False) -> dict[str, set[str]]:
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    edges: dict[str, set[str]] = {}
    for name, path in files.items():
        targets = {m for m in imports_of(path, root) if m in files and m != name}
        edges[name] = targets
    if packages:

        def pkg(m: str) -> str:
            return ".".join(m.split(".")[:2])

        merged: dict[str, set[str]] = {}
        for a, bs in edges.items():
            merged.setdefault(pkg(a), set()).update(pkg(b) for b in bs if pkg(b) != pkg(a))
        edges = merged
    # `import edgerun.x` also runs edgerun/__init__.py, whose names resolve lazily: not an edge back
    return {a: {b for b in bs if b != "edgerun"} for a, bs in edges.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of two or more nodes (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(out)


def path_around(edges: dict[str, set[str]], group: list[str]) -> list[str]:
    """One cycle through the group's first module (breadth-first back to it)."""
    start, members = group[0], set(group)
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges.get(v, ())):
                if w == start:
                    route = [v]
                    while route[-1] != start:
                        route.append(prev[route[-1]])
                    return [start, *reversed(route[:-1]), start] if len(route) > 1 else [start, v, start]
                if w in members and w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return group


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", action="store_true", help="merge each subpackage into one node")
    args = parser.parse_args(argv)
    edges = graph(packages=args.packages)
    found = cycles(edges)
    for group in found:
        print(f"{len(group)} modules: " + " -> ".join(path_around(edges, group)))
    print(f"{len(found)} cycle(s) among {len(edges)} {'packages' if args.packages else 'modules'}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

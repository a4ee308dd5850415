"""The layers hold: model-file readers (edgerun.formats) sit below both artifact and the engines,
no import circle comes back but the known ones (KNOWN_CYCLES), and the CLI (edgerun.cli) is the
top layer: nothing imports it, and only it prints for people or ends the process.

Read from the source (tools/import_cycles.py), so a lazy import inside a function counts too: a
reader that needs an engine, or an artifact that needs one to describe a file, is a circle again.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent.parent / "tools"
_spec = importlib.util.spec_from_file_location("import_cycles", TOOLS / "import_cycles.py")
assert _spec is not None and _spec.loader is not None
import_cycles = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(import_cycles)

EDGES = import_cycles.graph()
PACKAGE_EDGES = import_cycles.graph(packages=True)  # edgerun.engines.onnx counts as edgerun.engines, ...

# what the readers may use: the error tree, each other, and the shared size limits (constants only)
FORMATS_MAY_IMPORT = ("edgerun.errors", "edgerun.formats", "edgerun.formats.limits")


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_formats_import_only_errors_limits_and_each_other() -> None:
    readers = [m for m in EDGES if _under(m, "edgerun.formats")]
    assert {"edgerun.formats.onnx", "edgerun.formats.tflite", "edgerun.formats.pte"} <= set(readers)
    bad = {m: sorted(t for t in EDGES[m] if not any(_under(t, ok) for ok in FORMATS_MAY_IMPORT)) for m in readers}
    assert not any(bad.values()), f"edgerun.formats imports a higher layer: { {k: v for k, v in bad.items() if v} }"


def test_artifact_does_not_import_the_engines() -> None:
    assert not {t for t in EDGES["edgerun.artifact"] if _under(t, "edgerun.engines")}


def test_no_circle_through_artifact_and_the_engines() -> None:
    for group in import_cycles.cycles(PACKAGE_EDGES):
        assert not {"edgerun.artifact", "edgerun.engines"} <= set(group), group


# The import circles still allowed, each a group of modules that import each other: none now (the
# lab's four of issue 11 §7 ended). Add none here: move the shared piece down instead.
KNOWN_CYCLES: tuple[set[str], ...] = ()


def test_no_import_circle_but_the_known_ones() -> None:
    """Every module-level circle (lazy imports included) is one of KNOWN_CYCLES or part of one."""
    new = [group for group in import_cycles.cycles(EDGES) if not any(set(group) <= known for known in KNOWN_CYCLES)]
    paths = [" -> ".join(import_cycles.path_around(EDGES, group)) for group in new]
    assert not new, f"new import circle(s), see python tools/import_cycles.py: {paths}"


# The same between packages (each subpackage one node): none now. The last two of issue 11 §7
# ended by moving the shared piece: the reference server, which loads models through the runtime
# (which opens the fallback router), is edgerun.serve above both; a serial link's labgrid:// port
# and the lab's places share edgerun.targets.labgrid_*, below both. Add none here.
KNOWN_PACKAGE_CYCLES: tuple[set[str], ...] = ()


def test_no_circle_between_packages_but_the_known_ones() -> None:
    new = [g for g in import_cycles.cycles(PACKAGE_EDGES) if not any(set(g) <= k for k in KNOWN_PACKAGE_CYCLES)]
    paths = [" -> ".join(import_cycles.path_around(PACKAGE_EDGES, group)) for group in new]
    assert not new, f"new import circle(s) between packages, see python tools/import_cycles.py --packages: {paths}"


def test_only_the_cli_imports_the_reference_server() -> None:
    """edgerun.serve sits above the runtime and the fallback client: the library never loads it."""
    up = {m: sorted(t for t in EDGES[m] if _under(t, "edgerun.serve")) for m in EDGES
          if not _under(m, "edgerun.serve") and not _under(m, "edgerun.cli")}  # fmt: skip
    assert not any(up.values()), {m: v for m, v in up.items() if v}
    assert "edgerun.serve.server" in EDGES["edgerun.cli.serve"]


def test_the_cycle_finder_finds_a_lazy_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "edgerun"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from edgerun import b\n")
    (pkg / "b.py").write_text("def f():\n    from edgerun.a import x\n")  # lazy: still a dependency
    (pkg / "c.py").write_text("import edgerun.a\n")
    assert import_cycles.cycles(import_cycles.graph(pkg)) == [["edgerun.a", "edgerun.b"]]


def test_reading_a_model_does_not_import_an_engine_module() -> None:
    code = (
        "import sys; from pathlib import Path; from edgerun.artifact import inspect_model; from edgerun.demo import "
        "DEMO_DIR\nfor n in ('digits-fp32.onnx', 'digits-int8.tflite'): inspect_model(DEMO_DIR / n)\n"
        "print(sorted(m for m in sys.modules if m.startswith('edgerun.engines')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_nothing_below_the_cli_imports_it() -> None:
    """edgerun.cli is the top layer: the library never reaches up into a command module."""
    up = {m: sorted(t for t in EDGES[m] if _under(t, "edgerun.cli")) for m in EDGES if not _under(m, "edgerun.cli")}
    assert not any(up.values()), {m: v for m, v in up.items() if v}


# (path under edgerun/, function) -> why it prints or exits outside the CLI: each is a process of
# its own talking to its parent, or a sink the caller chose, never a message for a person.
PRINTS_OUTSIDE_THE_CLI = {
    ("doctor.py", "_probe_main"): "the engine probe child (python -m edgerun.doctor) answers its parent",
    ("fallback/audit.py", "__call__"): "StreamAudit writes JSON lines to the stream its caller gave",
    ("bench/worker.py", "watch"): "the benchmark worker child ends itself (os._exit) once its parent is gone",
}


def _calls(node: ast.AST, function: str, skip: set[int]) -> list[tuple[str, str, int]]:
    """(callee, enclosing function, line) of every call below ``node`` that is not in ``skip``."""
    out = []
    for child in ast.iter_child_nodes(node):
        inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
        if isinstance(child, ast.Call) and id(child) not in skip:
            f = child.func  # print / exit, or sys.exit / os._exit: a name, or one attribute of a name
            name = f.id if isinstance(f, ast.Name) else ""
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                name = f"{f.value.id}.{f.attr}"
            out.append((name, function, child.lineno))
        out += _calls(child, inner, skip)
    return out


def _prints_and_exits(root: Path) -> set[tuple[str, str, int]]:
    """(path, enclosing function or "", line) of each print() / sys.exit() / exit() call outside
    edgerun/cli/ and outside ``if __name__ == "__main__":`` blocks (a module run as its own process)."""
    found = set()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("cli/"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        main_blocks = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)
            for inner in ast.walk(node)
        }
        for name, function, line in _calls(tree, "", main_blocks):
            if name in ("print", "sys.exit", "exit", "os._exit"):
                found.add((rel, function, line))
    return found


def test_only_the_cli_prints_for_people_or_exits() -> None:
    found = _prints_and_exits(import_cycles.ROOT)
    bad = sorted(f"edgerun/{rel}:{line} (in {fn or 'module'})" for rel, fn, line in found
                 if (rel, fn) not in PRINTS_OUTSIDE_THE_CLI)  # fmt: skip
    assert not bad, "print()/sys.exit() outside edgerun/cli/ (return the text, raise an edgerun error): " + str(bad)
    assert {(rel, fn) for rel, fn, _ in found} >= set(PRINTS_OUTSIDE_THE_CLI), "an allowance is no longer used"


def test_the_print_scan_sees_a_print(tmp_path: Path) -> None:
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "x.py").write_text("print('for people')\n")  # the CLI may
    (tmp_path / "lib.py").write_text(
        "import sys\ndef f():\n    print('hi')\n    sys.exit(1)\nif __name__ == '__main__':\n    print('child')\n"
    )
    assert _prints_and_exits(tmp_path) == {("lib.py", "f", 3), ("lib.py", "f", 4)}

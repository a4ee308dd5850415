"""The library raises only the ``edgerun.errors`` tree (its docstring's promise), checked on the source.

Every ``raise`` in edgerun/ is read with ``ast``: one that names a builtin exception class
(``raise ValueError(...)``, ``raise asyncio.TimeoutError``) fails this test unless a Python
protocol asks for it (the list below, each with its reason). So does ``error=ValueError`` given
to a helper that raises the class it is handed (``_jsonio.read_json``).
"""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import edgerun

PACKAGE = Path(edgerun.__file__).parent
BUILTIN_ERRORS = {
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException) and name not in ("Warning",)
    and not issubclass(value, Warning)
}  # fmt: skip

# (path relative to edgerun/, exception) -> why a builtin is right there. Keep it short.
ALLOWED = {
    ("fallback/oip.py", "TypeError"): "json.dumps calls its default= hook and expects TypeError for an unknown type",
    ("fallback/client.py", "TimeoutError"): "joins asyncio.wait_for's own timeout; translated to RemoteUnavailable "
    "or DeadlineExceeded in the same module before it leaves the client",
    ("lab/scheduler.py", "SystemExit"): "a SIGTERM handler ends the main thread the way the interpreter does",
}


def _allowed_by_protocol(rel: str, exc: str, function: str | None) -> bool:
    if exc == "NotImplementedError":  # an abstract method of a base class
        return True
    if exc == "AttributeError" and function == "__getattr__":  # a module's or class's lazy attributes
        return True
    if exc == "KeyError" and function == "__getitem__":  # the mapping protocol
        return True
    # pydantic validators must raise ValueError (it becomes their ValidationError, which the schema
    # layer translates into the caller's EdgerunError with the field's location)
    return exc == "ValueError" and rel.startswith("schema/")


def _name(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):  # asyncio.TimeoutError, builtins.ValueError
        return node.attr
    return None


def _enclosing_functions(tree: ast.AST) -> dict[ast.AST, str]:
    """Each node -> the name of the innermost function around it."""
    around: dict[ast.AST, str] = {}

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if function is not None:
                around[child] = function
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            visit(child, inner)

    visit(tree, None)
    return around


def offending_raises(root: Path = PACKAGE) -> list[str]:
    """``path:line: Name`` for every builtin exception edgerun raises (or hands to a raising helper)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        functions = _enclosing_functions(tree)
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Raise):
                names.append(_name(node.exc))
            elif isinstance(node, ast.keyword) and node.arg == "error":
                names.append(_name(node.value))
            for name in names:
                if name not in BUILTIN_ERRORS:
                    continue
                if (rel, name) in ALLOWED or _allowed_by_protocol(rel, name, functions.get(node)):
                    continue
                found.append(f"edgerun/{rel}:{node.lineno}: {name}")
    return found


def test_the_library_raises_only_the_errors_tree() -> None:
    found = offending_raises()
    assert not found, (
        "builtin exceptions raised by edgerun (raise the edgerun.errors class that says what went wrong: "
        "UsageError for a bad argument or setting, MeasurementError for data that cannot give a figure, "
        "FormatError for a model file's bytes, ...):\n" + "\n".join(found)
    )


def test_the_scan_sees_a_builtin_raise(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(
        "import asyncio\n"
        "def f(x):\n    raise ValueError(x)\n"
        "def g():\n    raise asyncio.TimeoutError\n"
        "def h(p):\n    return read_json(p, error=KeyError)\n"
        "def __getattr__(name):\n    raise AttributeError(name)\n"  # allowed: module __getattr__
        "def i():\n    raise NotImplementedError\n"  # allowed: abstract
        "def j(exc):\n    raise exc\n"  # a re-raise: not a class name
    )
    assert offending_raises(tmp_path) == ["edgerun/bad.py:3: ValueError", "edgerun/bad.py:5: TimeoutError",
                                          "edgerun/bad.py:7: KeyError"]  # fmt: skip


def test_every_allowance_is_still_used() -> None:
    """An allowance whose raise is gone is removed, so the list stays the list of real exceptions."""
    used = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and (rel, _name(node.exc)) in ALLOWED:
                used.add((rel, _name(node.exc)))
    assert used == set(ALLOWED), f"unused allowances: {sorted(set(ALLOWED) - used)}"

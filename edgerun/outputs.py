"""Files that commands write for the user: checked before any work, written atomically.

The rule every command follows (issue 11): an output never replaces one of the command's
inputs or a database, and never replaces any other existing file unless the user passed
``--force``. Paths are checked with :func:`check_output` before anything is measured, so
a wrong path costs a second, not a benchmark; the file is then written by
:func:`write_atomic`: a temporary file in the same folder, fsync'd and renamed into place,
so a crash or a full disk leaves the old file or nothing, never half a file.

Character devices and FIFOs (``/dev/null``, ``/dev/stdout``, a named pipe) hold nothing to
lose: they are accepted without ``--force`` and written in place, never renamed over.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from edgerun.errors import OutputError

__all__ = ["check_folder", "check_output", "check_outputs", "input_files", "open_atomic", "write_atomic"]

_SQLITE_MAGIC = b"SQLite format 3\x00"


def _same(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def _is_stream(path: Path) -> bool:
    """A character device or FIFO: written in place, nothing in it to lose."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def _is_database(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC
    except OSError:
        return False


def input_files(paths: Iterable[str | os.PathLike[str] | None]) -> list[Path]:
    """The existing files behind a command's inputs: each path, its ``.edgerun.json`` manifest, a folder's files.

    Names that are no file (a profile name such as ``raspberry-pi-5``) are left out: nothing to overwrite.
    """
    found: list[Path] = []
    for p in paths:
        if not p:
            continue
        path = Path(p)
        found += [f for f in (path, Path(f"{path}.edgerun.json")) if f.is_file()]
        if path.is_dir():
            with contextlib.suppress(OSError):
                found += [child for child in path.iterdir() if child.is_file()]
    return found


def check_output(
    path: str | os.PathLike[str], *, inputs: Iterable[str | os.PathLike[str]] = (), force: bool = False
) -> Path:
    """Raise OutputError unless ``path`` can be written as a new (or, with ``force``, replaced) file."""
    out = Path(path)
    for inp in inputs:
        if _same(out, Path(inp)):
            raise OutputError(f"refusing to write {out}: it is an input of this command ({inp}); pick another path")
    if out.is_dir():
        raise OutputError(f"cannot write {out}: it is a folder; name a file in it")
    if _is_stream(out):
        return out
    target = Path(os.path.realpath(out))  # a symlink is followed: its target is what gets replaced
    folder = target.parent
    if not folder.is_dir():
        raise OutputError(f"cannot write {out}: folder {folder} does not exist; create it or pick another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {out}: folder {folder} is not writable; pick another path")
    if _is_database(target):
        raise OutputError(
            f"refusing to write {out}: it is a database (--force does not replace one); pick another path"
        )
    if os.path.lexists(target) and not force:
        raise OutputError(f"refusing to write {out}: it exists; pass --force to replace it or pick another path")
    return out


def check_outputs(
    paths: Iterable[str | os.PathLike[str] | None],
    *,
    inputs: Iterable[str | os.PathLike[str]] = (),
    force: bool = False,
) -> list[Path]:
    """:func:`check_output` for each path (``None`` and ``-`` for stdout skipped), and no two the same file."""
    inputs = list(inputs)
    checked: list[Path] = []
    for p in paths:
        if p is None or str(p) == "-":
            continue
        out = check_output(p, inputs=inputs, force=force)
        for earlier in checked:
            if _same(out, earlier) and not _is_stream(out):
                raise OutputError(f"refusing to write {out} twice: two outputs name the same file; pick another path")
        checked.append(out)
    return checked


def check_folder(path: str | os.PathLike[str], *, inputs: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Raise OutputError unless ``path`` is a folder, or can be made one (its nearest existing parent is writable)."""
    out = Path(path)
    for inp in inputs:
        if _same(out, Path(inp)):
            raise OutputError(f"refusing to write into {out}: it is an input of this command; pick another folder")
    if out.is_dir():
        if not os.access(out, os.W_OK | os.X_OK):
            raise OutputError(f"cannot write into {out}: the folder is not writable; pick another folder")
        return out
    if os.path.lexists(out):
        raise OutputError(f"cannot write into {out}: it is a file, not a folder; pick another path")
    parent = Path(os.path.realpath(out)).parent
    while not os.path.lexists(parent):
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot create folder {out}: {parent} is a file; pick another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot create folder {out}: {parent} is not writable; pick another path")
    return out


@contextlib.contextmanager
def open_atomic(path: str | os.PathLike[str], *, force: bool = False, binary: bool = False) -> Iterator[IO]:
    """Write ``path`` through a temporary file in its folder, fsync'd and renamed into place on success.

    Without ``force`` the rename will not replace a file that appeared since the check (hard link,
    which fails if the name is taken); on an error the temporary file is removed, the old file kept.
    """
    out = Path(path)
    if _is_stream(out):  # /dev/null, a FIFO: renaming over it would replace the device node
        with open(out, "wb" if binary else "w", encoding=None if binary else "utf-8") as fh:
            yield fh
        return
    target = Path(os.path.realpath(out))
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        _keep_mode(tmp, target)
        _install(Path(tmp), target, force)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(target.parent)


def write_atomic(path: str | os.PathLike[str], data: str | bytes, *, force: bool = False) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; see :func:`open_atomic`."""
    with open_atomic(path, force=force, binary=isinstance(data, bytes)) as fh:
        fh.write(data)


def _keep_mode(tmp: str, target: Path) -> None:
    """mkstemp makes 0600 files: give the result the mode a plain open() would, or the replaced file's."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(tmp, mode)


def _install(tmp: Path, target: Path, force: bool) -> None:
    if force:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # atomic and never replaces: a file made since the check is kept
    except FileExistsError:
        raise OutputError(f"refusing to write {target}: it appeared meanwhile; pass --force to replace it") from None
    except OSError:  # no hard links on this file system (FAT, some network mounts)
        if os.path.lexists(target):
            raise OutputError(f"refusing to write {target}: it appeared while we worked; pass --force") from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable; not every platform can open a folder, which is no error."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

"""Files a manifest names beside the model: regular files only, of bounded size, checked before use.

A FIFO named as a samples file would hang ``np.load`` forever and a device (``/dev/zero``) would
feed it without end; a zip whose ``x.npy`` header claims 10**12 elements would allocate them.
``check_samples`` reads only the file's status, the zip directory and the two array headers
(a fraction of a millisecond), so ``load_artifact`` can afford it on every load;
``read_samples`` then reads the arrays it has vouched for.
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import Any

from edgerun.errors import ArtifactError
from edgerun.formats.limits import MAX_SAMPLES_BYTES, MiB

_CAP = f"{MAX_SAMPLES_BYTES // MiB} MiB"
_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def regular_file(path: Path, what: str, error: type[Exception] = ArtifactError) -> int:
    """The size of ``path`` if it is a regular file (symlinks followed); else ``error``, without opening it
    (opening a FIFO blocks until someone writes to it)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise error(f"{path}: cannot read the {what} ({reason}); expected a regular file") from None
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        raise error(f"{path}: the {what} is {kind}; expected a regular file")
    return st.st_size


def _header(zf: Any, member: str, path: Path) -> tuple[tuple[int, ...], Any]:
    import numpy as np

    fmt = np.lib.format
    info = zf.getinfo(member)
    if info.file_size > MAX_SAMPLES_BYTES:
        raise ArtifactError(f"{path}: samples {member} unpacks to {info.file_size} bytes; expected at most {_CAP}")
    with zf.open(info) as fh:
        version = fmt.read_magic(fh)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read(fh)
    if dtype.hasobject or dtype.kind not in "biuf":
        raise ArtifactError(f"{path}: samples {member} holds {dtype} values; expected a numeric array")
    if math.prod(shape) * dtype.itemsize > MAX_SAMPLES_BYTES:
        raise ArtifactError(
            f"{path}: samples {member} claims shape {list(shape)} of {dtype}; expected at most {_CAP} of values"
        )
    return tuple(shape), dtype


def check_samples(path: Path) -> None:
    """Refuse a samples file that is not a regular, non-empty .npz with a numeric ``x`` of at least one
    input (and, if present, a ``y`` with one label per input); reads headers only."""
    import zipfile  # here, not at module level: the artifact loader imports this module
    import zlib

    size = regular_file(path, "samples file")
    expect = "expected an .npz (numpy.savez) with 'x' (raw inputs on axis 0) and optionally 'y'"
    if size == 0:
        raise ArtifactError(f"{path}: the samples file is empty; {expect}")
    if size > MAX_SAMPLES_BYTES:
        raise ArtifactError(f"{path}: the samples file is {size} bytes; expected at most {_CAP}")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "x.npy" not in names:
                raise ArtifactError(f"{path}: the samples file has no 'x'; {expect}")
            x_shape, _ = _header(zf, "x.npy", path)
            y_shape = _header(zf, "y.npy", path)[0] if "y.npy" in names else None
    except ArtifactError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, KeyError, zlib.error) as exc:
        raise ArtifactError(
            f"{path}: the samples file is not a readable .npz ({type(exc).__name__}); {expect}"
        ) from None
    if len(x_shape) == 0 or x_shape[0] == 0:
        raise ArtifactError(
            f"{path}: the samples' 'x' has shape {list(x_shape)}; expected at least one input on axis 0"
        )
    if y_shape is not None and (len(y_shape) == 0 or y_shape[0] != x_shape[0]):
        raise ArtifactError(
            f"{path}: the samples' 'y' has shape {list(y_shape)}; expected one label per input ({x_shape[0]})"
        )


def read_samples(path: Path) -> tuple[Any, Any]:
    """``(x, y)`` of a samples file (``y`` None when absent); every failure an ArtifactError naming the file."""
    import zipfile
    import zlib

    import numpy as np

    check_samples(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return data["x"], (data["y"] if "y" in data.files else None)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError, zlib.error) as exc:
        # The headers were fine: the data after them is cut short or corrupt (a CRC mismatch).
        raise ArtifactError(
            f"{path}: the samples file is corrupt ({type(exc).__name__}); expected an intact .npz"
        ) from None

"""sha256 without loading OpenSSL for small inputs.

``hashlib.sha256`` is OpenSSL's: ~1.7 GB/s on a CPU with SHA extensions, but loading
libcrypto (``_hashlib``) costs ~3-5 ms of CPU per process, a tenth of what `edgerun run`
adds to a raw LiteRT script (tools/bench_startup.py). CPython's own sha256 module loads in
~0.2 ms and hashes ~0.3 GB/s, so below ``SMALL_BYTES`` it finishes first (measured on the
2-core development machine: 302 vs 1707 MB/s on 32 MiB, process CPU time). Both compute
FIPS 180-4 SHA-256; only the speed differs. Once OpenSSL is loaded anyway, it is used.
"""

from __future__ import annotations

import sys
from typing import Any

SMALL_BYTES = 1 << 20  # break-even ~1-2 MB: 4 ms of loading against (3.3 - 0.6) ms per MB


def sha256(size_hint: int = 0) -> Any:
    """A fresh sha256 object (``update``, ``hexdigest``); CPython's built-in one for inputs under
    ``SMALL_BYTES`` when OpenSSL is not loaded yet, else hashlib's."""
    if size_hint < SMALL_BYTES and "_hashlib" not in sys.modules:
        try:  # CPython's own module: _sha256 up to 3.11, _sha2 from 3.12
            from _sha256 import sha256 as builtin  # type: ignore[import-not-found]
        except ImportError:
            try:
                from _sha2 import sha256 as builtin  # type: ignore[import-not-found]
            except ImportError:
                builtin = None
        if builtin is not None:
            return builtin()
    import hashlib

    return hashlib.sha256()

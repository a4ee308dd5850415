"""Boundary validation: what a user hands edgerun is checked here, once, before anything uses it.

- ``edgerun.formats.limits``: the size limits every boundary shares (resize side, tensor elements,
  labels, strings, file sizes). No third-party imports.
- ``edgerun.schema.manifest``: the artifact manifest (docs/manifest.md) as pydantic models;
  ``validate_manifest(data, where)`` returns ``edgerun.artifact.Manifest`` or raises one
  ``ArtifactError`` line naming the file, the field path and what was expected. Imported lazily,
  by ``edgerun.artifact.parse_manifest``, so ``import edgerun`` does not pay for pydantic.
- ``edgerun.schema.manifest_cache``: remembered passes, keyed by the sha256 of a manifest's exact
  bytes and a fingerprint of the schema, so a manifest that passed is not run through pydantic on
  every start (its docstring says why a hit is still a check); no pydantic import.

Why pydantic (v2) and not jsonschema:

- A manifest becomes typed objects (TensorSpec, Quant, ops); pydantic validates and builds them in
  one step, with cross-field rules (mean/std lengths, a tensor's element count, layout
  permutations) as plain Python next to the fields, where a JSON Schema would need a second,
  hand-written pass for them anyway.
- Its errors carry a structured location (``('preprocess', 1, 'size', 0)``) and a type code, from
  which one line per problem is written; jsonschema's paths and messages are similar, but its
  messages echo whole instances.
- Cost on a device: pydantic-core is one ~2 MB wheel, published for manylinux aarch64 and armv7l and
  musllinux (checked with ``pip download --platform``), and imports in ~45 ms; jsonschema is no
  longer pure Python either (``referencing`` needs the compiled ``rpds-py``) and imports in ~75 ms.
  jsonschema stays a test dependency: the tests check bench results against
  ``edgerun/bench/result.schema.json`` with it.
"""

from __future__ import annotations

from edgerun.formats import limits  # re-exported: the limits live below formats and schema both

__all__ = ["limits"]

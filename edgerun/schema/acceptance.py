"""The schema of a store version's ``acceptance.json`` (written by edgerun.update.accept, read by
edgerun.modelstore to decide whether a version may load).

    {"schema": "edgerun.acceptance", "schema_version": 1, "name": ..., "version": ..., "sha256": ...,
     "passed": true, "summary": {...}, "verdicts": {"hard": {"status": "pass", "reason": ..., ...}, ...}}

A file is only written after every verdict passed, so a loadable one says ``"passed": true`` and
each verdict's status is ``pass`` or ``skipped``; anything else (a truncated or edited file, a
fail written in by hand, a file from a newer edgerun) makes the version not loadable.
``parse_acceptance(raw, where)`` returns the document or raises one ArtifactError line.
Imported only when a store reference is resolved, as edgerun.schema.manifest is for a manifest.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StrictStr, ValidationError

from edgerun.errors import ArtifactError

SCHEMA = "edgerun.acceptance"
SCHEMA_VERSION = 1
#: a real acceptance.json is ~3 KB; a file over this is not one
MAX_BYTES = 256 * 1024

_Part = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")]
_Text = Annotated[StrictStr, Field(max_length=2000)]


class Verdict(BaseModel):
    """One verdict as edgerun.bench.result's Verdict.to_dict writes it; only what resolve relies on
    is checked beyond JSON (status and reason), the figures are kept as written."""

    model_config = ConfigDict(extra="allow", strict=True)
    status: Literal["pass", "skipped"]
    reason: _Text


class AcceptanceDoc(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    schema_: Literal["edgerun.acceptance"] = Field(alias="schema")
    schema_version: Literal[1]
    name: _Part
    version: _Part
    sha256: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]
    passed: Literal[True]  # only an accepted version is loadable
    summary: Annotated[dict[Annotated[str, Field(max_length=64)], JsonValue], Field(max_length=32)]
    verdicts: Annotated[dict[Annotated[str, Field(max_length=64)], Verdict], Field(min_length=1, max_length=64)]


def parse_acceptance(raw: bytes, where: str) -> dict[str, Any]:
    """The checked document from the file's bytes, or ArtifactError naming the first problem."""
    if len(raw) > MAX_BYTES:
        raise ArtifactError(f"{where}: {len(raw)} bytes; expected an acceptance record under {MAX_BYTES} bytes")
    try:
        doc = AcceptanceDoc.model_validate_json(raw)
    except ValidationError as exc:
        raise _error(where, exc) from None
    except RecursionError:
        raise ArtifactError(f"{where}: nested too deep; expected an acceptance record") from None
    return doc.model_dump(by_alias=True)


def _error(where: str, exc: ValidationError) -> ArtifactError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = ".".join("schema" if p == "schema_" else str(p) for p in first["loc"]) or "the top level"
    if first["type"] == "json_invalid":
        what = f"not JSON ({first.get('ctx', {}).get('error', first['msg'])})"
    else:
        what = f"{loc}: {first['msg']}"
        if first["type"] not in ("missing",) and not isinstance(first.get("input"), (dict, list)):
            shown = repr(first.get("input"))
            what += f"; got {shown if len(shown) <= 60 else shown[:50] + '...'}"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return ArtifactError(" ".join(f"{where}: {what}{more}".split()))

"""One remote inference's bytes: the request body, how large its answer may be, the answer's outputs.

Pure functions over the policy, the local signature and bytes (no HTTP, no breaker):
the client (edgerun.fallback.client) sends what ``encode`` builds, reads no more than
``reply_bound`` allows, and hands a 200 answer to ``decode``.

The reply bound is what the local output signature can take, so a wrong or hostile
server cannot make the device buffer or parse more than the model could answer:

- binary tensors: element count x dtype size;
- JSON tensors: element count x ``JSON_CHARS_PER_ELEMENT`` (32: the longest JSON
  number, ``-1.7976931348623157e+308``, is 24 characters; the rest covers a separator
  and the spaces a lenient encoder adds);
- plus ``HEAD_ALLOWANCE`` bytes (64 KiB) for the JSON header: names, shapes, id,
  parameters (MLServer echoes headers there).

An output with a dynamic dimension or of BYTES (strings) has no such bound: then the
transport's own cap (64 MiB) applies.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgerun.artifact import TensorSpec
from edgerun.errors import InputError, ProtocolError, RemoteUnavailable
from edgerun.fallback import oip, transport
from edgerun.fallback.policy import FallbackPolicy

__all__ = ["HEAD_ALLOWANCE", "JSON_CHARS_PER_ELEMENT", "Request", "decode", "encode", "reply_bound"]

JSON_CHARS_PER_ELEMENT = 32
HEAD_ALLOWANCE = 64 * 1024


@dataclass(frozen=True)
class Request:
    request_id: str
    body: bytes
    header_length: int | None
    sha256: str
    reason: str


def encode(
    policy: FallbackPolicy,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    feeds: Mapping[str, np.ndarray],
    binary: bool,
    reason: str,
) -> Request:
    """The inputs the policy lets go (redacted when it says so), encoded; refused past max_payload_bytes."""
    allowed = policy.allowed_inputs
    chosen: dict[str, np.ndarray] = {}
    for spec in inputs:
        if allowed is not None and spec.name not in allowed:
            continue  # minimisation: never sent, whatever the caller passed
        array = np.asarray(feeds[spec.name])
        if policy.redactor is not None:
            redacted = np.asarray(policy.redactor(spec.name, array))
            if redacted.shape != array.shape or redacted.dtype != array.dtype:
                raise InputError(
                    f"redactor changed input {spec.name!r} from {array.dtype}{list(array.shape)} to "
                    f"{redacted.dtype}{list(redacted.shape)}; it must keep shape and dtype"
                )
            array = redacted
        chosen[spec.name] = array
    request_id = uuid.uuid4().hex
    wanted = [{"name": t.name, "parameters": {"binary_data": True}} for t in outputs] if binary else None
    head: dict[str, Any] = {"id": request_id, **({"outputs": wanted} if wanted else {})}
    body, header_length = oip.encode_body(head, chosen, "inputs", binary)
    if len(body) > policy.max_payload_bytes:
        raise RemoteUnavailable(
            f"not sent: the request is {len(body)} bytes, over max_payload_bytes {policy.max_payload_bytes}"
        )
    return Request(request_id, body, header_length, hashlib.sha256(body).hexdigest(), reason)


def reply_bound(outputs: Sequence[TensorSpec], binary: bool) -> int:
    """The most bytes an answer for these outputs can take (see the module docstring)."""
    total = 0
    for spec in outputs:
        dims = list(spec.shape)
        if spec.dtype in ("str", "object", "bytes") or any(d is None or not isinstance(d, int) or d < 0 for d in dims):
            return transport.MAX_RESPONSE_BYTES
        count = math.prod(int(d) for d in dims if d is not None)  # every d is an int here (checked above)
        total += count * (np.dtype(spec.dtype).itemsize if binary else JSON_CHARS_PER_ELEMENT)
    return min(total + HEAD_ALLOWANCE, transport.MAX_RESPONSE_BYTES)


def decode(reply: transport.Reply, req: Request, outputs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """A 200 answer's outputs, checked against the local signature and the request id."""
    length = reply.headers.get(oip.HEADER_LENGTH.lower())
    try:
        header_length = None if length is None else int(length)
    except ValueError as exc:
        raise ProtocolError(f"{oip.HEADER_LENGTH} is {length!r}, expected an integer") from exc
    head, binary = oip.parse_body(reply.body, header_length)
    if head.get("id") not in (None, req.request_id):
        raise ProtocolError(f"response id {head.get('id')!r} does not echo request id {req.request_id!r}")
    return oip.check_outputs(oip.decode_tensors(head.get("outputs"), binary, "outputs"), outputs)

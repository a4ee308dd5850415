"""What the server is, asked once per client, outside the request path when possible.

``GET v2`` gives the server's extensions (``binary_tensor_data`` switches binary
tensors on under ``binary_data="auto"``). Without a model name, Triton's model
repository extension (``POST v2/repository/index``) lists the models; exactly one
ready model is taken, anything else is an error that says which names exist.
``GET v2/models/{name}`` must then describe the local model's signature: the
same output names and datatypes, and the inputs we may send, where it describes
them: MLServer describes none unless the model's settings do, and then the local
signature stands (every answer is checked against it).

When the policy names the model and fixes ``binary_data``, nothing is asked: there
is nothing to learn that would change a request, and every response is checked
against the local signature anyway.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from edgerun.errors import DeadlineExceeded, ProtocolError, RemoteAuthError, RemoteError, RemoteUnavailable
from edgerun.fallback import oip, transport

if TYPE_CHECKING:
    from edgerun.fallback.client import RemoteClient

__all__ = ["ServerInfo", "discover", "model_url"]

_METADATA_MAX_BYTES = 4 * 1024 * 1024  # server and model metadata, a repository index: JSON, never tensors


@dataclass(frozen=True)
class ServerInfo:
    model: str
    binary: bool
    extensions: tuple[str, ...]
    infer_url: str
    server: str = ""  # the server's self-reported "name version", when asked


def model_url(endpoint: str, model: str, version: str | None) -> str:
    url = f"{endpoint}/v2/models/{quote(model, safe='')}"
    return url + (f"/versions/{quote(version, safe='')}" if version else "")


async def discover(client: RemoteClient, deadline_ns: int) -> ServerInfo:
    policy = client.policy
    binary = policy.binary_data == "always"
    if policy.model_name and policy.binary_data != "auto":
        url = model_url(client.endpoint, policy.model_name, policy.model_version)
        return ServerInfo(policy.model_name, binary, (), url + "/infer")
    meta = await _get(client, "GET", f"{client.endpoint}/v2", deadline_ns)
    extensions = tuple(str(e) for e in meta.get("extensions") or ())
    if policy.binary_data == "auto":
        binary = "binary_tensor_data" in extensions
    model = policy.model_name or await _only_model(client, deadline_ns)
    url = model_url(client.endpoint, model, policy.model_version)
    _check_signature(client, model, await _get(client, "GET", url, deadline_ns))
    server = f"{meta.get('name', '?')} {meta.get('version', '?')}"
    return ServerInfo(model, binary, extensions, url + "/infer", server)


async def _only_model(client: RemoteClient, deadline_ns: int) -> str:
    index = await _get(client, "POST", f"{client.endpoint}/v2/repository/index", deadline_ns, body=b"{}")
    models = index if isinstance(index, list) else []
    ready = sorted({m["name"] for m in models if isinstance(m, dict) and m.get("state", "READY") == "READY"})
    if len(ready) != 1:
        raise RemoteUnavailable(
            f"{client.endpoint} serves {len(ready)} ready models {ready}; name one "
            "(policy model_name, edgerun run --fallback-model)"
        )
    return str(ready[0])


def _check_signature(client: RemoteClient, model: str, meta: Any) -> None:
    """What the server describes must match the local model; what it leaves out is not held against it.

    Seldon MLServer answers ``inputs: [], outputs: [], versions: []`` for a model whose
    runtime declares nothing, which is normal: then the local signature stands (every
    answer is checked against it anyway), and an empty ``versions`` means "unversioned".
    """
    if not isinstance(meta, dict):
        raise ProtocolError(f"model metadata for {model!r} must be a JSON object, got {type(meta).__name__}")

    def table(key: str) -> dict[str, str]:
        items = meta.get(key)
        if items is None:
            return {}
        if not isinstance(items, list):
            raise ProtocolError(f"model metadata for {model!r}: {key!r} must be a list, got {items!r:.80}")
        return {str(t.get("name")): str(t.get("datatype")) for t in items if isinstance(t, dict)}

    remote_in, remote_out = table("inputs"), table("outputs")
    local_out = {t.name: oip.datatype_of(t.dtype) for t in client.outputs}
    allowed = client.policy.allowed_inputs
    local_in = {t.name: oip.datatype_of(t.dtype) for t in client.inputs if allowed is None or t.name in allowed}
    outputs_differ = bool(remote_out) and remote_out != local_out
    inputs_differ = bool(remote_in) and any(remote_in.get(k) != v for k, v in local_in.items())
    if outputs_differ or inputs_differ:
        client.latched = f"remote model {model!r} does not match the local signature"
        raise ProtocolError(
            f"remote model {model!r} has inputs {remote_in} and outputs {remote_out}; the local model sends "
            f"{local_in} and expects {local_out}"
        )
    version, versions = client.policy.model_version, meta.get("versions")
    if version and isinstance(versions, list) and versions and version not in [str(v) for v in versions]:
        raise RemoteUnavailable(
            f"remote model {model!r} has versions {versions}, not {version!r}; set the policy's model_version "
            "(edgerun run --fallback-version) to one of them, or leave it out"
        )


async def _get(client: RemoteClient, method: str, url: str, deadline_ns: int, body: bytes | None = None) -> Any:
    """A small JSON exchange under the breaker and the deadline."""
    left_s = (deadline_ns - perf_counter_ns()) / 1e9
    if left_s <= 0:
        raise DeadlineExceeded(f"no time left to ask {url}")
    if not client.breaker.allow():
        raise RemoteUnavailable(f"not sent: {client.unavailable() or 'circuit half-open, probe in flight'}")
    headers = client.headers()
    try:
        reply = await asyncio.wait_for(
            transport.request(
                client._http,
                method,
                url,
                body=body,
                headers=headers,
                timeout_s=left_s,
                connect_timeout_s=client.policy.connect_timeout_ms / 1e3,
                max_bytes=_METADATA_MAX_BYTES,
            ),
            left_s,
        )
    except asyncio.CancelledError:
        client.breaker.release()
        raise
    except (asyncio.TimeoutError, TimeoutError) as exc:
        client.breaker.failure()
        raise DeadlineExceeded(f"{url} did not answer before the deadline") from exc
    except Exception as exc:
        outcome = transport.classify(exc, deadline_ns)
        if outcome is None:
            client.breaker.release()
            raise
        client.breaker.failure()
        if outcome == "deadline":
            raise DeadlineExceeded(f"{url} did not answer before the deadline: {transport.describe(exc)}") from exc
        raise RemoteError(f"{outcome} asking {url}: {transport.describe(exc)}") from exc
    return _json_reply(client, url, reply)


def _json_reply(client: RemoteClient, url: str, reply: transport.Reply) -> Any:
    if reply.status in (401, 403):
        client.breaker.release()
        raise RemoteAuthError(f"{url} answered {reply.status}: the server refused the credentials", reply.status)
    if reply.status != 200:
        (client.breaker.failure if reply.status >= 500 else client.breaker.release)()
        raise RemoteError(f"{url} answered {reply.status}: {reply.body[:200]!r}", reply.status)
    client.breaker.success()
    try:
        return json.loads(reply.body)
    except ValueError as exc:
        raise ProtocolError(f"{url} answered 200 with a body that is not JSON: {reply.body[:60]!r}") from exc

"""Cloud fallback: an Open Inference Protocol (KServe V2) client and its policy.

    from edgerun.fallback import FallbackPolicy, JsonLinesAudit
    policy = FallbackPolicy(mode="prefer-local", endpoint="https://infer.example.org",
                            audit_sink=JsonLinesAudit("fallback-audit.jsonl"))
    rt = edgerun.load("model.onnx", fallback=policy)
    res = rt.run(x); res.route, res.reason
    rt.fallback.metrics.to_dict()

Off by default: without a policy, or with ``mode="local-only"``, nothing leaves the
device. Modules: policy (FallbackPolicy), router (per-call routing), client
(RemoteClient: retries, breaker, bulkhead, deadline), oip (tensor codec),
discovery, transport (the HTTP library), breaker, metrics, audit. The reference
server (``edgerun serve``) is edgerun.serve, above the runtime it loads models with.
Docs: docs/fallback.md.

Importing this package is light: the HTTP library loads only when a client is created.
"""

from __future__ import annotations

from edgerun.fallback.audit import AuditRecord, JsonLinesAudit, MemoryAudit, StreamAudit
from edgerun.fallback.policy import MODES, TRIGGERS, FallbackPolicy

__all__ = [
    "MODES",
    "TRIGGERS",
    "AuditRecord",
    "FallbackPolicy",
    "JsonLinesAudit",
    "MemoryAudit",
    "StreamAudit",
]

"""``edgerun serve``: the reference Open Inference Protocol server (the ``serve`` extra).

    from edgerun.serve.server import ReferenceServer, serve_in_thread
    with serve_in_thread(ReferenceServer(["model.onnx"])) as url: ...

``server`` (the ASGI app, its models loaded through ``edgerun.runtime.load``), ``request`` (the
request boundary: body size, decompression, the OIP request schema), ``hooks`` (faults, holds and
counters that tests and tools set from Python). A package of its own, above the runtime: the
runtime opens the fallback client (edgerun.fallback), and the server loads models through the
runtime, so the server cannot live in edgerun.fallback without an import circle. It shares the
fallback's tensor codec (edgerun.fallback.oip) with the client.
"""

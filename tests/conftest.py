"""Shared fixtures: the bundled demo artifacts (real models, real engines) and tiny models built here."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgerun.demo import DEMO_DIR, DEMO_NAMES

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _manifest_cache(tmp_path_factory: pytest.TempPathFactory):
    """Manifest passes (edgerun/schema/manifest_cache.py) go to this run's folder, not the user's cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGERUN_CACHE_DIR", str(tmp_path_factory.mktemp("edgerun-cache")))
    yield
    mp.undo()


def _demo(name: str) -> Path:
    path = DEMO_DIR / name
    if not path.exists():
        pytest.fail(f"demo artifact {path} is missing: run tools/build_demo.py")
    return path


@pytest.fixture(params=DEMO_NAMES)
def demo_path(request: pytest.FixtureRequest) -> Path:
    """Each of the five bundled demo model files."""
    return _demo(request.param)


@pytest.fixture
def demo_copy(tmp_path: Path):
    """Copy one demo artifact (model + manifest + samples) into tmp_path, for tampering."""

    def copy(name: str) -> Path:
        src = _demo(name)
        for f in DEMO_DIR.iterdir():
            if f.name.startswith(src.name) or f.suffix == ".npz":  # model, its manifest, samples
                shutil.copy(f, tmp_path / f.name)
        return tmp_path / src.name

    return copy


@pytest.fixture
def tiny_onnx(tmp_path: Path) -> Path:
    """A real 1-op ONNX model (MatMul 1x4 @ 4x3), built with the onnx package."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "tiny.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models train faster on one thread, and a shared 2-core CI box is not oversubscribed.
    For the compression tests: ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def server():
    """The fallback tests' reference server on the FP32 demo model, one per test module."""
    from edgerun.serve.server import ReferenceServer, serve_in_thread

    srv = ReferenceServer([DEMO_DIR / "digits-fp32.onnx"], threads=1)
    with serve_in_thread(srv) as url:
        srv.url = url
        yield srv


@pytest.fixture
def fresh(server):
    """``server`` with no faults and zeroed stats; a hold left by a failed test is released."""
    from edgerun.serve.server import Faults

    server.faults = Faults()
    server.stats.__init__()
    yield server
    if server.faults.hold is not None:  # a test that failed mid-hold must not leave requests parked
        server.faults.hold.release()
    server.faults = Faults()


@pytest.fixture(scope="session")
def ssh_device(tmp_path_factory: pytest.TempPathFactory):
    """The loopback sshd with this edgerun set up on it (tests/fixtures/targets/devices.py), one per session."""
    from tool_modules import target_devices

    devices = target_devices()
    reason = devices.sshd_missing_reason()
    if reason:
        pytest.skip(reason)
    device = devices.ssh_device(tmp_path_factory.mktemp("ssh-device"))
    yield device
    devices.release_ssh(device)


@pytest.fixture
def event_log(tmp_path: Path) -> Iterator[Path]:
    """The telemetry event log (edgerun/telemetry/events.py) configured into a fresh file; its path."""
    from edgerun.telemetry import events

    path = tmp_path / "events.jsonl"
    log = events.configure(path)
    yield path
    events.disable(log)

"""ScoringService without sockets: routing, error mapping and the states that drive exit codes."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgefleet.modules.scoring import context
from edgefleet.modules.scoring.config import ServerConfig
from edgefleet.modules.scoring.service import RUN_FAILED_MESSAGE, ScoringService
from edgefleet.protocol.module import ModuleRunState, ModuleStatusFile

DIGITS = Path(__file__).resolve().parents[3] / "modules" / "samples" / "digits"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # the service sets AZUREML_MODEL_DIR and the active context, as it does in its own process
    monkeypatch.setenv("AZUREML_MODEL_DIR", "")
    monkeypatch.setattr(context, "_active", None)
    yield


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    shutil.copy(DIGITS / "digits_fp32.onnx", d)
    return d


@pytest.fixture
def images() -> np.ndarray:
    return np.load(DIGITS / "test_set.npz")["images"][:5]


def _service(model_dir: Path, **kw: object) -> ScoringService:
    service = ScoringService(ServerConfig(model_dir=model_dir, **kw))  # type: ignore[arg-type]
    return service


def _json(service: ScoringService, method: str, path: str, body: bytes = b"") -> tuple[int, dict]:
    r = service.handle(method, path, {}, body)
    return r.status, json.loads(r.body)


def test_not_ready_before_initialise(model_dir: Path) -> None:
    service = _service(model_dir)
    assert service.handle("GET", "/", {}, b"").status == 503
    assert _json(service, "GET", "/v2/health/ready")[0] == 503
    assert _json(service, "GET", "/v2/health/live") == (200, {"live": True})
    status, doc = _json(service, "POST", "/score", b'{"data": []}')
    assert status == 503 and "Starting" in doc["error"]


def test_no_code_scoring_equals_onnxruntime(model_dir: Path, images: np.ndarray) -> None:
    service = _service(model_dir)
    assert service.initialise() is ModuleRunState.READY
    assert service.handle("GET", "/", {}, b"").body == b"Healthy"
    reference = ort.InferenceSession(str(model_dir / "digits_fp32.onnx")).run(None, {"input": images})[0]
    status, doc = _json(service, "POST", "/score", json.dumps({"data": images.reshape(5, 64).tolist()}).encode())
    assert status == 200
    assert doc["predictions"] == np.argmax(reference, axis=1).tolist()
    assert np.allclose(doc["outputs"]["logits"], reference, atol=1e-5)
    st = service.status(1234).to_wire()
    assert (st["state"], st["backend"], st["port"]) == ("Ready", "cpu", 1234)


def test_v2_routes(model_dir: Path, images: np.ndarray) -> None:
    service = _service(model_dir, model_name="digits", model_version="2")
    service.initialise()
    assert _json(service, "GET", "/v2")[1]["extensions"] == ["binary_tensor_data"]
    assert _json(service, "GET", "/v2/models/digits")[1]["inputs"][0]["shape"] == [-1, 1, 8, 8]
    assert _json(service, "GET", "/v2/models/digits/versions/2/ready") == (200, {"name": "digits", "ready": True})
    status, doc = _json(service, "GET", "/v2/models/digits/versions/1")
    assert status == 404 and "no version '1'" in doc["error"]
    status, doc = _json(service, "GET", "/v2/models/other/ready")
    assert status == 404 and "'other'" in doc["error"] and "'digits'" in doc["error"]
    request = {
        "inputs": [{"name": "input", "shape": [5, 1, 8, 8], "datatype": "FP32", "data": images.ravel().tolist()}]
    }
    status, doc = _json(service, "POST", "/v2/models/digits/infer", json.dumps(request).encode())
    assert status == 200 and doc["outputs"][0]["shape"] == [5, 10]
    bad = {"inputs": [{"name": "input", "shape": [5, 64], "datatype": "FP32", "data": images.ravel().tolist()}]}
    status, doc = _json(service, "POST", "/v2/models/digits/infer", json.dumps(bad).encode())
    assert status == 400 and "shape [5, 64]" in doc["error"]


def test_unknown_routes_and_methods(model_dir: Path) -> None:
    service = _service(model_dir)
    service.initialise()
    assert _json(service, "GET", "/nope")[0] == 404
    status, doc = _json(service, "GET", "/score")
    assert status == 405 and "POST" in doc["error"]
    assert _json(service, "GET", "/v2/health/ready/")[0] == 200  # trailing slash tolerated


def test_several_model_files_fail_with_their_names(model_dir: Path) -> None:
    shutil.copy(DIGITS / "digits_int8.onnx", model_dir)
    service = _service(model_dir)
    assert service.initialise() is ModuleRunState.FAILED
    assert "digits_fp32.onnx" in service.message and "digits_int8.onnx" in service.message


def test_required_accelerator_missing_is_unschedulable(model_dir: Path) -> None:
    service = _service(model_dir, accelerator_prefer=("fpga",), accelerator_required=True)
    assert service.initialise() is ModuleRunState.UNSCHEDULABLE
    assert "fpga" in service.message


def _script(tmp_path: Path, text: str) -> Path:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "score.py").write_text(text)
    return src


def test_entry_script_init_raising_is_failed(tmp_path: Path, model_dir: Path) -> None:
    src = _script(tmp_path, "def init():\n    raise RuntimeError('no weights')\n\ndef run(raw):\n    return raw\n")
    service = _service(model_dir, source_dir=src, entry_script="score.py")
    assert service.initialise() is ModuleRunState.FAILED
    assert "init() in" in service.message and "RuntimeError: no weights" in service.message


def test_entry_script_without_run_is_failed(tmp_path: Path, model_dir: Path) -> None:
    src = _script(tmp_path, "def init():\n    pass\n")
    service = _service(model_dir, source_dir=src, entry_script="score.py")
    assert service.initialise() is ModuleRunState.FAILED
    assert "does not define run()" in service.message


def test_entry_script_requiring_a_missing_accelerator_is_unschedulable(tmp_path: Path, model_dir: Path) -> None:
    src = _script(
        tmp_path,
        "from edgefleet.modules.scoring.context import load_model\n"
        "def init():\n    global m\n    m = load_model()\n\ndef run(raw):\n    return raw\n",
    )
    service = _service(
        model_dir, source_dir=src, entry_script="score.py", accelerator_prefer=("fpga",), accelerator_required=True
    )
    assert service.initialise() is ModuleRunState.UNSCHEDULABLE


def test_entry_script_run_results_and_errors(tmp_path: Path, model_dir: Path) -> None:
    src = _script(
        tmp_path,
        "import json, numpy as np\n"
        "from edgefleet.modules.scoring.context import BadInput\n"
        "def init():\n    pass\n"
        "def run(raw):\n"
        "    doc = json.loads(raw)\n"
        "    if doc == 'bad':\n        raise BadInput('send numbers')\n"
        "    if doc == 'boom':\n        raise KeyError('k')\n"
        "    if doc == 'set':\n        return {1, 2}\n"
        "    return {'sum': np.float32(sum(doc)), 'arr': np.arange(2)}\n",
    )
    service = _service(model_dir, source_dir=src, entry_script="score.py")
    assert service.initialise() is ModuleRunState.READY
    assert _json(service, "POST", "/score", b"[1, 2]") == (200, {"sum": 3.0, "arr": [0, 1]})
    # /score of an entry script answers errors as Azure ML does: {"message": ...}, no exception text
    assert _json(service, "POST", "/score", b'"bad"') == (400, {"message": "send numbers"})
    status, doc = _json(service, "POST", "/score", b'"boom"')
    assert status == 500 and doc == {"message": RUN_FAILED_MESSAGE}
    assert service.handle("POST", "/score", {}, b'"boom"').headers["x-ms-run-function-failed"] == "True"
    status, doc = _json(service, "POST", "/score", b'"set"')
    assert status == 500 and "internal error" in doc["message"] and "set" not in doc["message"]
    status, doc = _json(service, "GET", "/v2/models/model")
    assert status == 404 and "loaded no model" in doc["error"]


def test_the_outcome_is_announced_once_ready_with_its_backend(model_dir: Path) -> None:
    """``announce`` starts the listening (the transport accepts nothing before) and writes the status
    file: by then the service answers ready, and the status names the backend the agent reports."""
    service = _service(model_dir)
    seen: list[tuple[str, str | None, int]] = []

    def announce(status: ModuleStatusFile) -> None:
        seen.append((status.state.value, status.backend, _json(service, "GET", "/v2/health/ready")[0]))

    assert service.initialise(announce=announce) is ModuleRunState.READY
    assert seen == [("Ready", "cpu", 200)]


def test_the_azureml_stand_in_is_not_importable_outside_an_entry_script() -> None:
    """The agent and the hub import edgefleet.modules.* (never the compat directory): no top-level azureml."""
    import subprocess
    import sys

    code = (
        "import importlib.util, edgefleet.modules.scoring.service, edgefleet.modules.scoring.rawhttp\n"
        "print(importlib.util.find_spec('azureml') is None)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "True"

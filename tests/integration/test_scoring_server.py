"""The scoring server as a real process on a free loopback port, driven over HTTP and by tritonclient."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.support.processes import free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "modules" / "samples" / "digits"
FINAL_STATES = {"Ready", "Failed", "Unschedulable"}


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    status_file: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self) -> dict:
        return json.loads(self.status_file.read_text())

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_server(
    workdir: Path, *args: str, env: dict[str, str] | None = None, use_cli: bool = True, cwd: Path = REPO
) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    port, status_file, log = free_port(), workdir / "status.json", workdir / "server.log"
    cli = ["--port", str(port), "--status-file", str(status_file)] if use_cli else []
    full_env = {**os.environ, **(env or {})}
    if not use_cli:
        full_env |= {"EDGEFLEET_PORT": str(port), "EDGEFLEET_STATUS_FILE": str(status_file)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgefleet.modules.scoring", *cli, *args],
            cwd=cwd,
            env=full_env,
            stdout=out,
            stderr=out,
        )
    server = Server(proc, port, status_file, log)

    def settled() -> bool:
        return server.status_file.exists() and server.status()["state"] in FINAL_STATES

    wait_for(settled, timeout=60, what=f"scoring server status in {status_file} (log: {log})")
    return server


def model_dir(tmp_path: Path, name: str = "digits_int8.onnx") -> Path:
    d = tmp_path / "model"
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(DIGITS / name, d)
    return d


@pytest.fixture(scope="module")
def test_set() -> tuple[np.ndarray, np.ndarray]:
    data = np.load(DIGITS / "test_set.npz")
    return data["images"], data["labels"]


@pytest.fixture(scope="module")
def reference_logits(test_set: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(DIGITS / "digits_int8.onnx"), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": test_set[0]})[0]


@pytest.fixture(scope="module")
def no_code(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("nocode")
    server = start_server(
        tmp, "--model-dir", str(model_dir(tmp)), "--name", "digits", "--max-request-bytes", "1000000",
        "--edgefleet-device", "dev-1", "--edgefleet-module", "digits-svc",
    )  # fmt: skip
    assert server.status()["state"] == "Ready", server.log.read_text()
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def entry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("entry")
    # configured by environment alone, as a container would be
    env = {
        "EDGEFLEET_MODEL_DIR": str(model_dir(tmp)),
        "EDGEFLEET_SOURCE_DIR": str(DIGITS / "src"),
        "EDGEFLEET_ENTRY_SCRIPT": "score.py",
        "EDGEFLEET_MODEL_NAME": "digits",
        "EDGEFLEET_ACCELERATOR_PREFER": "opencl,cpu",
    }
    server = start_server(tmp, env=env, use_cli=False)
    assert server.status()["state"] == "Ready", server.log.read_text()
    yield server
    assert server.stop() == 0


def test_status_file_and_health(no_code: Server) -> None:
    status = no_code.status()
    assert status["pid"] == no_code.proc.pid and status["port"] == no_code.port
    assert status["backend"] == "cpu" and status["backendReason"]
    assert httpx.get(no_code.url + "/").text == "Healthy"
    assert httpx.get(no_code.url + "/v2/health/ready").status_code == 200
    assert httpx.get(no_code.url + "/edgefleet/status").json() == status


def test_no_code_score_equals_onnxruntime(no_code: Server, test_set: tuple, reference_logits: np.ndarray) -> None:
    images, _ = test_set
    r = httpx.post(no_code.url + "/score", json={"data": images.reshape(len(images), 64).tolist()}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == np.argmax(reference_logits, axis=1).tolist()
    assert np.allclose(r.json()["outputs"]["logits"], reference_logits, atol=1e-5)


def test_v2_json_infer_equals_onnxruntime(no_code: Server, test_set: tuple, reference_logits: np.ndarray) -> None:
    images = test_set[0][:20]
    body = {"inputs": [{"name": "input", "shape": list(images.shape), "datatype": "FP32", "data": images.tolist()}]}
    r = httpx.post(no_code.url + "/v2/models/digits/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    assert out["name"] == "logits" and out["shape"] == [20, 10]
    assert np.allclose(np.array(out["data"]).reshape(20, 10), reference_logits[:20], atol=1e-5)


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_tritonclient_binary_infer(
    no_code: Server, test_set: tuple, reference_logits: np.ndarray, compression: str | None
) -> None:
    images = test_set[0][:64]
    client = triton.InferenceServerClient(f"127.0.0.1:{no_code.port}")
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("digits")
        meta = client.get_model_metadata("digits")
        assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
        tensor = triton.InferInput("input", list(images.shape), "FP32")
        tensor.set_data_from_numpy(images)  # binary by default
        result = client.infer("digits", [tensor], request_compression_algorithm=compression)
        assert np.array_equal(result.as_numpy("logits"), reference_logits[:64])
    finally:
        client.close()


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/score", b"{not json", 400, "not valid JSON"),
        ("/score", b'{"data": [[1, 2, 3]]}', 400, "shape [1, 3]"),
        ("/v2/models/digits/infer", b'{"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", '
         b'"data": [1, 2, 3]}]}', 400, "shape [1, 3]"),
        ("/v2/models/digits/infer", b'{"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "INT64", '
         b'"data": ' + str([0] * 64).encode() + b"}]}", 400, "datatype INT64 but the model expects FP32"),
        ("/v2/models/nope/infer", b"{}", 404, "unknown model 'nope'"),
        ("/score", b"x" * 1_000_001, 413, "exceeds the limit"),
    ],
)  # fmt: skip
def test_bad_requests_get_errors_and_the_server_keeps_serving(
    no_code: Server, path: str, body: bytes, status: int, fragment: str
) -> None:
    r = httpx.post(no_code.url + path, content=body, timeout=30)
    assert r.status_code == status
    assert fragment in r.json()["error"]
    assert httpx.get(no_code.url + "/").text == "Healthy"
    assert no_code.proc.poll() is None


def test_entry_script_score_equals_onnxruntime(entry: Server, test_set: tuple, reference_logits: np.ndarray) -> None:
    images, labels = test_set
    r = httpx.post(entry.url + "/score", json={"data": images[:, 0].tolist()}, timeout=30)  # [N, 8, 8] images
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    assert predictions == np.argmax(reference_logits, axis=1).tolist()
    assert np.allclose(np.sum(r.json()["probabilities"], axis=1), 1.0, atol=1e-4)
    assert np.mean(np.array(predictions) == labels) > 0.9
    status = entry.status()
    assert status["backend"] == "cpu" and "opencl" in status["backendReason"]


def test_entry_script_bad_input_is_400(entry: Server) -> None:
    r = httpx.post(entry.url + "/score", content=b"{oops", timeout=30)
    # an entry script's errors have Azure ML's shape: {"message": ...}
    assert r.status_code == 400 and "not valid JSON" in r.json()["message"]
    r = httpx.post(entry.url + "/score", json={"data": [[1, 2]]}, timeout=30)
    assert r.status_code == 400 and "shape [1, 2]" in r.json()["message"]
    assert httpx.get(entry.url + "/").text == "Healthy"


def test_entry_script_model_is_served_on_v2(entry: Server, test_set: tuple, reference_logits: np.ndarray) -> None:
    client = triton.InferenceServerClient(f"127.0.0.1:{entry.port}")
    try:
        tensor = triton.InferInput("input", [8, 1, 8, 8], "FP32")
        tensor.set_data_from_numpy(test_set[0][:8])
        result = client.infer("digits", [tensor], outputs=[triton.InferRequestedOutput("logits", binary_data=False)])
        assert np.array_equal(result.as_numpy("logits"), reference_logits[:8])
    finally:
        client.close()


def test_init_raising_exits_1_with_status_failed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "score.py").write_text(
        "def init():\n    raise ValueError('weights missing')\n\ndef run(raw):\n    return raw\n"
    )
    server = start_server(
        tmp_path / "run",
        "--model-dir",
        str(model_dir(tmp_path)),
        "--source-dir",
        str(src),
        "--entry-script",
        "score.py",
    )
    assert server.proc.wait(30) == 1
    status = server.status()
    assert status["state"] == "Failed" and "ValueError: weights missing" in status["message"]


def test_required_accelerator_missing_exits_78_unschedulable(tmp_path: Path) -> None:
    server = start_server(
        tmp_path / "run", "--model-dir", str(model_dir(tmp_path)), "--accelerator", "fpga", "--accelerator-required"
    )
    assert server.proc.wait(30) == 78
    status = server.status()
    assert status["state"] == "Unschedulable" and "fpga" in status["message"]


def test_bad_configuration_exits_1_with_a_message(tmp_path: Path) -> None:
    status_file = tmp_path / "status.json"
    proc = subprocess.run(
        [sys.executable, "-m", "edgefleet.modules.scoring", "--model-dir", str(tmp_path), "--port", "nope",
         "--status-file", str(status_file)],
        cwd=REPO, capture_output=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    assert b"--port: expected an integer" in proc.stderr
    assert json.loads(status_file.read_text())["state"] == "Failed"


SHADOWING_SCORE = """
from agent import tag as agent_tag
from modules.helpers import double
from protocol import wire_name

from edgefleet.modules.scoring import BadInput, load_model


def init():
    global model
    model = load_model()


def run(raw_data):
    if raw_data == "bad":
        raise BadInput("bad: not a request")
    return {"double": double(21), "agent": agent_tag, "protocol": wire_name, "model": model.inputs[0].name}
"""


def test_user_packages_named_like_ours_do_not_shadow_edgefleet(tmp_path: Path) -> None:
    """A source directory with its own ``agent``, ``modules`` and ``protocol`` packages: the script
    gets its helpers, the server keeps its own code (it lives under ``edgefleet.*``)."""
    src = tmp_path / "src"
    for package, body in {
        "agent": "tag = 'users-agent'\n",
        "modules": "",
        "protocol": "wire_name = 'users-protocol'\n",
    }.items():
        (src / package).mkdir(parents=True)
        (src / package / "__init__.py").write_text(body)
    (src / "modules" / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    (src / "score.py").write_text(SHADOWING_SCORE)
    outside = tmp_path / "elsewhere"  # not the checkout: only installed code is importable
    outside.mkdir()
    server = start_server(
        tmp_path / "run", "--model-dir", str(model_dir(tmp_path)), "--source-dir", str(src),
        "--entry-script", "score.py", "--name", "digits", cwd=outside,
    )  # fmt: skip
    try:
        assert server.status()["state"] == "Ready", server.log.read_text()
        r = httpx.post(server.url + "/score", content=b"{}", timeout=30)
        assert r.status_code == 200, r.text
        assert r.json() == {"double": 42, "agent": "users-agent", "protocol": "users-protocol", "model": "input"}
        bad = httpx.post(server.url + "/score", content=b"bad", timeout=30)
        assert bad.status_code == 400 and "bad: not a request" in bad.json()["message"]
        assert httpx.get(server.url + "/v2/health/ready").status_code == 200
    finally:
        assert server.stop() == 0


# --- scoring keys, the request limit before the body, TLS -------------------------------------------

PRIMARY, SECONDARY = "primary-key-0123456789abcdef", "secondary-key-0123456789abcdef"
KEY_ENV = {"EDGEFLEET_PRIMARY_KEY": PRIMARY, "EDGEFLEET_SECONDARY_KEY": SECONDARY}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("keyed")
    server = start_server(
        tmp, "--model-dir", str(model_dir(tmp)), "--name", "digits", "--max-request-bytes", "1000000", env=KEY_ENV
    )
    assert server.status()["state"] == "Ready", server.log.read_text()
    yield server
    assert server.stop() == 0


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def raw_exchange(port: int, request: bytes, timeout: float = 10.0, context: ssl.SSLContext | None = None) -> bytes:
    """Send ``request`` as is and read what the server answers until it closes (or ``timeout``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as plain:
        sock = context.wrap_socket(plain, server_hostname="127.0.0.1") if context else plain
        sock.sendall(request)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return answer


def test_scoring_needs_one_of_the_keys(keyed: Server, test_set: tuple, reference_logits: np.ndarray) -> None:
    body = {"data": test_set[0][:4].reshape(4, 64).tolist()}
    for headers in ({}, bearer("wrong-key-0123456789abcdef"), {"Authorization": f"Basic {PRIMARY}"}):
        r = httpx.post(keyed.url + "/score", json=body, headers=headers, timeout=30)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), r.text
        assert "Authorization: Bearer" in r.json()["error"] or "not valid" in r.json()["error"]
    v2_body = {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}]}
    for path, doc in (("/v2/models/digits/infer", v2_body), ("/v2/models/digits", None)):
        r = httpx.request("POST" if doc else "GET", keyed.url + path, json=doc, timeout=30)
        assert r.status_code == 401, (path, r.text)
    for key in (PRIMARY, SECONDARY):
        r = httpx.post(keyed.url + "/score", json=body, headers=bearer(key), timeout=30)
        assert r.status_code == 200 and r.json()["predictions"] == np.argmax(reference_logits[:4], axis=1).tolist()
    # the health routes the agent probes stay open
    assert httpx.get(keyed.url + "/").text == "Healthy"
    assert httpx.get(keyed.url + "/v2/health/ready").status_code == 200
    assert httpx.get(keyed.url + "/v2/health/live").status_code == 200
    # tritonclient sends the key as a header
    client = triton.InferenceServerClient(f"127.0.0.1:{keyed.port}")
    try:
        tensor = triton.InferInput("input", [4, 1, 8, 8], "FP32")
        tensor.set_data_from_numpy(test_set[0][:4])
        result = client.infer("digits", [tensor], headers=bearer(SECONDARY))
        assert np.array_equal(result.as_numpy("logits"), reference_logits[:4])
        with pytest.raises(InferenceServerException, match=r"401|key"):
            client.infer("digits", [tensor])
    finally:
        client.close()


def test_the_keys_are_never_on_the_command_line_or_in_the_log(keyed: Server) -> None:
    httpx.post(keyed.url + "/score", content=b"{}", headers=bearer("guessed-key-0123456789abcdef"), timeout=30)
    ps = subprocess.run(["ps", "-ww", "-o", "args=", "-p", str(keyed.proc.pid)], capture_output=True, text=True)
    assert "edgefleet.modules.scoring" in ps.stdout
    assert PRIMARY not in ps.stdout and SECONDARY not in ps.stdout
    log = keyed.log.read_text()
    assert "scoring needs a key" in log
    assert PRIMARY not in log and SECONDARY not in log and "guessed-key" not in log


@pytest.mark.parametrize("key", [None, PRIMARY])
def test_a_huge_content_length_is_refused_before_the_body_is_read(keyed: Server, key: str | None) -> None:
    """401 (no key) or 413 (too long) from the headers alone: the body is never sent, and an answer
    comes anyway, which it could not if the server waited to read 10 GB."""
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    request = (
        f"POST /score HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n"
    ).encode()
    answer = raw_exchange(keyed.port, request)
    status = 401 if key is None else 413
    assert answer.startswith(f"HTTP/1.1 {status}".encode()), answer[:200]
    assert b"Connection: close" in answer
    if key:
        assert b"exceeds the limit of 1000000 bytes" in answer
    # Expect: 100-continue gets the refusal instead of a 100
    answer = raw_exchange(keyed.port, request.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n", 1))
    assert answer.startswith(f"HTTP/1.1 {status}".encode()) and b"100 Continue" not in answer, answer[:200]
    # a negative length would have read until the client hung up: it is a 400 at once, key or not (the
    # HTTP parser refuses the header itself, so the request is malformed before anyone asks for a key)
    answer = raw_exchange(keyed.port, request.replace(b"10000000000", b"-1"))
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert httpx.get(keyed.url + "/").text == "Healthy" and keyed.proc.poll() is None


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with ``cryptography``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgefleet test device")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_https_with_keys_and_bad_clients_do_not_take_it_down(tmp_path: Path, test_set: tuple) -> None:
    cert, key = _self_signed(tmp_path)
    server = start_server(
        tmp_path / "run", "--model-dir", str(model_dir(tmp_path)), "--name", "digits",
        "--tls-cert", str(cert), "--tls-key", str(key), env=KEY_ENV,
    )  # fmt: skip
    url = f"https://127.0.0.1:{server.port}"
    trusted = ssl.create_default_context(cafile=str(cert))
    try:
        assert server.status()["state"] == "Ready", server.log.read_text()
        silent = socket.create_connection(("127.0.0.1", server.port))  # connects, never says a word
        try:
            assert httpx.get(url + "/v2/health/ready", verify=trusted, timeout=10).status_code == 200
            body = {"data": test_set[0][:2].reshape(2, 64).tolist()}
            assert httpx.post(url + "/score", json=body, verify=trusted, timeout=30).status_code == 401
            r = httpx.post(url + "/score", json=body, headers=bearer(PRIMARY), verify=trusted, timeout=30)
            assert r.status_code == 200 and len(r.json()["predictions"]) == 2
            with pytest.raises(httpx.ConnectError):  # an unverified certificate is the client's refusal
                httpx.get(url + "/", timeout=10)
            assert raw_exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5)[:4] != b"HTTP"
            assert httpx.get(url + "/", verify=trusted, timeout=10).text == "Healthy"
        finally:
            silent.close()
        assert server.proc.poll() is None
        assert "listening on https://127.0.0.1" in server.log.read_text()
    finally:
        assert server.stop() == 0


def test_an_unreadable_certificate_fails_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate")
    server = start_server(
        tmp_path / "run", "--model-dir", str(model_dir(tmp_path)),
        "--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "cert.pem"),
    )  # fmt: skip
    assert server.proc.wait(30) == 1
    status = server.status()
    assert status["state"] == "Failed" and "cannot load the TLS certificate" in status["message"]

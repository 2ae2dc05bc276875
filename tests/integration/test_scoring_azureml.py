"""Azure ML v1 entry scripts (tests/data/azureml-scripts) run unchanged by the real scoring module,
over HTTP, with the answers azureml-inference-server-http 1.5.1 gives (status, body, headers)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_scoring_server import Server, start_server

SCRIPTS = Path(__file__).resolve().parents[1] / "data" / "azureml-scripts"
GENERIC_500 = {"message": "An unexpected error occurred in scoring script. Check the logs for more info."}

needs_inference_schema = pytest.mark.skipif(
    importlib.util.find_spec("inference_schema") is None,
    reason="the inference_schema scripts need the inference-schema package (dev extras)",
)


def _serve(tmp: Path, script: str, model_dir: Path, *extra: str, env: dict[str, str] | None = None) -> Server:
    src = tmp / "app"
    shutil.copytree(SCRIPTS / script, src)
    server = start_server(
        tmp / "run", "--model-dir", str(model_dir), "--source-dir", str(src), "--entry-script", "score.py",
        *extra, env=env,
    )  # fmt: skip
    assert server.status()["state"] == "Ready", server.log.read_text()
    return server


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    started: list[Server] = []

    def start(script: str, model_dir: Path | None = None, *extra: str, env: dict[str, str] | None = None) -> Server:
        if model_dir is None:
            model_dir = tmp_path / "models"
            model_dir.mkdir(exist_ok=True)
        server = _serve(tmp_path / script, script, model_dir, *extra, env=env)
        started.append(server)
        return server

    yield start
    for server in started:
        assert server.stop() == 0, server.log.read_text()


def _png(width: int = 2, height: int = 2) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


# ---- inference_schema -----------------------------------------------------------------------------------


@needs_inference_schema
def test_numpy_schema_script_gets_parsed_arguments_415_400_and_swagger(serve, tmp_path: Path) -> None:
    models = tmp_path / "weights"
    models.mkdir()
    (models / "weights.json").write_text("[1, 10, 100]")
    server = serve("schema_numpy", models)
    r = httpx.post(server.url + "/score", json={"data": [[1, 2, 3], [0, 0, 1]]})
    assert r.status_code == 200, r.text
    assert r.json() == [321.0, 100.0]
    assert r.headers["x-ms-run-function-failed"] == "False"
    assert r.headers["x-ms-request-id"] and r.headers["x-request-id"]
    # a body that is not declared JSON: 415, as the reference server
    r = httpx.post(server.url + "/score", content=b'{"data": [[1, 2, 3]]}', headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and r.json() == {"message": "Expects Content-Type to be application/json"}
    r = httpx.post(server.url + "/score", content=b"[1]", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json() == {"message": "POST body should be a JSON dictionary."}
    r = httpx.post(server.url + "/score", json={"other": 1})
    assert r.status_code == 400 and r.json() == {"message": "A value is not provided for the 'data' parameter."}
    # GET passes the query's arguments, each parsed as JSON
    r = httpx.get(server.url + "/score", params={"data": "[[1, 1, 1]]"})
    assert r.status_code == 200 and r.json() == [111.0]
    swagger = httpx.get(server.url + "/swagger.json").json()
    assert swagger["swagger"] == "2.0"
    assert swagger["definitions"]["ServiceInput"]["properties"]["data"]["type"] == "array"
    assert swagger["definitions"]["ServiceOutput"]["type"] == "array"
    openapi = httpx.get(server.url + "/swagger.json", params={"version": "3"}).json()
    assert openapi["openapi"].startswith("3.")
    assert "data" in openapi["components"]["schemas"]["ServiceInput"]["properties"]
    r = httpx.get(server.url + "/swagger.json", params={"version": "9"})
    assert r.status_code == 404 and "not valid" in r.json()["message"]


@needs_inference_schema
def test_standard_schema_script_defaults_and_request_headers(serve) -> None:
    server = serve("schema_standard")
    r = httpx.post(server.url + "/score", json={"words": ["x", "y"]}, headers={"X-Tenant": "t1"})
    assert r.status_code == 200, r.text
    assert r.json() == {"words": ["x", "y"], "tenant": "t1"}
    r = httpx.post(server.url + "/score", json={"words": ["x"], "upper": True})
    assert r.json() == {"words": ["X"], "tenant": ""}
    r = httpx.options(server.url + "/score")  # not @rawhttp: 200, empty, run() not called
    assert r.status_code == 200 and r.content == b""
    r = httpx.put(server.url + "/score", json={"words": []})
    assert r.status_code == 405 and r.json() == {"message": "The method is not allowed for the requested URL."}
    r = httpx.head(server.url + "/score")  # routed with GET, refused by the input parser as the reference does
    assert r.status_code == 405


# ---- rawhttp --------------------------------------------------------------------------------------------


def test_rawhttp_json_script_gets_the_request_for_get_and_post(serve) -> None:
    server = serve("rawhttp_json")
    r = httpx.get(server.url + "/score?a=1&b=x&b=y")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"full_path": "/score?a=1&b=x&b=y", "args": {"a": ["1"], "b": ["x", "y"]}}
    r = httpx.post(server.url + "/score", json={"data": [1, 2, 3]})
    assert r.status_code == 200
    assert r.json() == {"sum": 6, "content_type": "application/json", "path": "/score"}
    r = httpx.options(server.url + "/score")  # reaches run(), which answers 500 itself
    assert r.status_code == 500 and r.text == "bad request"
    assert r.headers["x-ms-run-function-failed"] == "True"
    assert httpx.delete(server.url + "/score").status_code == 405  # not routed to run()


def test_rawhttp_multipart_image_upload(serve) -> None:
    server = serve("rawhttp_image")
    png = _png()
    r = httpx.post(server.url + "/score", files={"image": ("dot.png", png, "image/png")}, data={"label": "red"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["filename"] == "dot.png" and doc["content_type"] == "image/png" and doc["bytes"] == len(png)
    assert doc["png"] and doc["saved_equal"] and doc["label"] == "red"
    r = httpx.post(server.url + "/score", data={"label": "none"})
    assert r.status_code == 400 and r.json() == {"error": "no file field 'image'"}
    assert r.headers["x-ms-run-function-failed"] == "False"


def test_cors_headers_from_amlresponse(serve) -> None:
    server = serve("cors")
    r = httpx.options(server.url + "/score", headers={"Origin": "https://example.org"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["access-control-allow-methods"] == "OPTIONS, GET, POST"
    r = httpx.post(server.url + "/score", content=b"abc")
    assert r.status_code == 200 and r.content == b"cba"
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["content-type"].startswith("text/html")
    assert httpx.get(server.url + "/score").status_code == 400


# ---- Model.get_model_path -------------------------------------------------------------------------------


def test_get_model_path_one_model_registered_as_a_folder(serve, tmp_path: Path) -> None:
    models = tmp_path / "one"
    (models / "model").mkdir(parents=True)
    (models / "model" / "model.json").write_text('{"scale": 3}')
    server = serve("model_single", models)
    r = httpx.post(server.url + "/score", content=json.dumps({"data": [1, 2]}))
    assert r.status_code == 200, r.text
    assert r.json() == {"scaled": [3, 6], "model_path": str((models / "model").resolve())}


def test_get_model_path_several_models_with_versions(serve, tmp_path: Path) -> None:
    models = tmp_path / "several"
    for name, version, scale in [("first", 1, 2), ("second", 1, 10), ("second", 2, 20)]:
        (models / name / str(version)).mkdir(parents=True)
        (models / name / str(version) / f"{name}.json").write_text(json.dumps({"scale": scale}))
    server = serve("model_multi", models)
    r = httpx.post(server.url + "/score", content=b'{"x": 1}')
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["first"], doc["second"], doc["second_v1"]) == (2, 20, 10)
    assert doc["paths"]["second"].endswith("second/2/second.json")


def test_missing_model_fails_init_with_a_clear_status(tmp_path: Path) -> None:
    models = tmp_path / "empty"
    models.mkdir()
    src = tmp_path / "app"
    shutil.copytree(SCRIPTS / "model_multi", src)
    server = start_server(
        tmp_path / "run", "--model-dir", str(models), "--source-dir", str(src), "--entry-script", "score.py"
    )
    try:
        status = server.status()
        assert status["state"] == "Failed"
        assert "ModelNotFound" in status["message"] and "'first'" in status["message"]
    finally:
        server.stop()


# ---- plain scripts, environment and errors --------------------------------------------------------------


def test_plain_script_raw_string_environment_and_generic_500(serve, tmp_path: Path) -> None:
    server = serve("plain")
    r = httpx.post(server.url + "/score", content=b"1", headers={"x-ms-client-request-id": "client-7"})
    assert r.status_code == 200, r.text
    assert r.json() == {"raw_type": "str", "raw": "1", "label": "one"}
    assert r.headers["x-ms-client-request-id"] == "client-7" and r.headers["x-ms-request-id"] == "client-7"
    r = httpx.get(server.url + "/score?a=1&b=[1,2]")  # GET: the query's arguments as a JSON string
    assert r.status_code == 200 and json.loads(r.json()["raw"]) == {"a": 1, "b": [1, 2]}
    env = httpx.post(server.url + "/score", content=b'"env"').json()
    app = str((tmp_path / "plain" / "app").resolve())
    assert env["AML_APP_ROOT"] == app and env["cwd"] == app
    assert env["AZUREML_ENTRY_SCRIPT"] == str(Path(app) / "score.py")
    assert env["WORKER_COUNT"] and int(env["WORKER_COUNT"]) >= 1
    assert Path(env["AZUREML_MODEL_DIR"]).is_absolute()
    r = httpx.post(server.url + "/score", content=b'"boom"', headers={"x-request-id": "req-1"})
    assert r.status_code == 500 and r.json() == GENERIC_500
    assert r.headers["x-ms-run-function-failed"] == "True" and r.headers["x-request-id"] == "req-1"
    assert "secret-customer-field" not in r.text
    assert "secret-customer-field" in server.log.read_text()  # logged for the operator
    r = httpx.post(server.url + "/score", content=b"1", headers={"x-request-id": "x" * 101})
    assert r.status_code == 431
    assert "x-request-id" in httpx.get(server.url + "/").headers  # every answer carries an id
    # an undecorated run(): the swagger has empty schemas; a swagger3.json of the app is served as it is
    swagger = httpx.get(server.url + "/swagger.json").json()
    assert swagger["definitions"]["ServiceInput"] == {"type": "object", "example": {}}
    (Path(app) / "swagger3.json").write_text('{"openapi": "3.0.0", "info": {"title": "mine"}}')
    assert httpx.get(server.url + "/swagger.json?version=3").json()["info"] == {"title": "mine"}


def test_rawhttp_on_the_threading_transport_and_the_server_package_import_path(serve, tmp_path: Path) -> None:
    """--transport threading answers OPTIONS too; newer samples import azureml_inference_server_http.api."""
    server = serve("cors", None, "--transport", "threading")
    r = httpx.options(server.url + "/score")
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    assert float(r.headers["x-ms-run-fn-exec-ms"]) >= 0 and r.headers["x-request-id"]
    src = tmp_path / "server-api" / "app"
    src.mkdir(parents=True)
    (src / "score.py").write_text(
        "from azureml_inference_server_http.api.aml_request import rawhttp\n"
        "from azureml_inference_server_http.api.aml_response import AMLResponse\n"
        "def init():\n    pass\n"
        "@rawhttp\n"
        "def run(request):\n    return AMLResponse({'method': request.method}, 202, json_str=True)\n"
    )
    other = start_server(
        tmp_path / "server-api" / "run",
        "--model-dir",
        str(tmp_path),
        "--source-dir",
        str(src),
        "--entry-script",
        "score.py",
    )
    try:
        assert other.status()["state"] == "Ready", other.log.read_text()
        r = httpx.get(other.url + "/score")
        assert r.status_code == 202 and r.json() == {"method": "GET"}
    finally:
        assert other.stop() == 0

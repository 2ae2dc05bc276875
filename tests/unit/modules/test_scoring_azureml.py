"""The Azure ML pieces of the scoring module without sockets: run() kinds and arguments
(amlcall), AMLRequest / AMLResponse (rawhttp), Model.get_model_path layouts (amlmodel)."""

from __future__ import annotations

import inspect
import json
import uuid
from pathlib import Path

import pytest

from edgefleet.modules.scoring import amlcall, rawhttp
from edgefleet.modules.scoring.amlmodel import Model, ModelNotFound, get_model_path
from edgefleet.modules.scoring.errors import EntryScriptError
from edgefleet.modules.scoring.service import new_request_id, request_ids


@pytest.fixture(autouse=True)
def _no_rawhttp_flag() -> None:
    rawhttp.reset_rawhttp()
    yield
    rawhttp.reset_rawhttp()


# ---- run() kinds and arguments --------------------------------------------------------------------------


def test_plain_run_gets_the_body_or_the_query_as_a_string() -> None:
    # inference_schema keys its registry by module and function name: each test's run() has its own
    def run_plain(raw_data):
        return raw_data

    sig = amlcall.analyse(run_plain, "score.py")
    assert sig.kind is amlcall.RunKind.STRING
    assert amlcall.run_arguments(sig, "POST", "/score", {}, b'{"a": 1}') == {"raw_data": '{"a": 1}'}
    got = amlcall.run_arguments(sig, "GET", "/score?a=1&b=[1,2]&c=x&c=y&d=null", {}, b"")
    assert json.loads(got["raw_data"]) == {"a": 1, "b": [1, 2], "c": ["x", "y"], "d": None}
    with pytest.raises(amlcall.AnswerOptions):
        amlcall.run_arguments(sig, "OPTIONS", "/score", {}, b"")
    with pytest.raises(amlcall.MethodNotAllowed):
        amlcall.run_arguments(sig, "PUT", "/score", {}, b"")
    with pytest.raises(amlcall.BadScoreInput, match="UTF-8"):
        amlcall.run_arguments(sig, "POST", "/score", {}, b"\xff")


def test_schema_decorated_run_is_called_with_the_json_body() -> None:
    pytest.importorskip("inference_schema")
    from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
    from inference_schema.schema_decorators import input_schema

    @input_schema("data", StandardPythonParameterType([1, 2]))
    def run(data, scale=2, request_headers=None):
        return [x * scale for x in data]

    sig = amlcall.analyse(run, "score.py")
    assert sig.kind is amlcall.RunKind.SCHEMA and sig.wants_headers
    json_headers = {"content-type": "application/json; charset=utf-8", "x-tenant": "t"}
    kwargs = amlcall.run_arguments(sig, "POST", "/score", json_headers, b'{"data": [1, 2], "extra": 0}')
    assert kwargs == {
        "data": [1, 2],
        "scale": 2,
        "request_headers": {"Content-Type": json_headers["content-type"], "X-Tenant": "t"},
    }
    assert run(**kwargs) == [2, 4]
    assert amlcall.run_arguments(sig, "POST", "/score", {"Content-Type": "application/vnd.x+json"}, b'{"data": []}')
    with pytest.raises(amlcall.UnsupportedMediaType):
        amlcall.run_arguments(sig, "POST", "/score", {"content-type": "text/plain"}, b'{"data": []}')
    with pytest.raises(amlcall.BadScoreInput, match="empty"):
        amlcall.run_arguments(sig, "POST", "/score", json_headers, b"")
    with pytest.raises(amlcall.BadScoreInput, match="could not be decoded"):
        amlcall.run_arguments(sig, "POST", "/score", json_headers, b"{")
    with pytest.raises(amlcall.BadScoreInput, match="'data'"):
        amlcall.run_arguments(sig, "POST", "/score", json_headers, b'{"scale": 1}')
    assert amlcall.run_arguments(sig, "GET", "/score?data=[3]&scale=5", {}, b"")["scale"] == 5
    doc = amlcall.swagger(run, "2", "svc", "1")
    assert doc is not None and doc["definitions"]["ServiceInput"]["properties"]["data"]["type"] == "array"


def test_rawhttp_run_gets_the_request_for_every_method() -> None:
    @rawhttp.rawhttp
    def run_raw(request):
        return request

    sig = amlcall.analyse(run_raw, "score.py")
    assert sig.kind is amlcall.RunKind.RAW
    for method in ("GET", "POST", "OPTIONS", "DELETE"):
        request = amlcall.run_arguments(sig, method, "/score?q=1", {"Host": "h:1"}, b"x")["request"]
        assert isinstance(request, rawhttp.AMLRequest) and request.method == method
        assert request.url == "http://h:1/score?q=1" and request.args["q"] == "1"


def test_unusable_run_signatures_are_refused_at_load() -> None:
    def star(*args):
        return args

    def headers_only(request_headers):
        return request_headers

    with pytest.raises(EntryScriptError, match=r"\*args"):
        amlcall.analyse(star, "score.py")
    with pytest.raises(EntryScriptError, match="parameter for the input"):
        amlcall.analyse(headers_only, "score.py")


# ---- AMLRequest / AMLResponse ---------------------------------------------------------------------------


def test_amlrequest_surface() -> None:
    body = (
        b'--XX\r\nContent-Disposition: form-data; name="label"\r\n\r\ncat\r\n'
        b'--XX\r\nContent-Disposition: form-data; name="image"; filename="a.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n\x00\x01\r\n\x02\r\n--XX--\r\n"
    )
    headers = {"content-type": "multipart/form-data; boundary=XX", "authorization": "Bearer s3cret"}
    request = rawhttp.AMLRequest("post", "/score?a=1&a=2&b=", headers, body)
    assert request.method == "POST" and request.path == "/score" and request.full_path == "/score?a=1&a=2&b="
    assert request.args.getlist("a") == ["1", "2"] and request.args["b"] == ""
    assert request.headers["Content-Type"].startswith("multipart/") and "CONTENT-TYPE" in request.headers
    assert request.form["label"] == "cat"
    upload = request.files["image"]
    assert (upload.filename, upload.content_type, upload.read()) == (
        "a.bin",
        "application/octet-stream",
        b"\x00\x01\r\n\x02",
    )
    assert request.get_data() == body and not request.is_json and request.json is None
    assert "s3cret" not in repr(request.headers)  # no header values in logs
    js = rawhttp.AMLRequest("POST", "/score", {"Content-Type": "application/json"}, b'{"k": [1]}')
    assert js.is_json and js.get_json() == {"k": [1]} and js.get_data(as_text=True) == '{"k": [1]}'
    assert js.files == {} and js.full_path == "/score?"


def test_amlresponse_shapes() -> None:
    r = rawhttp.AMLResponse({"a": 1}, 201, json_str=True)
    assert (r.status_code, r.content_type, json.loads(r.body)) == (201, "application/json", {"a": 1})
    r = rawhttp.AMLResponse(b"\x89PNG", 200, {"Content-Type": "image/png", "Vary": "Origin,Accept"})
    assert (r.content_type, r.body, r.headers) == ("image/png", b"\x89PNG", {"Vary": "Origin, Accept"})
    r = rawhttp.AMLResponse(None, 200)
    assert (r.body, r.content_type) == (b"{}", "application/json")
    assert rawhttp.AMLResponse("hi", 400).content_type == "text/html; charset=utf-8"


def test_request_ids() -> None:
    generated = {new_request_id() for _ in range(1000)}
    assert len(generated) == 1000 and all(uuid.UUID(i).version == 4 for i in generated)
    ids = request_ids({})
    assert ids["x-request-id"] == ids["x-ms-request-id"] and "x-ms-client-request-id" not in ids
    ids = request_ids({"x-request-id": "r", "x-ms-client-request-id": "c"})
    assert ids == {"x-request-id": "r", "x-ms-request-id": "c", "x-ms-client-request-id": "c"}
    ids = request_ids({"x-ms-request-id": "legacy"})
    assert ids["x-ms-request-id"] == ids["x-ms-client-request-id"] == "legacy"
    assert request_ids({"x-request-id": "x" * 101})["x-request-id"] != "x" * 101


# ---- Model.get_model_path -------------------------------------------------------------------------------


def test_get_model_path_one_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "model.pkl").write_bytes(b"m")
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path))
    assert Model.get_model_path("anything") == str(tmp_path / "model.pkl")
    (tmp_path / "extra.txt").write_text("")
    assert Model.get_model_path("anything") == str(tmp_path)  # several files: the directory
    assert Model.get_model_path("model.pkl") == str(tmp_path / "model.pkl")  # registered under its file name


def test_get_model_path_several_models(tmp_path: Path) -> None:
    for name, version in [("a", 1), ("a", 2), ("a", 10), ("b", 3)]:
        (tmp_path / name / str(version)).mkdir(parents=True)
        (tmp_path / name / str(version) / "w.bin").write_bytes(b"")
    (tmp_path / "flat").mkdir()
    assert get_model_path("a", model_dir=tmp_path) == str(tmp_path / "a" / "10" / "w.bin")  # numeric, not text, order
    assert get_model_path("a", 2, model_dir=tmp_path) == str(tmp_path / "a" / "2" / "w.bin")
    assert get_model_path("flat", model_dir=tmp_path) == str(tmp_path / "flat")
    with pytest.raises(ModelNotFound, match="versions: 1, 2, 10"):
        get_model_path("a", 5, model_dir=tmp_path)
    with pytest.raises(ValueError):
        get_model_path("../etc", model_dir=tmp_path)
    with pytest.raises(ValueError):
        get_model_path("a", "latest", model_dir=tmp_path)


def test_get_model_path_needs_the_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZUREML_MODEL_DIR", raising=False)
    with pytest.raises(ModelNotFound, match="AZUREML_MODEL_DIR"):
        get_model_path("m")
    with pytest.raises(ModelNotFound, match="empty"):
        get_model_path("m", model_dir=tmp_path)
    with pytest.raises(NotImplementedError):
        Model("ws", "m")


def test_signature_of_a_wrapped_run_is_the_users() -> None:
    pytest.importorskip("inference_schema")
    from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
    from inference_schema.schema_decorators import input_schema

    @input_schema("x", StandardPythonParameterType(1))
    def run_wrapped(x, y=0):
        return x + y

    assert list(inspect.signature(run_wrapped).parameters) == ["x", "y"]

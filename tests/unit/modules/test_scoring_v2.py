"""v2 codec against tritonclient's own encoder/decoder: what the real client sends and reads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.http._utils import _get_inference_request

from edgefleet.accelerators.base import TensorInfo
from edgefleet.modules.scoring import v2
from edgefleet.modules.scoring.errors import BadRequest
from edgefleet.modules.scoring.tensors import v2_datatype


def _triton_request(
    arrays: dict[str, np.ndarray], binary: bool, outputs: list[httpclient.InferRequestedOutput] | None = None
) -> tuple[bytes, int | None]:
    inputs = []
    for name, array in arrays.items():
        tensor = httpclient.InferInput(name, list(array.shape), v2_datatype(array.dtype))
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    body, json_size = _get_inference_request(inputs, "req-1", outputs, 0, False, False, 0, None, None)
    return body, json_size


@pytest.mark.parametrize("binary", [True, False])
def test_parses_what_tritonclient_sends(binary: bool) -> None:
    rng = np.random.default_rng(1)
    arrays = {
        "image": rng.random((2, 1, 8, 8), dtype=np.float32),
        "mask": rng.integers(0, 2, (2, 3)).astype(np.bool_),
        "ids": rng.integers(-5, 5, (4,), dtype=np.int64),
        "half": rng.random((3,)).astype(np.float16),
    }
    body, json_size = _triton_request(arrays, binary)
    request = v2.parse_infer_request(
        body, v2.parse_header_length(None if json_size is None else str(json_size), len(body))
    )
    assert request.request_id == "req-1"
    assert request.binary_data_output is True  # tritonclient's default when no outputs are named
    for name, array in arrays.items():
        assert request.inputs[name].dtype == array.dtype
        assert np.array_equal(request.inputs[name], array)


def test_nested_json_data_is_accepted() -> None:
    doc = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "INT32", "data": [[1, 2], [3, 4]]}]}
    request = v2.parse_infer_request(json.dumps(doc).encode(), None)
    assert request.inputs["x"].tolist() == [[1, 2], [3, 4]]
    assert request.outputs is None and request.binary_data_output is False


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_decodes_our_response(binary: bool) -> None:
    logits = np.random.default_rng(2).random((3, 10), dtype=np.float32)
    labels = np.array([[1], [2], [3]], np.int64)
    body, json_length = v2.encode_infer_response(
        "digits", "1", "req-9", {"logits": logits, "labels": labels}, [("logits", binary), ("labels", False)]
    )
    result = httpclient.InferResult.from_response_body(body, header_length=json_length)
    assert np.array_equal(result.as_numpy("logits"), logits)
    assert np.array_equal(result.as_numpy("labels"), labels)
    assert result.get_response()["model_name"] == "digits"
    assert result.get_response()["id"] == "req-9"
    assert (json_length is None) == (not binary)


def test_requested_outputs_select_and_override_binary() -> None:
    outputs = [httpclient.InferRequestedOutput("b", binary_data=False), httpclient.InferRequestedOutput("a")]
    body, json_size = _triton_request({"x": np.zeros(2, np.float32)}, True, outputs)
    request = v2.parse_infer_request(body, json_size)
    assert v2.select_outputs(request, ["a", "b"]) == [("b", False), ("a", True)]
    with pytest.raises(BadRequest, match=r"unknown output.*'c'"):
        v2.select_outputs(v2.InferRequest({}, outputs=[v2.RequestedOutput("c")]), ["a", "b"])


def _input(name: str = "x", **fields: object) -> bytes:
    return json.dumps({"inputs": [{"name": name, "shape": [2], "datatype": "FP32", **fields}]}).encode()


@pytest.mark.parametrize(
    ("body", "header_length", "fragment"),
    [
        (b"{oops", None, "not valid JSON"),
        (b"[]", None, "must be a JSON object"),
        (b'{"inputs": []}', None, '"inputs" must be a non-empty list'),
        (_input(data=[1.0, 2.0, 3.0]), None, "3 values do not fill shape [2]"),
        (_input(data=[1.0, 2.0], datatype="FP8"), None, "unsupported datatype 'FP8'"),
        (_input(data=[1.0, 2.0], shape=[-1]), None, "shape must be a list of non-negative integers"),
        (_input(), None, "neither 'data' nor parameters.binary_data_size"),
        (_input(parameters={"binary_data_size": 7}), None, "binary_data_size 7 does not match"),
        (_input(data=[[1.0], [2.0, 3.0]]), None, "not a rectangular array"),
    ],
)
def test_bad_requests_name_the_problem(body: bytes, header_length: int | None, fragment: str) -> None:
    with pytest.raises(BadRequest) as info:
        v2.parse_infer_request(body, header_length)
    assert fragment in info.value.message


def test_binary_data_must_be_exactly_claimed() -> None:
    header = _input(parameters={"binary_data_size": 8})
    data = np.array([1.5, -2.0], np.float32).tobytes()
    assert v2.parse_infer_request(header + data, len(header)).inputs["x"].tolist() == [1.5, -2.0]
    with pytest.raises(BadRequest, match="ends before its 8 bytes"):
        v2.parse_infer_request(header + data[:4], len(header))
    with pytest.raises(BadRequest, match="4 bytes of binary data follow that no input claims"):
        v2.parse_infer_request(header + data + b"abcd", len(header))


def test_header_length_must_fit_the_body() -> None:
    assert v2.parse_header_length(None, 10) is None
    assert v2.parse_header_length("10", 10) == 10
    for bad in ("0", "11", "x"):
        with pytest.raises(BadRequest, match=v2.HEADER_LENGTH):
            v2.parse_header_length(bad, 10)


def test_model_metadata_marks_dynamic_dimensions() -> None:
    meta = v2.model_metadata(
        "digits", "1", "onnxruntime_onnx", [TensorInfo("input", "float32", (None, 1, 8, 8))],
        [TensorInfo("logits", "float32", (None, 10))],
    )  # fmt: skip
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert meta["outputs"][0]["shape"] == [-1, 10]

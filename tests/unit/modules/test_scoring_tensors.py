from __future__ import annotations

import numpy as np
import pytest

from edgefleet.accelerators.base import TensorInfo
from edgefleet.modules.scoring.errors import BadRequest
from edgefleet.modules.scoring.nocode import format_score_result, parse_score_body
from edgefleet.modules.scoring.tensors import check_feeds, coerce_shape, to_array, v2_datatype

IMAGE = TensorInfo("input", "float32", (None, 1, 8, 8))


def test_coerce_accepts_exact_flattened_and_single_sample() -> None:
    assert coerce_shape(np.zeros((2, 1, 8, 8), np.float32), IMAGE).shape == (2, 1, 8, 8)
    assert coerce_shape(np.zeros((3, 64), np.float32), IMAGE).shape == (3, 1, 8, 8)
    assert coerce_shape(np.zeros((1, 8, 8), np.float32), IMAGE).shape == (1, 1, 8, 8)
    flat = np.arange(128, dtype=np.float32).reshape(2, 64)
    assert np.array_equal(coerce_shape(flat, IMAGE)[1, 0, 7], flat[1, 56:64])


def test_coerce_rejects_wrong_sizes_with_both_shapes() -> None:
    with pytest.raises(BadRequest, match=r"shape \[2, 63\] but the model expects \[batch, 1, 8, 8\]"):
        coerce_shape(np.zeros((2, 63), np.float32), IMAGE)


def test_check_feeds_is_strict_about_names_dtypes_and_shapes() -> None:
    ok = {"input": np.zeros((4, 1, 8, 8), np.float32)}
    assert check_feeds(ok, [IMAGE]) is not ok and check_feeds(ok, [IMAGE])["input"] is ok["input"]
    with pytest.raises(BadRequest, match=r"unknown input.*'image'"):
        check_feeds({"image": ok["input"]}, [IMAGE])
    with pytest.raises(BadRequest, match=r"missing input.*'input'"):
        check_feeds({}, [IMAGE])
    with pytest.raises(BadRequest, match="datatype FP64 but the model expects FP32"):
        check_feeds({"input": np.zeros((4, 1, 8, 8))}, [IMAGE])
    with pytest.raises(BadRequest, match=r"shape \[4, 64\]"):
        check_feeds({"input": np.zeros((4, 64), np.float32)}, [IMAGE])


def test_to_array_rejects_ragged_and_non_numeric_data() -> None:
    with pytest.raises(BadRequest, match="input 'x'"):
        to_array([[1, 2], [3]], np.dtype(np.float32), "input 'x'")
    with pytest.raises(BadRequest, match="input 'x'"):
        to_array(["a"], np.dtype(np.float32), "input 'x'")


def test_v2_datatype_names() -> None:
    assert [v2_datatype(t) for t in ("float32", "uint8", "int64", "bool", "float16")] == [
        "FP32",
        "UINT8",
        "INT64",
        "BOOL",
        "FP16",
    ]
    with pytest.raises(BadRequest):
        v2_datatype(np.dtype(object))


def test_nocode_body_with_data_or_named_inputs() -> None:
    rows = np.random.default_rng(0).random((2, 64)).tolist()
    feeds = parse_score_body(f'{{"data": {rows}}}'.encode(), [IMAGE])
    assert feeds["input"].shape == (2, 1, 8, 8) and feeds["input"].dtype == np.float32
    named = parse_score_body(f'{{"inputs": {{"input": {rows}}}}}'.encode(), [IMAGE])
    assert np.array_equal(named["input"], feeds["input"])


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", '"data" or "inputs"'),
        (b'{"data": [1], "inputs": {}}', '"data" or "inputs"'),
        (b'{"inputs": {"image": [[0]]}}', "unknown ['image']"),
        (b'{"data": [[1, 2, 3]]}', "shape [1, 3]"),
        (b'{"data": [["a"]]}', "not a rectangular array"),
    ],
)
def test_nocode_bad_bodies(body: bytes, fragment: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_score_body(body, [IMAGE])
    assert fragment in info.value.message


def test_nocode_data_needs_a_single_input_model() -> None:
    two = [TensorInfo("a", "float32", (None, 2)), TensorInfo("b", "float32", (None, 2))]
    with pytest.raises(BadRequest, match="several inputs"):
        parse_score_body(b'{"data": [[1, 2]]}', two)


def test_format_adds_predictions_for_a_single_2d_float_output() -> None:
    logits = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]], np.float32)
    result = format_score_result({"logits": logits})
    assert result["predictions"] == [1, 0]
    assert np.allclose(result["outputs"]["logits"], logits)
    assert "predictions" not in format_score_result({"a": logits, "b": logits})
    assert "predictions" not in format_score_result({"ids": np.array([[1, 2]], np.int64)})

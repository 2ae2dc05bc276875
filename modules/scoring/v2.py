"""Open Inference Protocol v2 (KServe / Triton) request parsing and response encoding. Pure functions.

Includes the binary tensor data extension that ``tritonclient.http`` uses by default:

- request: the body is a JSON header of ``Inference-Header-Content-Length`` bytes followed by the
  raw tensors, in input order, of every input whose ``parameters.binary_data_size`` is set
  (little-endian, row-major, no padding).
- response: an output is sent binary when its requested output says ``binary_data: true`` or, for
  outputs not named in the request, when the request parameter ``binary_data_output`` is true. Its
  JSON entry then carries ``parameters.binary_data_size`` and the bytes follow the JSON header; the
  ``Inference-Header-Content-Length`` response header gives the JSON length.

Binary request tensors are numpy views of the request body (no copy); JSON goes through orjson.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from edgefleet.accelerators.base import TensorInfo
from edgefleet.modules.scoring.errors import BadRequest
from edgefleet.modules.scoring.tensors import numpy_dtype, to_array, v2_datatype

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_CONTENT_TYPE = "application/octet-stream"
JSON_CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool | None = None  # None: follow the request's binary_data_output


@dataclass
class InferRequest:
    inputs: dict[str, np.ndarray]
    request_id: str | None = None
    outputs: list[RequestedOutput] | None = None  # None: all outputs
    binary_data_output: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)


def parse_header_length(value: str | None, body_length: int) -> int | None:
    if value is None:
        return None
    try:
        n = int(value)
    except ValueError:
        raise BadRequest(f"header {HEADER_LENGTH}: expected an integer, got {value!r}") from None
    if not 0 < n <= body_length:
        raise BadRequest(f"header {HEADER_LENGTH}: {n} is outside the body's 1..{body_length} bytes")
    return n


def _json_object(text: bytes | memoryview, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:  # invalid UTF-8 included
        raise BadRequest(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _parameters(obj: Mapping[str, Any], where: str) -> dict[str, Any]:
    params = obj.get("parameters", {})
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise BadRequest(f"{where}.parameters must be an object")
    return params


def _shape(value: object, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value):
        raise BadRequest(f"{where}.shape must be a list of non-negative integers, got {value!r}")
    return tuple(value)


def parse_infer_request(body: bytes, header_length: int | None) -> InferRequest:
    """Decode a v2 infer request (JSON, or JSON header + binary tensors) into numpy inputs."""
    view = memoryview(body)  # slices of a view share the body's bytes
    header, binary = (view, view[:0]) if header_length is None else (view[:header_length], view[header_length:])
    doc = _json_object(header, "inference request")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise BadRequest('inference request: "inputs" must be a non-empty list')
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for i, item in enumerate(raw_inputs):
        where = f"inputs[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest(f"{where} must be an object with a string 'name'")
        name = item["name"]
        where = f"input {name!r}"
        if name in inputs:
            raise BadRequest(f"{where} appears twice")
        dtype = numpy_dtype(str(item.get("datatype")), where)
        shape = _shape(item.get("shape"), where)
        count = math.prod(shape)
        size = _parameters(item, where).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size != count * dtype.itemsize:
                raise BadRequest(
                    f"{where}: binary_data_size {size!r} does not match shape {list(shape)} of {v2_datatype(dtype)} "
                    f"({count * dtype.itemsize} bytes)"
                )
            if offset + size > len(binary):
                raise BadRequest(f"{where}: the body ends before its {size} bytes of binary data")
            array = np.frombuffer(binary[offset : offset + size], dtype=dtype.newbyteorder("<")).reshape(shape)
            offset += size
        else:
            if "data" not in item:
                raise BadRequest(f"{where} has neither 'data' nor parameters.binary_data_size")
            array = to_array(item["data"], dtype, where)
            if array.size != count:
                raise BadRequest(f"{where}: {array.size} values do not fill shape {list(shape)} ({count} values)")
            array = array.reshape(shape)
        inputs[name] = array
    if offset != len(binary):
        raise BadRequest(f"inference request: {len(binary) - offset} bytes of binary data follow that no input claims")
    return InferRequest(
        inputs=inputs,
        request_id=str(doc["id"]) if doc.get("id") is not None else None,
        outputs=_requested_outputs(doc.get("outputs")),
        binary_data_output=bool(_parameters(doc, "inference request").get("binary_data_output", False)),
        parameters=_parameters(doc, "inference request"),
    )


def _requested_outputs(raw: object) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise BadRequest('inference request: "outputs" must be a list')
    outputs = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest(f"outputs[{i}] must be an object with a string 'name'")
        binary = _parameters(item, f"outputs[{i}]").get("binary_data")
        outputs.append(RequestedOutput(item["name"], None if binary is None else bool(binary)))
    return outputs


def select_outputs(request: InferRequest, available: Sequence[str]) -> list[tuple[str, bool]]:
    """(output name, send binary) in response order; unknown names are a 400 before the model runs."""
    if request.outputs is None or not request.outputs:
        return [(name, request.binary_data_output) for name in available]
    unknown = [o.name for o in request.outputs if o.name not in available]
    if unknown:
        raise BadRequest(
            f"unknown output(s) {', '.join(map(repr, unknown))}; the model's outputs are "
            + ", ".join(map(repr, available))
        )
    return [(o.name, request.binary_data_output if o.binary is None else o.binary) for o in request.outputs]


def encode_infer_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: Mapping[str, np.ndarray],
    selected: Sequence[tuple[str, bool]],
) -> tuple[bytes, int | None]:
    """The response body and, when binary tensors follow the JSON, the JSON header's length."""
    entries: list[dict[str, Any]] = []
    chunks: list[memoryview] = []
    for name, binary in selected:
        array = np.asarray(outputs[name])
        entry: dict[str, Any] = {"name": name, "datatype": v2_datatype(array.dtype), "shape": list(array.shape)}
        if binary:
            # a view of the output's bytes: the join below is the one copy
            raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).data.cast("B")
            entry["parameters"] = {"binary_data_size": raw.nbytes}
            chunks.append(raw)
        else:
            entry["data"] = np.ascontiguousarray(array).ravel()  # orjson writes numeric arrays natively
        entries.append(entry)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": entries}
    if request_id is not None:
        doc["id"] = request_id
    header = orjson.dumps(doc, default=_tolist, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)


def _tolist(value: Any) -> Any:
    """What orjson does not write natively (float16 before orjson 3.x, 0-d arrays): as Python values."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def tensor_metadata(infos: Sequence[TensorInfo]) -> list[dict[str, Any]]:
    return [
        {"name": i.name, "datatype": v2_datatype(i.dtype), "shape": [-1 if d is None else d for d in i.shape]}
        for i in infos
    ]


def model_metadata(
    name: str, version: str, platform: str, inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo]
) -> dict[str, Any]:
    return {
        "name": name,
        "versions": [version],
        "platform": platform,
        "inputs": tensor_metadata(inputs),
        "outputs": tensor_metadata(outputs),
    }

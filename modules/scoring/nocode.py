"""The Azure ML ``/score`` body for a model served without an entry script ("no-code"). Pure functions.

Request:  ``{"data": nested list}`` for a single-input model, or ``{"inputs": {name: nested list}}``.
Response: ``{"outputs": {name: nested list}}``; when the model has a single 2-D float output (a
classifier's scores) also ``"predictions"``: the argmax of each row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from edgefleet.accelerators.base import TensorInfo
from edgefleet.modules.scoring.errors import BadRequest
from edgefleet.modules.scoring.tensors import coerce_shape, to_array


def parse_score_body(body: bytes, inputs: Sequence[TensorInfo]) -> dict[str, np.ndarray]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:  # invalid UTF-8 included
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or ("data" in doc) == ("inputs" in doc):
        raise BadRequest('request body must be a JSON object with either "data" or "inputs"')
    if "data" in doc:
        if len(inputs) != 1:
            names = ", ".join(repr(i.name) for i in inputs)
            raise BadRequest(f'the model has several inputs ({names}); send {{"inputs": {{name: data}}}}')
        values: Mapping[str, object] = {inputs[0].name: doc["data"]}
    else:
        if not isinstance(doc["inputs"], dict):
            raise BadRequest('"inputs" must be an object mapping input names to data')
        values = doc["inputs"]
    by_name = {i.name: i for i in inputs}
    unknown = [n for n in values if n not in by_name]
    missing = [n for n in by_name if n not in values]
    if unknown or missing:
        raise BadRequest(
            f"inputs do not match the model: unknown {unknown}, missing {missing}; "
            f"the model's inputs are {list(by_name)}"
        )
    feeds = {}
    for name, value in values.items():
        info = by_name[name]
        feeds[name] = coerce_shape(to_array(value, np.dtype(info.dtype), f"input {name!r}"), info)
    return feeds


def format_score_result(outputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Arrays stay arrays: orjson writes them without a detour through Python lists."""
    result: dict[str, Any] = {"outputs": {name: np.asarray(v) for name, v in outputs.items()}}
    if len(outputs) == 1:
        (only,) = outputs.values()
        if only.ndim == 2 and np.issubdtype(only.dtype, np.floating):
            result["predictions"] = np.argmax(only, axis=1).tolist()
    return result

"""Tensor datatypes and the checks that turn client data into model feeds. Pure functions."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from edgefleet.accelerators.base import TensorInfo
from edgefleet.modules.scoring.errors import BadRequest

# Open Inference Protocol v2 datatype names <-> numpy dtypes (BYTES is not supported: no model here uses it)
V2_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
NUMPY_TO_V2: dict[str, str] = {dt.name: name for name, dt in V2_TO_NUMPY.items()}


def v2_datatype(dtype: np.dtype | str) -> str:
    name = np.dtype(dtype).name
    try:
        return NUMPY_TO_V2[name]
    except KeyError:
        raise BadRequest(f"datatype {name} has no Open Inference Protocol v2 equivalent") from None


def numpy_dtype(datatype: str, where: str) -> np.dtype:
    try:
        return V2_TO_NUMPY[datatype]
    except KeyError:
        raise BadRequest(f"{where}: unsupported datatype {datatype!r}; use one of {', '.join(V2_TO_NUMPY)}") from None


def shape_text(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("batch" if d is None else str(d) for d in shape) + "]"


def shape_matches(shape: Sequence[int], expected: Sequence[int | None]) -> bool:
    return len(shape) == len(expected) and all(e is None or e == s for s, e in zip(shape, expected, strict=True))


def to_array(data: object, dtype: np.dtype, where: str) -> np.ndarray:
    """Nested (or flat) JSON lists to an array of ``dtype``; numpy does the walk, not a Python loop."""
    try:
        return np.asarray(data, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadRequest(f"{where}: data is not a rectangular array of {dtype.name} numbers ({exc})") from None


def check_feeds(feeds: Mapping[str, np.ndarray], infos: Sequence[TensorInfo]) -> dict[str, np.ndarray]:
    """Strict check for v2 requests: every model input present by name with its datatype and shape."""
    by_name = {info.name: info for info in infos}
    unknown = [name for name in feeds if name not in by_name]
    if unknown:
        raise BadRequest(f"unknown input(s) {', '.join(map(repr, unknown))}; the model's inputs are {_names(infos)}")
    missing = [info.name for info in infos if info.name not in feeds]
    if missing:
        raise BadRequest(f"missing input(s) {', '.join(map(repr, missing))}; the model's inputs are {_names(infos)}")
    for name, array in feeds.items():
        info = by_name[name]
        if array.dtype != np.dtype(info.dtype):
            raise BadRequest(
                f"input {name!r}: datatype {v2_datatype(array.dtype)} but the model expects {v2_datatype(info.dtype)}"
            )
        if not shape_matches(array.shape, info.shape):
            raise BadRequest(
                f"input {name!r}: shape {list(array.shape)} but the model expects {shape_text(info.shape)}"
            )
    return dict(feeds)


def coerce_shape(array: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Lenient shaping for Azure ML style ``{"data": ...}``: accept what a user naturally sends.

    Besides the exact shape this accepts one sample without the batch axis, and rows of flattened
    samples ([N, 64] for a [batch, 1, 8, 8] model); anything else is a 400 naming both shapes.
    """
    expected = info.shape
    if shape_matches(array.shape, expected):
        return array
    if expected and expected[0] is None and all(d is not None for d in expected[1:]):
        sample = tuple(int(d) for d in expected[1:] if d is not None)
        if array.shape == sample:
            return array.reshape((1, *sample))
        per_sample = math.prod(sample)
        if array.ndim >= 2 and math.prod(array.shape[1:]) == per_sample:
            return array.reshape((array.shape[0], *sample))
    hint = ""
    if expected and expected[0] is None and len(expected) > 2 and all(d is not None for d in expected[1:]):
        hint = f" (or [batch, {math.prod(int(d) for d in expected[1:] if d is not None)}] flattened)"
    raise BadRequest(
        f"input {info.name!r}: shape {list(array.shape)} but the model expects {shape_text(expected)}{hint}"
    )


def _names(infos: Sequence[TensorInfo]) -> str:
    return ", ".join(repr(i.name) for i in infos)

"""Azure ML style entry script for the digits CNN (either digits_fp32.onnx or digits_int8.onnx).

Request:  {"data": [[64 floats in 0..1], ...]}  or 8x8 nested lists per image ([8][8], [N][8][8], [N][1][8][8]).
Response: {"predictions": [digit, ...], "probabilities": [[10 floats], ...]}
          ("probabilities" is left out when DIGITS_RETURN_PROBABILITIES is false).

The model is loaded through the scoring server's backend selection, so the deployment's accelerator
preference (FPGA / OpenCL / CPU) applies to this script exactly as it does to a no-code deployment.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from edgefleet.accelerators.base import LoadedModel
from edgefleet.modules.scoring import BadInput, load_model

model: LoadedModel | None = None
return_probabilities = True


def init() -> None:
    global model, return_probabilities
    model = load_model()  # the single .onnx under AZUREML_MODEL_DIR
    return_probabilities = os.environ.get("DIGITS_RETURN_PROBABILITIES", "true").lower() not in {"0", "false", "no"}


def _images(data: Any) -> np.ndarray:
    try:
        x = np.asarray(data, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise BadInput(f'"data" must be numbers in nested lists of equal length ({exc})') from None
    if (x.shape[-2:] == (8, 8) and x.ndim in (2, 3, 4)) or (x.ndim in (1, 2) and x.shape[-1] == 64):
        x = x.reshape(-1, 1, 8, 8)
    else:
        raise BadInput(f'"data" has shape {list(x.shape)}; send rows of 64 floats ([N, 64]) or 8x8 images ([N, 8, 8])')
    if x.shape[0] == 0:
        raise BadInput('"data" holds no images')
    return x


def run(raw_data: str) -> dict[str, Any]:
    if model is None:
        raise RuntimeError("init() has not run")
    try:
        doc = json.loads(raw_data)
    except json.JSONDecodeError as exc:
        raise BadInput(f"request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or "data" not in doc:
        raise BadInput('request body must be a JSON object {"data": [[64 floats], ...]}')
    images = _images(doc["data"])
    logits = model.run({model.inputs[0].name: images})[model.outputs[0].name]
    result: dict[str, Any] = {"predictions": np.argmax(logits, axis=1).tolist()}
    if return_probabilities:
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        result["probabilities"] = np.round(
            (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float64), 6
        ).tolist()
    return result

"""onnxruntime on the CPU: the reference every other backend is checked against, and the fall-back."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from edgefleet.accelerators.base import Backend, LoadedModel, Support, TensorInfo
from edgefleet.protocol.models import AcceleratorInfo

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


def _tensor_infos(args: list[ort.NodeArg]) -> list[TensorInfo]:
    return [
        TensorInfo(a.name, _ORT_TYPES.get(a.type, a.type), tuple(d if isinstance(d, int) else None for d in a.shape))
        for a in args
    ]


class OrtLoadedModel(LoadedModel):
    backend = "cpu"

    def __init__(self, model_path: Path, threads: int | None = None) -> None:
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.inputs = _tensor_infos(self.session.get_inputs())
        self.outputs = _tensor_infos(self.session.get_outputs())

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.session.run(None, dict(feeds))
        return {info.name: np.asarray(value) for info, value in zip(self.outputs, results, strict=True)}


class CpuBackend(Backend):
    kind = "cpu"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def probe(self) -> list[AcceleratorInfo]:
        return [
            AcceleratorInfo(
                kind="cpu",
                platform="onnxruntime " + ort.__version__,
                device="CPU",
                device_type="CPU",
                compute_units=os.cpu_count() or 1,
            )
        ]

    def supports(self, model: onnx.ModelProto) -> Support:
        return Support(True, "onnxruntime runs every standard ONNX graph")

    def load(self, model_path: Path) -> LoadedModel:
        return OrtLoadedModel(model_path, self.threads)

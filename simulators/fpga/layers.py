"""The layer shapes of a quantized (QOperator) ONNX graph: what the resource model needs.

Built on the shared int8 lowering (``edgefleet.accelerators.quant``): the compiler sees exactly the layers
the board's kernels execute, and a graph the lowering refuses is refused here too. Shapes come
from the lowering's pure shape inference at batch 1 (one frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import onnx

from edgefleet.accelerators.errors import UnsupportedModel
from edgefleet.accelerators.quant import (
    ConvLayer,
    DequantizeLayer,
    GemmLayer,
    Layer,
    MaxPoolLayer,
    QAddLayer,
    QuantGraph,
    QuantizeLayer,
    ReluLayer,
    SoftmaxLayer,
    infer_shapes,
    lower_model,
)
from edgefleet.simulators.errors import UnsupportedLayer

LayerKind = Literal["mac", "stream", "wiring"]
_STREAM_LAYERS = (QuantizeLayer, DequantizeLayer, QAddLayer, MaxPoolLayer, ReluLayer, SoftmaxLayer)


@dataclass(frozen=True)
class LayerShape:
    """One layer as the dataflow compiler sees it (per frame = per batch item)."""

    name: str
    op_type: str
    kind: LayerKind
    mw: int = 0  # MAC: inputs per output (matrix width, hls4ml n_in): C_in/group*kh*kw or K
    mh: int = 0  # MAC: outputs per vector (matrix height, hls4ml n_out): C_out or N
    vectors: int = 1  # MAC: output vectors per frame (output pixels for conv, rows for matmul)
    weight_bits: int = 8  # bits per stored weight
    act_bits: int = 8
    channels: int = 1  # stream: lanes must divide this (channels, times the row width for elementwise ops)
    elements: int = 0  # stream: elements the layer reads per frame
    window: tuple[int, int] = (1, 1)  # conv/pool kernel (kh, kw)
    in_width: int = 0  # conv/pool: input row width (for line buffers)
    in_channels: int = 0  # conv/pool: input channels (for line buffers)

    @property
    def macs(self) -> int:
        return self.mw * self.mh * self.vectors if self.kind == "mac" else 0

    @property
    def weights(self) -> int:
        return self.mw * self.mh if self.kind == "mac" else 0


@dataclass(frozen=True)
class GraphShape:
    layers: list[LayerShape]
    input_bytes: int  # per frame, all graph inputs: what crosses the host link in
    output_bytes: int  # per frame, all graph outputs: what crosses it back


def _channels(shape: tuple[int, ...]) -> int:
    return int(shape[1]) if len(shape) == 4 else int(shape[-1]) if shape else 1


def layer_shape(layer: Layer, shapes: dict[str, tuple[int, ...]]) -> LayerShape:
    """Pure: one lowered layer and the tensor shapes at batch 1 -> its LayerShape."""
    x = shapes[layer.inputs[0]]
    y = shapes[layer.outputs[0]]
    if isinstance(layer, ConvLayer):
        c_out, c_in_per_group, kh, kw = (int(d) for d in layer.weight.shape)
        return LayerShape(
            layer.name, layer.op, "mac", mw=c_in_per_group * kh * kw, mh=c_out, vectors=int(y[2] * y[3]),
            weight_bits=layer.weight.dtype.itemsize * 8, window=(kh, kw), in_width=int(x[3]), in_channels=int(x[1]),
        )  # fmt: skip
    if isinstance(layer, GemmLayer):
        n, k = (int(d) for d in layer.weight.shape)
        return LayerShape(
            layer.name, layer.op, "mac", mw=k, mh=n, vectors=max(1, math.prod(y[:-1])),
            weight_bits=layer.weight.dtype.itemsize * 8, in_channels=k,
        )  # fmt: skip
    if isinstance(layer, _STREAM_LAYERS):
        window, in_width = (1, 1), 0
        # elementwise ops may process a whole pixel row at once; pooling parallelizes over channels
        lanes_unit = _channels(x) * (int(x[3]) if len(x) == 4 else 1)
        if isinstance(layer, MaxPoolLayer):
            window, in_width, lanes_unit = layer.kernel, int(x[-1]), _channels(x)
        elements = math.prod(x) * (2 if isinstance(layer, QAddLayer) else 1)
        return LayerShape(
            layer.name, layer.op, "stream", channels=lanes_unit, elements=elements, window=window,
            in_width=in_width, in_channels=_channels(x),
        )  # fmt: skip
    return LayerShape(layer.name, layer.op, "wiring")  # Flatten, Reshape, Identity: no hardware


def graph_shape(graph: QuantGraph) -> GraphShape:
    """Pure: the lowered graph at batch 1 as layer shapes plus per-frame I/O bytes."""
    inputs = {s.name: tuple(d if d else 1 for d in s.shape) for s in graph.inputs}
    shapes = infer_shapes(graph, inputs)

    def nbytes(names: list[str]) -> int:
        return sum(math.prod(shapes[n]) * np.dtype(graph.dtypes.get(n, "float32")).itemsize for n in names)

    return GraphShape(
        [layer_shape(layer, shapes) for layer in graph.layers],
        nbytes([s.name for s in graph.inputs]),
        nbytes([s.name for s in graph.outputs]),
    )


def lower(model: onnx.ModelProto) -> QuantGraph:
    """The shared int8 lowering, with its refusal turned into the compiler's own error."""
    try:
        return lower_model(model)
    except UnsupportedModel as exc:
        raise UnsupportedLayer(
            f"the simulated FPGA compiler has no kernel for this graph: {exc}. Quantize the model in QOperator "
            "format with supported ops, or run it on the cpu backend"
        ) from exc


def read_graph(model: onnx.ModelProto) -> GraphShape:
    return graph_shape(lower(model))

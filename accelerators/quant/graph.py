"""Lower an int8 QOperator-format ONNX model to a list of plain-data layers.

The result (``QuantGraph``) holds no ONNX objects: weights, biases, scales and zero points are
numpy arrays, attributes are tuples of ints. Backends (OpenCL, FPGA simulator) and the numpy
reference executor all consume the same layers, so they cannot disagree about what the model is.

Conventions every consumer relies on:

- ``GemmLayer.weight`` is always ``[N, K]`` (K contiguous), whatever the ONNX op stored
  (QLinearMatMul/MatMulInteger keep B as ``[K, N]``; it is transposed here once).
- ``ConvLayer.weight`` is ``[M, C/group, kH, kW]`` as in ONNX; ``pads`` are (top, left, bottom, right).
- ``Quant.scale`` / ``Quant.zero_point`` are 0-d (per tensor) or 1-d (per output channel).
- Layers run in list order; a layer's inputs are graph inputs or earlier layers' outputs.

Supported ops: QuantizeLinear, DequantizeLinear, QLinearConv, QLinearMatMul, MatMulInteger,
QGemm (com.microsoft), QLinearAdd (com.microsoft), MaxPool, Relu, Flatten, Reshape (constant
shape), Softmax, Identity. Anything else raises ``UnsupportedModel`` naming the op and node.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from edgefleet.accelerators.errors import UnsupportedModel

MS_DOMAIN = "com.microsoft"
SUPPORTED_OPS: frozenset[tuple[str, str]] = frozenset(
    {
        ("", "QuantizeLinear"),
        ("", "DequantizeLinear"),
        ("", "QLinearConv"),
        ("", "QLinearMatMul"),
        ("", "MatMulInteger"),
        (MS_DOMAIN, "QGemm"),
        (MS_DOMAIN, "QLinearAdd"),
        ("", "MaxPool"),
        ("", "Relu"),
        ("", "Flatten"),
        ("", "Reshape"),
        ("", "Softmax"),
        ("", "Identity"),
    }
)
_ONNX_DTYPES: dict[int, str] = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.INT32: "int32",
}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name
    shape: tuple[int | None, ...]  # None: symbolic (the batch)


@dataclass(frozen=True, eq=False)
class Quant:
    """Quantization parameters of one tensor: real = (q - zero_point) * scale."""

    scale: np.ndarray  # float32, 0-d or 1-d (per channel)
    zero_point: np.ndarray  # int32 values, same shape as scale
    dtype: str  # "uint8" | "int8": the quantized tensor's type

    @property
    def qmin(self) -> int:
        return 0 if self.dtype == "uint8" else -128

    @property
    def qmax(self) -> int:
        return 255 if self.dtype == "uint8" else 127

    @property
    def per_channel(self) -> bool:
        return self.scale.ndim == 1 and self.scale.size > 1


@dataclass(frozen=True, eq=False)
class Layer:
    name: str  # the ONNX node name
    op: str  # the ONNX op type it came from
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class QuantizeLayer(Layer):
    y: Quant


@dataclass(frozen=True, eq=False)
class DequantizeLayer(Layer):
    x: Quant


@dataclass(frozen=True, eq=False)
class ConvLayer(Layer):
    """QLinearConv: int32 acc = sum((x - x.zp) * (w - w.zp)) + bias, requantized to y."""

    x: Quant
    w: Quant
    y: Quant
    weight: np.ndarray  # int8/uint8 [M, C/group, kH, kW]
    bias: np.ndarray | None  # int32 [M]
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    dilations: tuple[int, int]
    group: int


@dataclass(frozen=True, eq=False)
class GemmLayer(Layer):
    """QLinearMatMul / QGemm / MatMulInteger with a constant B: y[m, n] from sum_k a[m, k] * weight[n, k].

    ``y`` is None when the output is not requantized: MatMulInteger (int32 out) or a QGemm
    without y_scale (float out = alpha * a.scale * b.scale * acc).
    """

    a: Quant
    b: Quant
    y: Quant | None
    weight: np.ndarray  # [N, K], K contiguous
    bias: np.ndarray | None  # int32 [N]
    alpha: float
    out_dtype: str  # "uint8" | "int8" | "int32" | "float32"


@dataclass(frozen=True, eq=False)
class QAddLayer(Layer):
    """QLinearAdd: y = requant(a.scale/y.scale * (a - a.zp) + b.scale/y.scale * (b - b.zp))."""

    a: Quant
    b: Quant
    y: Quant
    b_const: np.ndarray | None  # B when it is an initializer (then inputs holds only A)


@dataclass(frozen=True, eq=False)
class MaxPoolLayer(Layer):
    kernel: tuple[int, int]
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]
    dilations: tuple[int, int]
    ceil_mode: bool


@dataclass(frozen=True, eq=False)
class ReluLayer(Layer):
    pass


@dataclass(frozen=True, eq=False)
class FlattenLayer(Layer):
    axis: int


@dataclass(frozen=True, eq=False)
class ReshapeLayer(Layer):
    shape: tuple[int, ...]  # ONNX Reshape semantics (0 copies the input dim, -1 is inferred); () keeps the shape


@dataclass(frozen=True, eq=False)
class SoftmaxLayer(Layer):
    axis: int


@dataclass(frozen=True, eq=False)
class QuantGraph:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    layers: tuple[Layer, ...]
    dtypes: dict[str, str]  # every tensor's numpy dtype name, by tensor name


def unsupported_ops(model: onnx.ModelProto) -> list[str]:
    """The nodes this lowering cannot handle, as "OpType (node name)"; empty when all are supported."""
    return [
        f"{n.op_type} ({n.name or '?'})"
        for n in model.graph.node
        if (n.domain if n.domain != "ai.onnx" else "", n.op_type) not in SUPPORTED_OPS
    ]


def lower_model(model: onnx.ModelProto | str | Path) -> QuantGraph:
    """Lower a QOperator ONNX model; raises UnsupportedModel naming the first op it cannot run."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    return _Lowering(model).run()


def _dtype_of(elem_type: int, where: str) -> str:
    if elem_type not in _ONNX_DTYPES:
        raise UnsupportedModel(f"{where}: element type {onnx.TensorProto.DataType.Name(elem_type)} is not supported")
    return _ONNX_DTYPES[elem_type]


def _spec(vi: onnx.ValueInfoProto) -> TensorSpec:
    t = vi.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
    return TensorSpec(vi.name, _dtype_of(t.elem_type, f"graph tensor {vi.name!r}"), dims)


class _Lowering:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        for node in model.graph.node:  # Constant nodes are initializers in disguise
            if node.op_type == "Constant" and node.attribute:
                self.consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        self.dtypes: dict[str, str] = {}

    def run(self) -> QuantGraph:
        g = self.model.graph
        inputs = tuple(_spec(vi) for vi in g.input if vi.name not in self.consts)
        for s in inputs:
            self.dtypes[s.name] = s.dtype
        layers: list[Layer] = []
        for node in g.node:
            if node.op_type == "Constant":
                continue
            layers.append(self._lower(node))
        outputs = tuple(_spec(vi) for vi in g.output)
        return QuantGraph(g.name, inputs, outputs, tuple(layers), dict(self.dtypes))

    # -- helpers -----------------------------------------------------------------------------------
    def _where(self, node: onnx.NodeProto) -> str:
        return f"node {node.name or '?'} ({node.op_type})"

    def _const(self, node: onnx.NodeProto, idx: int, what: str) -> np.ndarray:
        name = node.input[idx] if idx < len(node.input) else ""
        if name not in self.consts:
            raise UnsupportedModel(
                f"{self._where(node)}: {what} ({name or 'missing'}) must be a constant initializer; "
                "dynamic quantization parameters/weights are not supported by the int8 backends"
            )
        return self.consts[name]

    def _opt_const(self, node: onnx.NodeProto, idx: int, what: str) -> np.ndarray | None:
        if idx >= len(node.input) or not node.input[idx]:
            return None
        return self._const(node, idx, what)

    def _quant(self, node: onnx.NodeProto, scale_idx: int, zp_idx: int, what: str, default: str = "uint8") -> Quant:
        scale = self._const(node, scale_idx, f"{what} scale").astype(np.float32)
        zp = self._opt_const(node, zp_idx, f"{what} zero point")
        dtype = default if zp is None else str(zp.dtype)
        if dtype not in ("uint8", "int8"):
            raise UnsupportedModel(f"{self._where(node)}: {what} is {dtype}; only uint8/int8 are supported")
        zp_arr = np.zeros(scale.shape, np.int32) if zp is None else zp.astype(np.int32)
        if scale.ndim > 1 or zp_arr.ndim > 1:
            raise UnsupportedModel(f"{self._where(node)}: {what} scale/zero point must be a scalar or 1-d")
        return Quant(scale.reshape(-1)[0:1].reshape(()) if scale.size == 1 else scale, _squeeze(zp_arr), dtype)

    def _attrs(self, node: onnx.NodeProto) -> dict[str, Any]:
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def _data_inputs(self, node: onnx.NodeProto, *idx: int) -> tuple[str, ...]:
        return tuple(node.input[i] for i in idx)

    def _set(self, name: str, dtype: str) -> None:
        self.dtypes[name] = dtype

    def _spatial(self, node: onnx.NodeProto, attrs: dict[str, Any], kernel: tuple[int, ...]) -> tuple[Any, Any, Any]:
        auto_pad = attrs.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
        if auto_pad not in ("NOTSET", "VALID"):
            raise UnsupportedModel(f"{self._where(node)}: auto_pad={auto_pad} is not supported; export explicit pads")
        if len(kernel) != 2:
            raise UnsupportedModel(f"{self._where(node)}: only 2-d spatial ops are supported (kernel {kernel})")
        strides = tuple(attrs.get("strides", [1, 1]))
        dil = tuple(attrs.get("dilations", [1, 1]))
        p = list(attrs.get("pads", [0, 0, 0, 0])) if auto_pad == "NOTSET" else [0, 0, 0, 0]
        pads = (int(p[0]), int(p[1]), int(p[2]), int(p[3]))
        return (int(strides[0]), int(strides[1])), pads, (int(dil[0]), int(dil[1]))

    # -- one node ------------------------------------------------------------------------------------
    def _lower(self, node: onnx.NodeProto) -> Layer:
        domain = "" if node.domain in ("", "ai.onnx") else node.domain
        if (domain, node.op_type) not in SUPPORTED_OPS:
            raise UnsupportedModel(
                f"op {node.op_type}{f' (domain {domain})' if domain else ''} in node {node.name or '?'!r} "
                "is not supported by the int8 backends; the model runs on cpu (onnxruntime)"
            )
        name, op, out = node.name or node.output[0], node.op_type, tuple(node.output[:1])
        attrs = self._attrs(node)
        if op == "QuantizeLinear":
            q = self._quant(node, 1, 2, "output")
            self._set(out[0], q.dtype)
            return QuantizeLayer(name, op, self._data_inputs(node, 0), out, q)
        if op == "DequantizeLinear":
            q = self._quant(node, 1, 2, "input")
            self._set(out[0], "float32")
            return DequantizeLayer(name, op, self._data_inputs(node, 0), out, q)
        if op == "QLinearConv":
            return self._conv(node, name, out, attrs)
        if op in ("QLinearMatMul", "MatMulInteger", "QGemm"):
            return self._gemm(node, name, out, attrs)
        if op == "QLinearAdd":
            a, b, y = self._quant(node, 1, 2, "A"), self._quant(node, 4, 5, "B"), self._quant(node, 6, 7, "C")
            self._set(out[0], y.dtype)
            if node.input[0] in self.consts:
                raise UnsupportedModel(f"{self._where(node)}: a constant first operand is not supported")
            b_const = self.consts.get(node.input[3])
            ins = self._data_inputs(node, 0) if b_const is not None else self._data_inputs(node, 0, 3)
            return QAddLayer(name, op, ins, out, a, b, y, b_const)
        src = node.input[0]
        dtype = self.dtypes.get(src, "float32")
        self._set(out[0], dtype)
        if op == "MaxPool":
            if len(node.output) > 1 and node.output[1]:
                raise UnsupportedModel(f"{self._where(node)}: the Indices output is not supported")
            kernel = tuple(int(k) for k in attrs["kernel_shape"])
            strides, pads, dil = self._spatial(node, attrs, kernel)
            kernel = (kernel[0], kernel[1])
            return MaxPoolLayer(name, op, (src,), out, kernel, strides, pads, dil, bool(attrs.get("ceil_mode", 0)))
        if op == "Relu":
            return ReluLayer(name, op, (src,), out)
        if op == "Identity":
            return ReshapeLayer(name, op, (src,), out, ())  # an empty target shape keeps the input shape
        if op == "Flatten":
            return FlattenLayer(name, op, (src,), out, int(attrs.get("axis", 1)))
        if op == "Reshape":
            shape = self._const(node, 1, "target shape")
            if attrs.get("allowzero", 0):
                raise UnsupportedModel(f"{self._where(node)}: allowzero=1 is not supported")
            return ReshapeLayer(name, op, (src,), out, tuple(int(s) for s in shape.reshape(-1)))
        if op == "Softmax":
            if dtype != "float32":
                raise UnsupportedModel(f"{self._where(node)}: Softmax on {dtype} is not supported")
            return SoftmaxLayer(name, op, (src,), out, int(attrs.get("axis", -1)))
        raise UnsupportedModel(f"{self._where(node)}: not supported")  # pragma: no cover - SUPPORTED_OPS guards

    def _conv(self, node: onnx.NodeProto, name: str, out: tuple[str, ...], attrs: dict[str, Any]) -> ConvLayer:
        x, w, y = self._quant(node, 1, 2, "x"), self._quant(node, 4, 5, "w"), self._quant(node, 6, 7, "y")
        weight = self._const(node, 3, "weight")
        if weight.ndim != 4:
            raise UnsupportedModel(f"{self._where(node)}: only 2-d convolutions are supported (weight {weight.shape})")
        bias = self._opt_const(node, 8, "bias")
        kernel = (int(weight.shape[2]), int(weight.shape[3]))
        strides, pads, dil = self._spatial(node, attrs, kernel)
        self._set(out[0], y.dtype)
        return ConvLayer(
            name,
            "QLinearConv",
            self._data_inputs(node, 0),
            out,
            x,
            w,
            y,
            np.ascontiguousarray(weight),
            None if bias is None else bias.astype(np.int32),
            strides,
            pads,
            dil,
            int(attrs.get("group", 1)),
        )

    def _gemm(self, node: onnx.NodeProto, name: str, out: tuple[str, ...], attrs: dict[str, Any]) -> GemmLayer:
        op = node.op_type
        bias: np.ndarray | None = None
        alpha = 1.0
        if op == "QLinearMatMul":
            a, b, y = self._quant(node, 1, 2, "a"), self._quant(node, 4, 5, "b"), self._quant(node, 6, 7, "y")
            weight = self._const(node, 3, "B (weights)").T
            out_dtype = y.dtype
        elif op == "MatMulInteger":
            zp_a = self._opt_const(node, 2, "a zero point")
            zp_b = self._opt_const(node, 3, "b zero point")
            weight = self._const(node, 1, "B (weights)").T
            a_dtype = "uint8" if zp_a is None else str(zp_a.dtype)
            one = np.array(1.0, np.float32)
            a = Quant(one, _squeeze(np.zeros((), np.int32) if zp_a is None else zp_a.astype(np.int32)), a_dtype)
            b = Quant(
                one, _squeeze(np.zeros((), np.int32) if zp_b is None else zp_b.astype(np.int32)), str(weight.dtype)
            )
            y, out_dtype = None, "int32"
        else:  # QGemm
            if int(attrs.get("transA", 0)):
                raise UnsupportedModel(f"{self._where(node)}: transA=1 is not supported")
            a, b = self._quant(node, 1, 2, "a"), self._quant(node, 4, 5, "b")
            weight = self._const(node, 3, "B (weights)")
            if not int(attrs.get("transB", 0)):
                weight = weight.T
            c = self._opt_const(node, 6, "C (bias)")
            if c is not None:
                if c.size not in (1, weight.shape[0]) or (c.ndim == 2 and c.shape[0] != 1):
                    raise UnsupportedModel(f"{self._where(node)}: bias C of shape {c.shape} is not supported")
                bias = np.broadcast_to(c.reshape(-1), (weight.shape[0],)).astype(np.int32)
            alpha = float(attrs.get("alpha", 1.0))
            has_y = len(node.input) > 7 and bool(node.input[7])
            y = self._quant(node, 7, 8, "y") if has_y else None
            out_dtype = y.dtype if y is not None else "float32"
        if weight.ndim != 2:
            raise UnsupportedModel(f"{self._where(node)}: B must be 2-d (got {weight.shape})")
        self._set(out[0], out_dtype)
        return GemmLayer(
            name, op, self._data_inputs(node, 0), out, a, b, y, np.ascontiguousarray(weight), bias, alpha, out_dtype
        )


def _squeeze(a: np.ndarray) -> np.ndarray:
    return a.reshape(()) if a.size == 1 else a


def _pool_out(size: int, k: int, s: int, p0: int, p1: int, d: int, ceil: bool) -> int:
    span = size + p0 + p1 - d * (k - 1) - 1
    return (-(-span // s) if ceil else span // s) + 1


def infer_shapes(graph: QuantGraph, input_shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Concrete shape of every tensor for the given input shapes (pure; no data needed)."""
    shapes = dict(input_shapes)
    for layer in graph.layers:
        x = shapes[layer.inputs[0]]
        out: tuple[int, ...]
        if isinstance(layer, ConvLayer):
            n, _, h, w = x
            kh, kw = layer.weight.shape[2:]
            oh = _pool_out(h, kh, layer.strides[0], layer.pads[0], layer.pads[2], layer.dilations[0], False)
            ow = _pool_out(w, kw, layer.strides[1], layer.pads[1], layer.pads[3], layer.dilations[1], False)
            out = (n, layer.weight.shape[0], oh, ow)
        elif isinstance(layer, MaxPoolLayer):
            n, c, h, w = x
            oh = _pool_out(
                h, layer.kernel[0], layer.strides[0], layer.pads[0], layer.pads[2], layer.dilations[0], layer.ceil_mode
            )
            ow = _pool_out(
                w, layer.kernel[1], layer.strides[1], layer.pads[1], layer.pads[3], layer.dilations[1], layer.ceil_mode
            )
            out = (n, c, oh, ow)
        elif isinstance(layer, GemmLayer):
            out = (*x[:-1], layer.weight.shape[0])
        elif isinstance(layer, FlattenLayer):
            axis = layer.axis % len(x) if layer.axis < 0 else layer.axis
            out = (int(np.prod(x[:axis], dtype=np.int64)), int(np.prod(x[axis:], dtype=np.int64)))
        elif isinstance(layer, ReshapeLayer):
            out = _reshape_target(x, layer.shape) if layer.shape else x
        else:
            out = x
        shapes[layer.outputs[0]] = out
    return shapes


def _reshape_target(x: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    dims = [x[i] if s == 0 else s for i, s in enumerate(shape)]
    if -1 in dims:
        known = int(np.prod([d for d in dims if d != -1], dtype=np.int64))
        dims[dims.index(-1)] = int(np.prod(x, dtype=np.int64)) // max(known, 1)
    return tuple(dims)

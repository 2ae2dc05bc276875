"""Exact numpy executor of a lowered ``QuantGraph``: the arithmetic every int8 backend must reproduce.

Accumulation is exact: operands have their zero points subtracted and are multiplied and summed
in int64, so ``sum((x - x_zp) * (w - w_zp)) + bias`` carries no rounding at all (onnxruntime
accumulates in int32; the two agree whenever the true sum fits in int32, which the quantizer
guarantees for any realistic K).

Requantization follows onnxruntime's MLAS (``MlasRequantizeOutput``, the QGEMM/QLinearConv output
processors, ``MlasQuantizeLinear``) step by step, all in float32:

    multiplier = x_scale * w_scale / y_scale            (QGemm: alpha * a_scale * b_scale / y_scale)
    value      = float32(acc) * multiplier
    value      = clamp(value, qmin - y_zp, qmax - y_zp)
    q          = round_half_to_even(value) + y_zp

MLAS rounds with ``nearbyintf`` / ``_mm256_cvtps_epi32`` under the default MXCSR mode, which is
round-half-to-even; ``np.rint`` is the same. QuantizeLinear divides (``x / scale``), as MLAS does,
rather than multiplying by a reciprocal, so results match bit for bit. QLinearAdd uses MLAS's
scale ratios ``a_scale / c_scale`` and ``b_scale / c_scale``; its vector path may fuse the
multiply-add, so it can differ by one LSB on exact ties, which the numeric contract allows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from edgefleet.accelerators.quant.graph import (
    ConvLayer,
    DequantizeLayer,
    FlattenLayer,
    GemmLayer,
    Layer,
    MaxPoolLayer,
    QAddLayer,
    Quant,
    QuantGraph,
    QuantizeLayer,
    ReluLayer,
    ReshapeLayer,
    SoftmaxLayer,
    _reshape_target,
)


def output_multiplier(in_scale: np.ndarray, w_scale: np.ndarray, y_scale: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """The float32 requantization multiplier, computed in the order onnxruntime computes it."""
    m = np.float32(alpha) * np.float32(in_scale) * np.asarray(w_scale, np.float32)  # alpha 1.0: exact no-op
    return (m / np.float32(y_scale)).astype(np.float32)


def requantize(acc: np.ndarray, multiplier: np.ndarray, y: Quant, channel_axis: int = -1) -> np.ndarray:
    """int accumulators -> y.dtype: float32 multiply, clamp, round half to even, add zero point."""
    mult = np.asarray(multiplier, np.float32)
    if mult.ndim == 1 and mult.size > 1:
        shape = [1] * acc.ndim
        shape[channel_axis] = mult.size
        mult = mult.reshape(shape)
    zp = int(y.zero_point) if y.zero_point.ndim == 0 else 0
    value = acc.astype(np.float32) * mult
    value = np.clip(value, np.float32(y.qmin - zp), np.float32(y.qmax - zp))
    return (np.rint(value).astype(np.int32) + zp).astype(y.dtype)


def quantize(x: np.ndarray, y: Quant) -> np.ndarray:
    zp = int(y.zero_point)
    value = np.clip(x.astype(np.float32) / np.float32(y.scale), np.float32(y.qmin - zp), np.float32(y.qmax - zp))
    return (np.rint(value).astype(np.int32) + zp).astype(y.dtype)


def dequantize(q: np.ndarray, x: Quant, channel_axis: int = 1) -> np.ndarray:
    scale, zp = np.asarray(x.scale, np.float32), np.asarray(x.zero_point, np.int32)
    if scale.ndim == 1 and scale.size > 1:
        shape = [1] * q.ndim
        shape[channel_axis] = scale.size
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return (q.astype(np.int32) - zp).astype(np.float32) * scale


def _centered(q: np.ndarray, quant: Quant, channel_axis: int = 0) -> np.ndarray:
    zp = np.asarray(quant.zero_point, np.int64)
    if zp.ndim == 1 and zp.size > 1:
        shape = [1] * q.ndim
        shape[channel_axis] = zp.size
        zp = zp.reshape(shape)
    return q.astype(np.int64) - zp


def conv_accumulate(layer: ConvLayer, x: np.ndarray) -> np.ndarray:
    """Exact int64 accumulators [N, M, OH, OW] of a QLinearConv (bias included)."""
    xc = _centered(x, layer.x)
    wc = _centered(layer.weight, layer.w, channel_axis=0)
    top, left, bottom, right = layer.pads
    xc = np.pad(xc, ((0, 0), (0, 0), (top, bottom), (left, right)))  # zero after centring == x_zp
    n, c, h, w = xc.shape
    m, cg, kh, kw = wc.shape
    (sh, sw), (dh, dw) = layer.strides, layer.dilations
    oh, ow = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
    cols = np.empty((n, c, kh, kw, oh, ow), np.int64)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xc[
                :, :, i * dh : i * dh + sh * (oh - 1) + 1 : sh, j * dw : j * dw + sw * (ow - 1) + 1 : sw
            ]
    g, mg = layer.group, m // layer.group
    acc = np.empty((n, m, oh, ow), np.int64)
    for gi in range(g):
        col = cols[:, gi * cg : (gi + 1) * cg].reshape(n, cg * kh * kw, oh * ow)
        wmat = wc[gi * mg : (gi + 1) * mg].reshape(mg, cg * kh * kw)
        acc[:, gi * mg : (gi + 1) * mg] = np.matmul(wmat, col).reshape(n, mg, oh, ow)
    if layer.bias is not None:
        acc += layer.bias.astype(np.int64).reshape(1, m, 1, 1)
    return acc


def gemm_accumulate(layer: GemmLayer, a: np.ndarray) -> np.ndarray:
    """Exact int64 accumulators [..., N] of a QLinearMatMul / QGemm / MatMulInteger (bias included)."""
    ac = _centered(a, layer.a)
    wc = _centered(layer.weight, layer.b, channel_axis=0)  # [N, K]: per-column zero points are per row here
    acc = np.matmul(ac, wc.T)
    if layer.bias is not None:
        acc += layer.bias.astype(np.int64)
    return acc


def max_pool(layer: MaxPoolLayer, x: np.ndarray) -> np.ndarray:
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel, layer.strides, layer.dilations
    top, left, bottom, right = layer.pads
    n, c, h, w = x.shape
    oh = _out_size(h + top + bottom, kh, sh, dh, layer.ceil_mode)
    ow = _out_size(w + left + right, kw, sw, dw, layer.ceil_mode)
    extra_h = max(0, (oh - 1) * sh + dh * (kh - 1) + 1 - (h + top + bottom))
    extra_w = max(0, (ow - 1) * sw + dw * (kw - 1) + 1 - (w + left + right))
    lowest = np.finfo(x.dtype).min if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom + extra_h), (left, right + extra_w)), constant_values=lowest)
    out = np.full((n, c, oh, ow), lowest, x.dtype)
    for i in range(kh):
        for j in range(kw):
            win = xp[:, :, i * dh : i * dh + sh * (oh - 1) + 1 : sh, j * dw : j * dw + sw * (ow - 1) + 1 : sw]
            np.maximum(out, win, out=out)
    return out


def _out_size(padded: int, k: int, s: int, d: int, ceil: bool) -> int:
    span = padded - d * (k - 1) - 1
    return (-(-span // s) if ceil else span // s) + 1


def qadd(layer: QAddLayer, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ratio_a = np.float32(layer.a.scale) / np.float32(layer.y.scale)
    ratio_b = np.float32(layer.b.scale) / np.float32(layer.y.scale)
    value = ratio_a * (a.astype(np.int32) - int(layer.a.zero_point)).astype(np.float32) + ratio_b * (
        b.astype(np.int32) - int(layer.b.zero_point)
    ).astype(np.float32)
    zp = int(layer.y.zero_point)
    value = np.clip(value, np.float32(layer.y.qmin - zp), np.float32(layer.y.qmax - zp))
    return (np.rint(value).astype(np.int32) + zp).astype(layer.y.dtype)


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)


def gemm_output(layer: GemmLayer, acc: np.ndarray) -> np.ndarray:
    """A GemmLayer's output from its accumulators: requantized, float (QGemm without y) or int32."""
    if layer.out_dtype == "int32":
        return acc.astype(np.int32)
    if layer.y is None:  # QGemm with float output: float(acc) * (alpha * a_scale * b_scale)
        mult = (np.float32(layer.alpha) * np.float32(layer.a.scale) * np.asarray(layer.b.scale, np.float32)).astype(
            np.float32
        )
        return acc.astype(np.float32) * mult
    mult = output_multiplier(layer.a.scale, layer.b.scale, layer.y.scale, layer.alpha)
    return requantize(acc, mult, layer.y, channel_axis=-1)


@dataclass
class ReferenceResult:
    outputs: dict[str, np.ndarray]
    tensors: dict[str, np.ndarray] = field(default_factory=dict)  # every tensor, by name
    accumulators: dict[str, np.ndarray] = field(default_factory=dict)  # int32 accumulators, by layer name


class ReferenceExecutor:
    """Runs a QuantGraph with numpy; stateless, so safe to share between threads."""

    def __init__(self, graph: QuantGraph) -> None:
        self.graph = graph

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.run_all(feeds).outputs

    def run_all(self, feeds: Mapping[str, np.ndarray]) -> ReferenceResult:
        tensors: dict[str, np.ndarray] = {s.name: np.asarray(feeds[s.name]) for s in self.graph.inputs}
        accs: dict[str, np.ndarray] = {}
        for layer in self.graph.layers:
            tensors[layer.outputs[0]] = self._run_layer(layer, tensors, accs)
        outputs = {s.name: tensors[s.name] for s in self.graph.outputs}
        return ReferenceResult(outputs, tensors, accs)

    def _run_layer(self, layer: Layer, t: dict[str, np.ndarray], accs: dict[str, np.ndarray]) -> np.ndarray:
        x = t[layer.inputs[0]]
        if isinstance(layer, QuantizeLayer):
            return quantize(x, layer.y)
        if isinstance(layer, DequantizeLayer):
            return dequantize(x, layer.x)
        if isinstance(layer, ConvLayer):
            acc = conv_accumulate(layer, x)
            accs[layer.name] = acc.astype(np.int32)
            return requantize(acc, output_multiplier(layer.x.scale, layer.w.scale, layer.y.scale), layer.y, 1)
        if isinstance(layer, GemmLayer):
            acc = gemm_accumulate(layer, x)
            accs[layer.name] = acc.astype(np.int32)
            return gemm_output(layer, acc)
        if isinstance(layer, QAddLayer):
            b = layer.b_const if layer.b_const is not None else t[layer.inputs[1]]
            return qadd(layer, x, b)
        if isinstance(layer, MaxPoolLayer):
            return max_pool(layer, x)
        if isinstance(layer, ReluLayer):
            return np.maximum(x, np.zeros((), x.dtype))
        if isinstance(layer, FlattenLayer):
            axis = layer.axis % x.ndim if layer.axis < 0 else layer.axis
            return x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)
        if isinstance(layer, ReshapeLayer):
            return x.reshape(_reshape_target(x.shape, layer.shape)) if layer.shape else x
        if isinstance(layer, SoftmaxLayer):
            return softmax(x, layer.axis)
        raise TypeError(f"reference executor has no rule for layer {layer.name} ({layer.op})")


def run_reference(graph: QuantGraph, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return ReferenceExecutor(graph).run(feeds)

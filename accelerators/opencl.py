"""OpenCL backend (kind "opencl"): runs lowered int8 QOperator graphs with our own kernels.

Any OpenCL device that is not a CL_DEVICE_TYPE_ACCELERATOR (those are FPGA boards, see fpga.py)
qualifies; here that is PoCL on the CPU. The model is lowered once (edgefleet.accelerators.quant.graph),
weights are packed once into the GEMM layout (centered int16, [N, Kp], K contiguous), and each
input shape gets an execution plan: device buffers for every tensor plus a list of kernel launches
whose arguments are bound up front. ``run`` copies the inputs in, enqueues the plan on the in-order
queue and reads the outputs back, under the device lock, so it is safe from several threads.

Kernels: kernels/qgemm.cl (GEMM, im2col, packing), kernels/elementwise.cl (the rest).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgefleet.accelerators.base import Backend, LoadedModel, Support, TensorInfo
from edgefleet.accelerators.errors import AcceleratorError, UnsupportedModel
from edgefleet.accelerators.opencl_tuning import (
    CANDIDATES,
    DEFAULT,
    TUNING_SHAPES,
    GemmConfig,
    TuningCache,
    measure,
    pick_fastest,
    shape_class,
)
from edgefleet.accelerators.quant.graph import (
    ConvLayer,
    DequantizeLayer,
    FlattenLayer,
    GemmLayer,
    Layer,
    MaxPoolLayer,
    QAddLayer,
    QuantGraph,
    QuantizeLayer,
    ReluLayer,
    ReshapeLayer,
    SoftmaxLayer,
    infer_shapes,
    lower_model,
)
from edgefleet.accelerators.quant.reference import output_multiplier
from edgefleet.protocol.models import AcceleratorInfo, AcceleratorKind

log = logging.getLogger(__name__)

K_ALIGN = 16  # Kp is a multiple of every vector width a GemmConfig may use
_C_TYPES = {"uint8": "uchar", "int8": "char", "float32": "float", "int32": "int"}
_MAX_PLANS = 4  # execution plans kept per model (one per input shape)


def _cl() -> Any:
    import pyopencl as cl  # imported lazily: a device without OpenCL still imports this module

    return cl


def _kernel_source(name: str) -> str:
    return resources.files("edgefleet.accelerators").joinpath("kernels", name).read_text()


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def list_devices() -> list[tuple[Any, Any]]:
    """(platform, device) for every OpenCL device; [] when there is no driver/ICD at all."""
    try:
        cl = _cl()
        return [(p, d) for p in cl.get_platforms() for d in p.get_devices()]
    except Exception as exc:  # no ICD loader, no platform (PLATFORM_NOT_FOUND_KHR), broken driver
        log.info("no OpenCL platform available: %s", exc)
        return []


def is_accelerator(device: Any) -> bool:
    return bool(device.type & _cl().device_type.ACCELERATOR)


def device_type_name(bits: int) -> str:
    """The most specific OpenCL device type: drivers often OR in DEFAULT, which says nothing."""
    t = _cl().device_type
    for flag, name in ((t.ACCELERATOR, "ACCELERATOR"), (t.GPU, "GPU"), (t.CPU, "CPU"), (t.CUSTOM, "CUSTOM")):
        if bits & flag:
            return name
    return "UNKNOWN"


def device_info(platform: Any, device: Any, kind: AcceleratorKind = "opencl") -> AcceleratorInfo:
    return AcceleratorInfo(
        kind=kind,
        platform=platform.name.strip(),
        device=device.name.strip(),
        device_type=device_type_name(device.type),
        compute_units=int(device.max_compute_units),
        global_mem_bytes=int(device.global_mem_size),
        extra={"driver": device.driver_version.strip(), "opencl": device.version.strip()},
    )


class OpenCLRuntime:
    """One OpenCL device: context, in-order queue, compiled programs, tuned GEMM configs, one lock."""

    def __init__(self, platform: Any, device: Any, tune: bool = True, cache: TuningCache | None = None) -> None:
        cl = _cl()
        self.platform, self.device = platform, device
        self.context = cl.Context([device])
        self.queue = cl.CommandQueue(self.context)
        self.lock = threading.RLock()
        self.tune = tune
        self.cache = cache or TuningCache()
        self._programs: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
        self._configs: dict[str, GemmConfig] = {}
        sources = _kernel_source("qgemm.cl") + _kernel_source("elementwise.cl")
        digest = hashlib.sha256(sources.encode()).hexdigest()[:12]
        self.device_key = f"{platform.name.strip()}|{device.name.strip()}|{device.driver_version.strip()}|{digest}"

    def program(self, source: str, **defines: str | int) -> Any:
        key = (source, tuple(sorted((k, str(v)) for k, v in defines.items())))
        with self.lock:
            if key not in self._programs:
                options = [f"-D{k}={v}" for k, v in key[1]]
                if source == "elementwise.cl":
                    options.append("-cl-fp32-correctly-rounded-divide-sqrt")  # x / scale as MLAS computes it
                try:
                    self._programs[key] = _cl().Program(self.context, _kernel_source(source)).build(options=options)
                except Exception as exc:
                    raise AcceleratorError(
                        f"OpenCL build of {source} with {' '.join(options)} failed on {self.device.name.strip()}: {exc}"
                    ) from exc
            return self._programs[key]

    def gemm_program(self, config: GemmConfig, in_t: str, out_mode: int, out_t: str) -> Any:
        return self.program(
            "qgemm.cl", TM=config.tm, TN=config.tn, VW=config.vw, OUT_MODE=out_mode, OUT_T=out_t, IN_T=in_t,
        )  # fmt: skip

    def gemm_config(self, m: int) -> GemmConfig:
        """The tuned tile for GEMMs with m rows: memory, then the cache file, then a measurement."""
        cls = shape_class(m)
        with self.lock:
            if cls in self._configs:
                return self._configs[cls]
            config = self.cache.get(self.device_key, cls)
            if config is None and self.tune:
                config = self._tune(cls)
            self._configs[cls] = config or DEFAULT[cls]
            return self._configs[cls]

    def _tune(self, cls: str) -> GemmConfig | None:
        cl = _cl()
        m, n, k = TUNING_SHAPES[cls]
        kp = _round_up(k, K_ALIGN)
        rng = np.random.default_rng(0)
        mf = cl.mem_flags
        a = cl.Buffer(self.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=rng.integers(-128, 128, (m, kp), np.int16))
        w = cl.Buffer(self.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=rng.integers(-128, 128, (n, kp), np.int16))
        zeros = cl.Buffer(self.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=np.zeros(n, np.int32))
        mult = cl.Buffer(self.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=np.ones(n, np.float32))
        y = cl.Buffer(self.context, mf.WRITE_ONLY, m * n * 4)

        def run_once(config: GemmConfig) -> float:
            kernel = _kernel(self.gemm_program(config, "char", 1, "int"), "qgemm")
            gsize, lsize = gemm_ndrange(config, m, n)
            i32 = np.int32
            kernel.set_args(
                a, w, zeros, mult, y, y, i32(m), i32(n), i32(kp), i32(1), i32(n), i32(0), i32(0), i32(0), i32(0), i32(0)
            )
            start = time.perf_counter()
            cl.enqueue_nd_range_kernel(self.queue, kernel, gsize, lsize).wait()
            return time.perf_counter() - start

        seconds = measure(CANDIDATES[cls], run_once)
        if not seconds:
            return None
        best = pick_fastest(seconds)
        gops = 2 * m * n * k / seconds[best] / 1e9
        log.info("tuned int8 GEMM on %s for %s: %s (%.1f GOPS)", self.device.name.strip(), cls, best, gops)
        self.cache.put(self.device_key, cls, best, gops)
        return best


def _kernel(program: Any, name: str) -> Any:
    """A fresh kernel object: each launch in a plan binds its own arguments once, at plan time."""
    return _cl().Kernel(program, name)


def gemm_ndrange(config: GemmConfig, m: int, n: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Dimension 0 walks tiles of rows (A), dimension 1 tiles of columns (W): see qgemm.cl."""
    lx, ly = config.local
    return (_round_up(-(-m // config.tm), lx), _round_up(-(-n // config.tn), ly)), (lx, ly)


@dataclass
class _Launch:
    kernel: Any
    gsize: tuple[int, ...]
    lsize: tuple[int, ...] | None


@dataclass
class _Plan:
    buffers: dict[str, Any]
    shapes: dict[str, tuple[int, ...]]
    launches: list[_Launch]
    accumulators: dict[str, tuple[Any, tuple[int, ...]]] = field(default_factory=dict)  # layer -> (buffer, shape)
    # clSetKernelArg does not retain buffers: every buffer a launch uses must live as long as the plan
    keep_alive: list[Any] = field(default_factory=list)


@dataclass
class _PackedGemm:
    """One GEMM's weights on the device: centered int16 [N, Kp] plus bias and multipliers."""

    weight: Any
    bias: Any
    mult: Any
    n: int
    k: int
    kp: int


class OpenCLLoadedModel(LoadedModel):
    backend = "opencl"

    def __init__(self, runtime: OpenCLRuntime, graph: QuantGraph) -> None:
        self.runtime = runtime
        self.graph = graph
        self.inputs = [TensorInfo(s.name, s.dtype, s.shape) for s in graph.inputs]
        self.outputs = [TensorInfo(s.name, s.dtype, s.shape) for s in graph.outputs]
        self._packed: dict[str, list[_PackedGemm]] = {}
        self._plans: dict[tuple[tuple[int, ...], ...], _Plan] = {}
        self._debug_plans: dict[tuple[tuple[int, ...], ...], _Plan] = {}
        for layer in graph.layers:
            if isinstance(layer, ConvLayer | GemmLayer):
                self._packed[layer.name] = self._pack(layer)

    # -- weights ---------------------------------------------------------------------------------------
    def _buffer(self, host: np.ndarray) -> Any:
        cl = _cl()
        host = np.ascontiguousarray(host)
        return cl.Buffer(self.runtime.context, cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR, hostbuf=host)

    def _pack(self, layer: ConvLayer | GemmLayer) -> list[_PackedGemm]:
        if isinstance(layer, ConvLayer):
            m = layer.weight.shape[0]
            groups = layer.group
            w_zp, w_scale = layer.w.zero_point, layer.w.scale
            mult = output_multiplier(layer.x.scale, w_scale, layer.y.scale)
        else:
            m, groups = layer.weight.shape[0], 1
            w_zp, w_scale = layer.b.zero_point, layer.b.scale
            if layer.out_dtype == "int32":
                mult = np.ones(m, np.float32)
            elif layer.y is None:
                mult = (np.float32(layer.alpha) * np.float32(layer.a.scale) * np.asarray(w_scale, np.float32)).astype(
                    np.float32
                )
            else:
                mult = output_multiplier(layer.a.scale, w_scale, layer.y.scale, layer.alpha)
        weight = layer.weight.reshape(m, -1).astype(np.int32) - np.broadcast_to(w_zp, (m,)).astype(np.int32)[:, None]
        bias = np.zeros(m, np.int32) if layer.bias is None else layer.bias.astype(np.int32)
        mult = np.broadcast_to(np.asarray(mult, np.float32), (m,))
        mg = m // groups
        packed = []
        for g in range(groups):
            rows = slice(g * mg, (g + 1) * mg)
            k = weight.shape[1]
            kp = _round_up(k, K_ALIGN)
            w16 = np.zeros((mg, kp), np.int16)
            w16[:, :k] = weight[rows]
            packed.append(_PackedGemm(self._buffer(w16), self._buffer(bias[rows]), self._buffer(mult[rows]), mg, k, kp))
        return packed

    # -- plans -----------------------------------------------------------------------------------------
    def _plan(self, shapes_in: dict[str, tuple[int, ...]], debug: bool) -> _Plan:
        key = tuple(shapes_in[s.name] for s in self.graph.inputs)
        plans = self._debug_plans if debug else self._plans
        if key not in plans:
            if len(plans) >= _MAX_PLANS:
                plans.pop(next(iter(plans)))
            plans[key] = _PlanBuilder(self, shapes_in, debug).build()
        return plans[key]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._execute(feeds, debug=False)[0]

    def run_with_accumulators(
        self, feeds: Mapping[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Outputs plus every Conv/GEMM layer's int32 accumulators (same kernels, one extra store)."""
        return self._execute(feeds, debug=True)

    def _execute(
        self, feeds: Mapping[str, np.ndarray], debug: bool
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        cl = _cl()
        arrays = {}
        for spec in self.graph.inputs:
            if spec.name not in feeds:
                raise ValueError(f"missing input {spec.name!r} (model inputs: {[s.name for s in self.graph.inputs]})")
            arrays[spec.name] = np.ascontiguousarray(feeds[spec.name], dtype=spec.dtype)
        with self.runtime.lock:
            plan = self._plan({n: a.shape for n, a in arrays.items()}, debug)
            queue = self.runtime.queue
            for name, array in arrays.items():
                cl.enqueue_copy(queue, plan.buffers[name], array, is_blocking=False)
            for launch in plan.launches:
                cl.enqueue_nd_range_kernel(queue, launch.kernel, launch.gsize, launch.lsize)
            outputs = {}
            for spec in self.graph.outputs:
                out = np.empty(plan.shapes[spec.name], self.graph.dtypes[spec.name])
                cl.enqueue_copy(queue, out, plan.buffers[spec.name], is_blocking=False)
                outputs[spec.name] = out
            accs = {}
            for name, (buf, shape) in plan.accumulators.items():
                accs[name] = np.empty(shape, np.int32)
                cl.enqueue_copy(queue, accs[name], buf, is_blocking=False)
            queue.finish()
        return outputs, accs

    def close(self) -> None:
        with self.runtime.lock:
            self._plans.clear()
            self._debug_plans.clear()
            self._packed.clear()


class _PlanBuilder:
    """Allocates buffers and binds kernel arguments for one set of input shapes."""

    def __init__(self, model: OpenCLLoadedModel, shapes_in: dict[str, tuple[int, ...]], debug: bool) -> None:
        self.model, self.rt, self.debug = model, model.runtime, debug
        self.graph = model.graph
        self.shapes = infer_shapes(self.graph, shapes_in)
        self.buffers: dict[str, Any] = {}
        self.launches: list[_Launch] = []
        self.accumulators: dict[str, tuple[Any, tuple[int, ...]]] = {}
        self._scratch: Any = None
        self.keep_alive: list[Any] = []

    def build(self) -> _Plan:
        cl = _cl()
        for spec in self.graph.inputs:
            self.buffers[spec.name] = self._alloc(spec.name)
        scratch = max((self._scratch_need(layer) for layer in self.graph.layers), default=0)
        self._scratch = cl.Buffer(self.rt.context, cl.mem_flags.READ_WRITE, max(scratch, 4))
        for layer in self.graph.layers:
            self._lower(layer)
        return _Plan(self.buffers, self.shapes, self.launches, self.accumulators, self.keep_alive)

    def _alloc(self, name: str) -> Any:
        cl = _cl()
        nbytes = int(np.prod(self.shapes[name], dtype=np.int64)) * np.dtype(self.graph.dtypes[name]).itemsize
        return cl.Buffer(self.rt.context, cl.mem_flags.READ_WRITE, max(nbytes, 4))

    def _size(self, name: str) -> int:
        return int(np.prod(self.shapes[name], dtype=np.int64))

    def _ctype(self, name: str) -> str:
        return _C_TYPES[self.graph.dtypes[name]]

    def _scratch_need(self, layer: Layer) -> int:
        if isinstance(layer, ConvLayer):
            n, _, oh, ow = self.shapes[layer.outputs[0]]
            return n * oh * ow * self.model._packed[layer.name][0].kp * 2
        if isinstance(layer, GemmLayer):
            return (
                self._size(layer.inputs[0])
                // self.model._packed[layer.name][0].k
                * self.model._packed[layer.name][0].kp
                * 2
            )
        return 0

    def _launch(self, kernel: Any, gsize: tuple[int, ...], lsize: tuple[int, ...] | None, *args: Any) -> None:
        kernel.set_args(*args)
        self.keep_alive.extend(a for a in args if not isinstance(a, np.generic))
        self.launches.append(_Launch(kernel, gsize, lsize))

    def _elementwise(self, name: str, in_t: str, out_t: str) -> Any:
        return _kernel(self.rt.program("elementwise.cl", IN_T=in_t, OUT_T=out_t), name)

    def _packing(self, name: str, in_name: str) -> Any:
        program = self.rt.program("qgemm.cl", TM=1, TN=1, VW=8, OUT_MODE=1, OUT_T="int", IN_T=self._ctype(in_name))
        return _kernel(program, name)

    def _lower(self, layer: Layer) -> None:
        i32, f32 = np.int32, np.float32
        src, dst = layer.inputs[0], layer.outputs[0]
        if isinstance(layer, FlattenLayer | ReshapeLayer):
            self.buffers[dst] = self.buffers[src]  # same bytes, new shape: no copy
            return
        self.buffers[dst] = self._alloc(dst)
        x, y, size = self.buffers[src], self.buffers[dst], self._size(dst)
        if isinstance(layer, QuantizeLayer):
            k = self._elementwise("quantize", "float", self._ctype(dst))
            zp = int(layer.y.zero_point)
            self._launch(k, (size,), None, x, y, f32(layer.y.scale), i32(zp), i32(layer.y.qmin), i32(layer.y.qmax))
        elif isinstance(layer, DequantizeLayer):
            if layer.x.per_channel:
                raise UnsupportedModel(
                    f"node {layer.name} (DequantizeLinear): per-channel dequantization is not supported"
                )
            k = self._elementwise("dequantize", self._ctype(src), "float")
            self._launch(k, (size,), None, x, y, f32(layer.x.scale), i32(int(layer.x.zero_point)))
        elif isinstance(layer, ReluLayer):
            self._launch(self._elementwise("relu", self._ctype(src), self._ctype(dst)), (size,), None, x, y)
        elif isinstance(layer, MaxPoolLayer):
            _, _, h, w = self.shapes[src]
            _, _, oh, ow = self.shapes[dst]
            (kh, kw), (sh, sw), (dh, dw) = layer.kernel, layer.strides, layer.dilations
            k = self._elementwise("max_pool", self._ctype(src), self._ctype(dst))
            args = (h, w, oh, ow, kh, kw, sh, sw, layer.pads[0], layer.pads[1], dh, dw)
            self._launch(k, (size,), None, x, y, *(i32(v) for v in args))
        elif isinstance(layer, QAddLayer):
            self._qadd(layer, x, y, size)
        elif isinstance(layer, SoftmaxLayer):
            shape = self.shapes[src]
            if layer.axis not in (-1, len(shape) - 1):
                raise UnsupportedModel(
                    f"node {layer.name} (Softmax): only the last axis is supported (axis={layer.axis})"
                )
            self._launch(
                self._elementwise("softmax_rows", "float", "float"), (size // shape[-1],), None, x, y, i32(shape[-1])
            )
        elif isinstance(layer, ConvLayer):
            self._conv(layer, x, y)
        elif isinstance(layer, GemmLayer):
            self._gemm(layer, x, y)
        else:  # pragma: no cover - lower_model only produces the layers above
            raise UnsupportedModel(f"node {layer.name} ({layer.op}) has no OpenCL kernel")

    def _qadd(self, layer: QAddLayer, x: Any, y: Any, size: int) -> None:
        i32, f32 = np.int32, np.float32
        a_shape = self.shapes[layer.inputs[0]]
        if layer.b_const is not None:
            b_host = np.ascontiguousarray(layer.b_const)
            b_shape: tuple[int, ...] = b_host.shape
            b = self.model._buffer(b_host if b_host.size else np.zeros(1, b_host.dtype))
        else:
            b_shape, b = self.shapes[layer.inputs[1]], self.buffers[layer.inputs[1]]
        b_trim = tuple(b_shape)
        while b_trim and b_trim[0] == 1:
            b_trim = b_trim[1:]
        if b_trim and tuple(a_shape[len(a_shape) - len(b_trim) :]) != b_trim:
            raise UnsupportedModel(
                f"node {layer.name} (QLinearAdd): B {b_shape} must match the trailing dims of A {a_shape} to broadcast"
            )
        ratio_a = np.float32(layer.a.scale) / np.float32(layer.y.scale)
        ratio_b = np.float32(layer.b.scale) / np.float32(layer.y.scale)
        k = self._elementwise("qadd", self._ctype(layer.outputs[0]), self._ctype(layer.outputs[0]))
        self._launch(
            k, (size,), None, x, b, y, i32(int(np.prod(b_trim, dtype=np.int64))), f32(ratio_a),
            i32(int(layer.a.zero_point)), f32(ratio_b), i32(int(layer.b.zero_point)), i32(int(layer.y.zero_point)),
            i32(layer.y.qmin), i32(layer.y.qmax),
        )  # fmt: skip

    def _acc_buffer(self, layer: Layer) -> Any:
        if not self.debug:
            return self._scratch  # never written: store_acc is 0
        buf = self._alloc_bytes(self._size(layer.outputs[0]) * 4)
        self.accumulators[layer.name] = (buf, self.shapes[layer.outputs[0]])
        return buf

    def _alloc_bytes(self, nbytes: int) -> Any:
        cl = _cl()
        return cl.Buffer(self.rt.context, cl.mem_flags.READ_WRITE, max(nbytes, 4))

    def _gemm_launch(
        self, layer: Layer, packed: _PackedGemm, m: int, p: int, ldc: int, col0: int, y: Any, acc: Any
    ) -> None:
        i32 = np.int32
        config = self.rt.gemm_config(m)
        out_dtype = self.graph.dtypes[layer.outputs[0]]
        out_mode = {"int32": 1, "float32": 2}.get(out_dtype, 0)
        quant = getattr(layer, "y", None)
        zp, qmin, qmax = (int(quant.zero_point), quant.qmin, quant.qmax) if quant is not None else (0, 0, 0)
        kernel = _kernel(self.rt.gemm_program(config, "char", out_mode, _C_TYPES[out_dtype]), "qgemm")
        gsize, lsize = gemm_ndrange(config, m, packed.n)
        self._launch(
            kernel, gsize, lsize, self._scratch, packed.weight, packed.bias, packed.mult, y, acc, i32(m), i32(packed.n),
            i32(packed.kp), i32(p), i32(ldc), i32(col0), i32(zp), i32(qmin), i32(qmax), i32(1 if self.debug else 0),
        )  # fmt: skip

    def _gemm(self, layer: GemmLayer, x: Any, y: Any) -> None:
        (packed,) = self.model._packed[layer.name]
        m = self._size(layer.inputs[0]) // packed.k
        pack = self._packing("pack_rows", layer.inputs[0])
        self._launch(
            pack,
            (packed.kp, m),
            None,
            x,
            self._scratch,
            np.int32(packed.k),
            np.int32(packed.kp),
            np.int32(int(layer.a.zero_point)),
        )
        self._gemm_launch(layer, packed, m, 1, packed.n, 0, y, self._acc_buffer(layer))

    def _conv(self, layer: ConvLayer, x: Any, y: Any) -> None:
        i32 = np.int32
        n, c, h, w = self.shapes[layer.inputs[0]]
        _, mtot, oh, ow = self.shapes[layer.outputs[0]]
        _, cg, kh, kw = layer.weight.shape
        rows = n * oh * ow
        acc = self._acc_buffer(layer)
        for g, packed in enumerate(self.model._packed[layer.name]):
            k = self._packing("im2col", layer.inputs[0])
            args = (
                c,
                h,
                w,
                g * cg,
                cg,
                kh,
                kw,
                oh,
                ow,
                *layer.strides,
                layer.pads[0],
                layer.pads[1],
                *layer.dilations,
                packed.kp,
                int(layer.x.zero_point),
            )
            self._launch(k, (packed.kp, rows), None, x, self._scratch, *(i32(v) for v in args))
            self._gemm_launch(layer, packed, rows, oh * ow, mtot, g * packed.n, y, acc)


class OpenCLBackend(Backend):
    """int8 QOperator graphs on OpenCL GPUs/CPUs (not FPGA accelerator devices)."""

    kind = "opencl"

    def __init__(self, tune: bool = True, cache: TuningCache | None = None, device_index: int = 0) -> None:
        self.tune, self.cache, self.device_index = tune, cache, device_index
        self._runtime: OpenCLRuntime | None = None
        self._lock = threading.Lock()

    def _devices(self) -> list[tuple[Any, Any]]:
        return [(p, d) for p, d in list_devices() if not is_accelerator(d)]

    def probe(self) -> list[AcceleratorInfo]:
        try:
            return [device_info(p, d) for p, d in self._devices()]
        except Exception as exc:  # a driver that lists devices but fails on queries counts as none
            log.warning("OpenCL probe failed: %s", exc)
            return []

    def supports(self, model: onnx.ModelProto) -> Support:
        if not self._devices():
            return Support(False, "no OpenCL device (GPU/CPU) found")
        try:
            graph = lower_model(model)
        except UnsupportedModel as exc:
            return Support(False, str(exc))
        return Support(True, f"all {len(graph.layers)} layers have OpenCL int8 kernels")

    def runtime(self) -> OpenCLRuntime:
        with self._lock:
            if self._runtime is None:
                devices = self._devices()
                if len(devices) <= self.device_index:
                    raise AcceleratorError(
                        "no OpenCL device (GPU/CPU) found; install an OpenCL driver (e.g. pocl) or prefer cpu"
                    )
                platform, device = devices[self.device_index]
                self._runtime = OpenCLRuntime(platform, device, self.tune, self.cache)
            return self._runtime

    def load(self, model_path: Path) -> LoadedModel:
        graph = lower_model(Path(model_path))
        return OpenCLLoadedModel(self.runtime(), graph)

    def close(self) -> None:
        with self._lock:
            self._runtime = None

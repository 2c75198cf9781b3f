"""Native TensorRT runner (TensorRT 10.x and 11.x Python API) with engines from the engine cache.

Build: Builder -> network -> OnnxParser (every parser error is reported) -> builder config (workspace
pool limit, optimisation level, timing cache) -> one optimisation profile (min/opt/max NCHW) ->
``build_serialized_network`` (None = failure). Run: ``deserialize_cuda_engine`` (None, e.g. after a
TensorRT or driver upgrade, = drop the cached engine and rebuild), one execution context per CUDA stream,
``set_input_shape``, ``set_tensor_address`` with torch ``data_ptr()``s, ``execute_async_v3`` on the current
torch stream; tensors stay referenced until an event recorded after the launch has completed.

Precision: TensorRT 11 networks are strongly typed (the FP16/INT8 builder flags are gone), so fp16 is
exported into the ONNX (half weights, half I/O) and int8 comes as QDQ nodes. TensorRT 10 still has
``BuilderFlag.FP16``: there the fp32 ONNX is built with FP16 (and INT8 for the QDQ file) enabled, which
lets TensorRT keep precision-sensitive layers in fp32.

TensorRT is imported only inside these functions: importing this module needs neither CUDA nor TensorRT.
"""

from __future__ import annotations

import collections
import logging
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .. import paths
from ..errors import PsrError
from ..fileio import write_atomic
from ..models.registry import ModelDescriptor
from .backends import TRTBackend
from .engine_cache import EngineCache
from .export import INPUT_NAME, OUTPUT_NAME, cached_onnx, onnx_fields

log = logging.getLogger("psr2video.tensorrt")


class EngineBuildError(PsrError, RuntimeError):
    """TensorRT could not parse the ONNX file or build an engine from it."""


def load_profiles(path: str | Path | None = None) -> dict[str, dict]:
    """Named shape profiles: the built-in runtime/profiles.toml, then ``path`` or ``$PSR2VIDEO_PROFILES``."""
    files = [paths.BUILTIN_PROFILES, Path(path)] if path else paths.profile_files()
    profiles: dict[str, dict] = {}
    for p in files:
        if p.is_file():
            with open(p, "rb") as f:
                profiles.update(tomllib.load(f).get("profiles", {}))
    return profiles


@dataclass(frozen=True)
class ShapeProfile:
    """A TensorRT optimisation profile over NCHW input shapes (C = 3)."""

    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]
    name: str = ""

    @classmethod
    def static(cls, n: int, h: int, w: int, name: str = "") -> ShapeProfile:
        s = (n, 3, h, w)
        return cls(s, s, s, name or f"{w}x{h}")

    @classmethod
    def named(cls, name: str, dynamic: bool = False, batch: int = 1,
              profiles: dict[str, dict] | None = None) -> ShapeProfile:
        profiles = profiles or load_profiles()
        if name not in profiles:
            raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(profiles)} or give --shape WxH")
        p = profiles[name]
        (w0, h0), (w1, h1), (w2, h2) = p["min"], p["opt"], p["max"]
        if not dynamic and name != "dynamic":
            return cls.static(batch, h1, w1, name)
        return cls((1, 3, h0, w0), (batch, 3, h1, w1), (max(batch, int(p.get("max_batch", batch))), 3, h2, w2),
                   f"{name}-dynamic" if name != "dynamic" else name)

    @classmethod
    def from_shape(cls, w: int, h: int, dynamic: bool = False, batch: int = 1) -> ShapeProfile:
        if not dynamic:
            return cls.static(batch, h, w)
        return cls((1, 3, 16, 16), (batch, 3, h, w), (batch, 3, h, w), f"upto-{w}x{h}")

    def contains(self, shape) -> bool:
        return all(lo <= s <= hi for lo, s, hi in zip(self.min, shape, self.max, strict=True))

    @property
    def is_static(self) -> bool:
        return self.min == self.max

    def label(self) -> str:
        f = "x".join
        return f"{f(map(str, self.min))}:{f(map(str, self.opt))}:{f(map(str, self.max))}"


def trt_available() -> tuple[bool, str]:
    """(True, version) when TensorRT imports and a CUDA device exists, else (False, reason)."""
    if not torch.cuda.is_available():
        return False, "no CUDA device"
    try:
        import tensorrt as trt
    except ImportError as e:
        return False, f"TensorRT is not installed ({e.msg})"
    return True, trt.__version__


def _strongly_typed(trt) -> bool:
    """TensorRT 11 (no FP16 builder flag) must use strongly typed networks; 10 uses builder flags."""
    return not hasattr(trt.BuilderFlag, "FP16")


def onnx_precision(precision: str, strongly_typed: bool) -> str:
    """Which ONNX file a TensorRT build of ``precision`` starts from."""
    if precision == "fp16":
        return "fp16" if strongly_typed else "fp32"
    return precision


def gpu_fields(device: torch.device) -> dict:
    props = torch.cuda.get_device_properties(device)
    return {"gpu": props.name, "cc": f"{props.major}.{props.minor}"}


def build_engine(onnx_path: str | Path, out_path: str | Path, precision: str, profile: ShapeProfile,
                 workspace_gib: float = 4.0, opt_level: int = 3, timing_cache: str | Path | None = None,
                 echo=None) -> float:
    """Build a serialized engine from ``onnx_path`` into ``out_path``; returns the build seconds."""
    import tensorrt as trt

    say = echo or log.info
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly = _strongly_typed(trt)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = []
        for i in range(parser.num_errors):
            e = parser.get_error(i)
            where = getattr(e, "node_name", lambda: "")() or f"node {e.node()}"
            errors.append(f"  [{where}] {e.desc()}")
        raise EngineBuildError(f"TensorRT could not parse {onnx_path} ({parser.num_errors} errors):\n"
                               + "\n".join(errors))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    config.builder_optimization_level = int(opt_level)
    if not strongly:
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
    tc_path = Path(timing_cache) if timing_cache else None
    tc = config.create_timing_cache(tc_path.read_bytes() if tc_path and tc_path.is_file() else b"")
    config.set_timing_cache(tc, ignore_mismatch=False)
    prof = builder.create_optimization_profile()
    prof.set_shape(INPUT_NAME, profile.min, profile.opt, profile.max)
    config.add_optimization_profile(prof)
    say(f"TensorRT {trt.__version__}: building {precision} engine for {profile.name or profile.label()} "
        f"({'strongly typed' if strongly else 'builder flags'}, workspace {workspace_gib:g} GiB, "
        f"opt level {opt_level})")
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if serialized is None:
        raise EngineBuildError("TensorRT failed to build the engine (see its messages above); a larger "
                               "workspace (TRTBackend(workspace_gib=...)) or a smaller profile often helps")
    Path(out_path).write_bytes(memoryview(serialized))
    if tc_path is not None:
        write_atomic(tc_path, memoryview(config.get_timing_cache().serialize()))
    say(f"TensorRT build took {seconds:.1f} s")
    return seconds


def cached_engine(model: nn.Module, descriptor: ModelDescriptor, precision: str, profile: ShapeProfile,
                  device: torch.device, config: TRTBackend | None = None, cache: EngineCache | None = None,
                  calibration: str | Path | None = None, echo=None) -> Path:
    """The engine for these inputs from the engine cache, built (once, across processes) when needed."""
    import tensorrt as trt

    config = config or TRTBackend()
    cache = cache or EngineCache()
    strongly = _strongly_typed(trt)
    src_precision = onnx_precision(precision, strongly)
    onnx_path = cached_onnx(model, descriptor, src_precision, cache, calibration=calibration, echo=echo)
    fields = {**onnx_fields(model, descriptor, src_precision, calibration=calibration), "precision": precision,
              "onnx_precision": src_precision, "tensorrt": trt.__version__, **gpu_fields(device),
              "profile": profile.label(), "strongly_typed": strongly, "workspace_gib": config.workspace_gib,
              "opt_level": config.opt_level}
    tc = cache.dir / "timing" / f"tensorrt-{trt.__version__}-{fields['gpu'].replace(' ', '_')}.cache"
    tc.parent.mkdir(parents=True, exist_ok=True)
    return cache.get_or_build(
        fields, "trt", ".engine",
        lambda tmp: build_engine(onnx_path, tmp, precision, profile, config.workspace_gib, config.opt_level, tc,
                                 echo),
        describe=f"TensorRT engine {descriptor.variant} x{descriptor.scale} {precision} {profile.name}", echo=echo)


class TRTRunner:
    name = "tensorrt"

    def __init__(self, config: TRTBackend, model: nn.Module, descriptor: ModelDescriptor, precision: str,
                 device: torch.device, cache: EngineCache | None = None, profile: ShapeProfile | None = None,
                 calibration: str | Path | None = None, echo=None) -> None:
        ok, why = trt_available()
        if device.type != "cuda" or not ok:
            raise ValueError(f"the tensorrt backend needs CUDA and TensorRT ({why}); "
                             "use --backend onnxruntime or torch")
        if precision not in ("fp32", "fp16", "int8"):
            raise ValueError(f"the tensorrt backend runs fp32, fp16 or int8, not {precision}")
        self.config, self.descriptor, self.precision, self.device = config, descriptor, precision, device
        self.model, self.cache, self.calibration, self.echo = model, cache or EngineCache(), calibration, echo
        self.engine = None
        self.profile: ShapeProfile | None = None
        self._contexts: dict[int, object] = {}
        self._inflight: collections.deque = collections.deque()
        self.dtype = torch.float32
        if not config.static_shape:
            self._load(profile or ShapeProfile.named("dynamic"))
        elif profile is not None:
            self._load(profile)

    def __repr__(self) -> str:
        return f"TRTRunner({self.descriptor.variant} x{self.descriptor.scale} {self.precision}, {self.profile})"

    def _load(self, profile: ShapeProfile) -> None:
        import tensorrt as trt

        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        for attempt in range(2):
            path = cached_engine(self.model, self.descriptor, self.precision, profile, self.device, self.config,
                                 self.cache, self.calibration, self.echo)
            engine = runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is not None:
                break
            self.cache.invalidate(path, "TensorRT could not deserialize it (a TensorRT or driver change?)")
            if attempt:
                raise EngineBuildError(f"a freshly built engine {path} does not deserialize")
        self.runtime, self.engine, self.profile, self.engine_path = runtime, engine, profile, path
        self._contexts.clear()
        dt = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
        self.dtype = dt[engine.get_tensor_dtype(INPUT_NAME)]
        self.out_dtype = dt[engine.get_tensor_dtype(OUTPUT_NAME)]

    def _context(self, stream: torch.cuda.Stream):
        """One execution context per CUDA stream (contexts are not safe to share across streams)."""
        key = stream.cuda_stream
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = self.engine.create_execution_context()
            if ctx is None:
                raise RuntimeError("TensorRT could not create an execution context (out of GPU memory?)")
            self._contexts[key] = ctx
        return ctx

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(device=self.device, dtype=self.dtype).contiguous()
        shape = tuple(x.shape)
        if self.profile is None or not self.profile.contains(shape):
            if not self.config.static_shape and self.profile is not None:
                raise ValueError(f"input {shape} is outside the engine's profile {self.profile.label()}; use "
                                 "tiling (--tile) or build a larger profile (psr2video engine build)")
            self._load(ShapeProfile.static(*shape[:1], *shape[2:]))
            x = x.to(self.dtype)
        stream = torch.cuda.current_stream(self.device)
        ctx = self._context(stream)
        ctx.set_input_shape(INPUT_NAME, shape)
        y = torch.empty(tuple(ctx.get_tensor_shape(OUTPUT_NAME)), dtype=self.out_dtype, device=self.device)
        ctx.set_tensor_address(INPUT_NAME, x.data_ptr())
        ctx.set_tensor_address(OUTPUT_NAME, y.data_ptr())
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        ev = torch.cuda.Event()
        ev.record(stream)
        self._inflight.append((ev, x, y))  # keep the buffers alive until the GPU is done with them
        while self._inflight and self._inflight[0][0].query():
            self._inflight.popleft()
        return y

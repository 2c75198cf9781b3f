"""Native TensorRT runner (TensorRT 10.x and 11.x Python API) with engines from the engine cache.

Build: Builder -> strongly typed network -> OnnxParser (every parser error is reported) -> builder config
(workspace pool limit, optimisation level, timing cache, a progress monitor that prints the build phases on
stderr: a build takes minutes) -> one optimisation profile (min/opt/max NCHW, batch included) ->
``build_serialized_network`` (None = failure). Both majors build strongly typed from the same ONNX file
(fp16 weights and I/O for fp16, QDQ nodes for int8), so TensorRT 10 and 11 compute the same graph.

Run: ``deserialize_cuda_engine`` (None, e.g. after a TensorRT or driver upgrade, = drop the cached engine and
rebuild), one execution context per CUDA stream, ``set_input_shape`` (checked: False = outside the profile),
``set_tensor_address`` with 256-byte aligned torch ``data_ptr()``s, ``execute_async_v3`` on the caller's
stream, or on the runner's own stream when the caller is on the legacy default stream (TensorRT documents
extra device synchronisation there). Every build, load and launch runs under ``torch.cuda.device(device)``
so ``cuda:1`` gets its engine, its context and its cache label from GPU 1.

Which engine: ``prepare(shapes)`` (the pipeline calls it before the run) takes a loaded engine whose profile
holds every shape, else a cached engine built for this model, precision, TensorRT and GPU with such a
profile (what ``psr2video engine build`` made), else it builds one. Engines stay loaded in a small cache and
are released only after the last launch on them has completed.

TensorRT is imported only inside these functions: importing this module needs neither CUDA nor TensorRT.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import logging
import sys
import time
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import paths
from ..errors import PsrError, SettingError, first_line
from ..fileio import write_atomic
from ..models.registry import ModelDescriptor
from .backends import TRTBackend
from .engine_cache import EngineCache
from .export import INPUT_NAME, OUTPUT_NAME, cached_onnx, onnx_fields

log = logging.getLogger("psr2video.tensorrt")

Shape = tuple[int, int, int, int]
ALIGN = 256  # TensorRT expects I/O addresses aligned to 256 bytes
LOADED_ENGINES = 4  # engines kept deserialised at once (static_shape: one per tile shape)

def stderr_echo(msg: str) -> None:
    """Default progress sink: exports and builds take minutes and must not look like a hang."""
    print(msg, file=sys.stderr, flush=True)


class EngineBuildError(PsrError, RuntimeError):
    """TensorRT could not parse the ONNX file or build an engine from it."""


def backend_hint(model: nn.Module) -> str:
    """The other backends a model runs on: an ONNX file has no PyTorch form."""
    backends = getattr(getattr(model, "descriptor", None), "backends", ("torch", "onnxruntime"))
    return " or --backend ".join(b for b in ("onnxruntime", "torch") if b in backends) or "onnxruntime"


def load_profiles(path: str | Path | None = None) -> dict[str, dict]:
    """Named shape profiles: the built-in runtime/profiles.toml, then ``path`` or ``$PSR2VIDEO_PROFILES``."""
    files = [paths.BUILTIN_PROFILES, Path(path)] if path else paths.profile_files()
    profiles: dict[str, dict] = {}
    for p in files:
        if not p.is_file():  # a file the user named (PSR2VIDEO_PROFILES) that isn't there is said, not skipped
            raise SettingError(f"profile file {p} not found (from $PSR2VIDEO_PROFILES)" if not path else
                             f"profile file {p} not found")
        try:
            with open(p, "rb") as f:
                table = tomllib.load(f).get("profiles", {})
        except tomllib.TOMLDecodeError as e:
            raise SettingError(f"profile file {p}: {e}") from None
        if not isinstance(table, dict):
            raise SettingError(f"profile file {p}: 'profiles' must be a table of [profiles.NAME] sections")
        for name, entry in table.items():
            _check_profile_entry(p, name, entry)
        profiles.update(table)
    return profiles


def _check_profile_entry(path: Path, name: str, entry: Any) -> None:
    """A [profiles.NAME] section as ``ShapeProfile.named`` reads it, or one line naming what is wrong (it was a
    KeyError or TypeError traceback)."""
    where = f"profile file {path}: [profiles.{name}]"
    example = "e.g. min = [64, 64], opt = [1280, 720], max = [1920, 1088]"
    if not isinstance(entry, dict):
        raise SettingError(f"{where} must be a table with min, opt and max [width, height] ({example})")

    def ints(v: Any, n: int) -> bool:
        return (isinstance(v, list) and len(v) == n
                and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in v))

    missing = [key for key in ("min", "opt", "max") if key not in entry]
    if missing:
        raise SettingError(f"{where} has no {' or '.join(missing)} ({example})")
    for key in ("min", "opt", "max"):
        if not ints(entry[key], 2):
            raise SettingError(f"{where}: {key} must be [width, height] in pixels (two whole numbers >= 1), "
                               f"not {entry[key]!r}")
    if "batch" in entry and not ints(entry["batch"], 3):
        raise SettingError(f"{where}: batch must be [min, opt, max] frames (three whole numbers >= 1), "
                           f"not {entry['batch']!r}")
    if "max_batch" in entry and not ints([entry["max_batch"]], 1):
        raise SettingError(f"{where}: max_batch must be a whole number >= 1, not {entry['max_batch']!r}")


def _dims(v: Iterable[int]) -> Shape:
    t = tuple(int(x) for x in v)
    if len(t) != 4:
        raise SettingError(f"a profile shape is NCHW (4 numbers), got {t}")
    return t  # type: ignore[return-value]


@dataclass(frozen=True)
class ShapeProfile:
    """A TensorRT optimisation profile over NCHW input shapes (C = 3), batch range included.

    Checked on construction with TensorRT's own rule (``IOptimizationProfile.set_shape``: 0 <= min <= opt
    <= max per dimension, fixed dimensions equal), so a bad profile is one clear line, not a build error.
    """

    min: Shape
    opt: Shape
    max: Shape
    name: str = ""

    def __post_init__(self) -> None:
        lo, mid, hi = (_dims(v) for v in (self.min, self.opt, self.max))
        object.__setattr__(self, "min", lo)
        object.__setattr__(self, "opt", mid)
        object.__setattr__(self, "max", hi)
        label = self.name or self.label()
        if lo[1] != 3 or mid[1] != 3 or hi[1] != 3:
            raise SettingError(f"profile {label}: the model takes 3 channels, got {lo[1]}/{mid[1]}/{hi[1]}")
        for i, dim in enumerate("NCHW"):
            if not 1 <= lo[i] <= mid[i] <= hi[i]:
                raise SettingError(f"profile {label}: {dim} must satisfy 1 <= min <= opt <= max, got "
                                 f"{lo[i]} / {mid[i]} / {hi[i]}")

    @classmethod
    def static(cls, n: int, h: int, w: int, name: str = "") -> ShapeProfile:
        s = (n, 3, h, w)
        return cls(s, s, s, name or f"{w}x{h}" + (f"-b{n}" if n != 1 else ""))

    @classmethod
    def named(cls, name: str, dynamic: bool = False, batch: int = 1,
              profiles: dict[str, dict] | None = None) -> ShapeProfile:
        """A profile from profiles.toml: static at ``opt`` with ``batch`` frames, or dynamic over min..max
        sizes and the profile's batch range (widened to take ``batch``)."""
        profiles = profiles or load_profiles()
        if name not in profiles:
            raise SettingError(f"unknown profile {name!r}; choose one of {', '.join(profiles)} or give --shape WxH")
        p = profiles[name]
        (w0, h0), (w1, h1), (w2, h2) = p["min"], p["opt"], p["max"]
        if not dynamic and name != "dynamic":
            return cls.static(batch, h1, w1, name)
        b0, b1, b2 = (int(v) for v in p.get("batch", [1, 1, p.get("max_batch", 1)]))
        b1 = max(b1, batch)
        return cls((min(b0, batch), 3, h0, w0), (b1, 3, h1, w1), (max(b2, batch), 3, h2, w2),
                   f"{name}-dynamic" if name != "dynamic" else name)

    @classmethod
    def from_shape(cls, w: int, h: int, dynamic: bool = False, batch: int = 1) -> ShapeProfile:
        if not dynamic:
            return cls.static(batch, h, w)
        return cls((1, 3, min(16, h), min(16, w)), (batch, 3, h, w), (batch, 3, h, w), f"upto-{w}x{h}")

    @classmethod
    def covering(cls, shapes: Sequence[Shape], base: ShapeProfile | None = None) -> ShapeProfile:
        """The smallest widening of ``base`` (or of the shapes alone) that takes every shape."""
        lo = [min(s[i] for s in shapes) for i in range(4)]
        hi = [max(s[i] for s in shapes) for i in range(4)]
        if base is not None:
            lo = [min(a, b) for a, b in zip(base.min, lo, strict=True)]
            hi = [max(a, b) for a, b in zip(base.max, hi, strict=True)]
            opt = [min(max(o, a), b) for o, a, b in zip(base.opt, lo, hi, strict=True)]
            name = base.name if base.contains(tuple(hi)) and base.contains(tuple(lo)) else f"{base.name}+"
        else:
            opt, name = hi, f"upto-{hi[3]}x{hi[2]}-b{hi[0]}"
        return cls(tuple(lo), tuple(opt), tuple(hi), name)  # type: ignore[arg-type]

    @classmethod
    def parse(cls, label: str, name: str = "") -> ShapeProfile:
        """Inverse of ``label()`` (the form stored in the engine cache's key fields)."""
        lo, mid, hi = (tuple(int(v) for v in part.split("x")) for part in label.split(":"))
        return cls(lo, mid, hi, name)  # type: ignore[arg-type]

    def contains(self, shape: Sequence[int]) -> bool:
        return all(lo <= s <= hi for lo, s, hi in zip(self.min, shape, self.max, strict=True))

    def contains_all(self, shapes: Iterable[Sequence[int]]) -> bool:
        return all(self.contains(s) for s in shapes)

    @property
    def is_static(self) -> bool:
        return self.min == self.max

    @property
    def volume(self) -> int:
        n, c, h, w = self.max
        return n * c * h * w

    def label(self) -> str:
        f = "x".join
        return f"{f(map(str, self.min))}:{f(map(str, self.opt))}:{f(map(str, self.max))}"

    def describe(self) -> str:
        if self.is_static:
            return f"{self.max[3]}x{self.max[2]}, batch {self.max[0]}"
        return (f"{self.min[3]}x{self.min[2]}..{self.max[3]}x{self.max[2]}, batch {self.min[0]}..{self.max[0]}")


def trt_available() -> tuple[bool, str]:
    """(True, "TensorRT X.Y") when TensorRT imports, is 10.x/11.x and creates a runtime on CUDA, else (False,
    why). A real probe: an installed package whose libraries don't load must not be chosen."""
    if not torch.cuda.is_available():
        return False, "no CUDA device"
    try:
        import tensorrt as trt
    except ImportError as e:
        return False, f"TensorRT is not installed ({e.msg})"
    except Exception as e:  # noqa: BLE001 - e.g. OSError: libnvinfer.so not found
        return False, f"TensorRT does not import ({first_line(e, with_type=True)})"
    version = str(getattr(trt, "__version__", "?"))
    if version.split(".")[0] not in ("10", "11"):
        return False, f"TensorRT {version} is not supported (10.x or 11.x)"
    try:
        runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    except Exception as e:  # noqa: BLE001
        return False, f"TensorRT {version} could not start ({first_line(e, with_type=True)})"
    if runtime is None:
        return False, f"TensorRT {version} could not create a runtime (CUDA driver too old?)"
    return True, f"TensorRT {version}"


def onnx_precision(precision: str, strongly_typed: bool = True) -> str:
    """Which ONNX file a TensorRT build of ``precision`` starts from (strongly typed: the ONNX's own types)."""
    if precision == "fp16" and not strongly_typed:
        return "fp32"
    return precision


def gpu_fields(device: torch.device) -> dict:
    props = torch.cuda.get_device_properties(device)
    return {"gpu": props.name, "cc": f"{props.major}.{props.minor}"}


def _device_scope(device: torch.device | None):
    """``torch.cuda.device(device)`` on CUDA (build/load/launch on the runner's GPU, not GPU 0)."""
    if device is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.cuda.device(device)


def _progress_monitor(trt, say: Callable[[str], None]):
    """A TensorRT ``IProgressMonitor`` printing top-level build phases with elapsed time (None if absent)."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None

    class Progress(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.t0 = time.perf_counter()

        def phase_start(self, phase_name, parent_phase, num_steps):
            if parent_phase is None:
                say(f"  TensorRT [{time.perf_counter() - self.t0:6.1f} s] {phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name, step):
            return True  # never cancel

        def phase_finish(self, phase_name):
            pass

    return Progress()


def build_engine(onnx_path: str | Path, out_path: str | Path, precision: str, profile: ShapeProfile,
                 workspace_gib: float = 4.0, opt_level: int = 3, timing_cache: str | Path | None = None,
                 echo: Callable[[str], None] | None = None) -> float:
    """Build a serialized engine from ``onnx_path`` into ``out_path``; returns the build seconds.

    Always strongly typed (TensorRT 10 and 11 alike): the ONNX file decides each layer's precision.
    """
    import tensorrt as trt

    say = echo or stderr_echo
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
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
    monitor = _progress_monitor(trt, say)
    if monitor is not None:
        config.progress_monitor = monitor
    tc_path = Path(timing_cache) if timing_cache else None
    tc = config.create_timing_cache(tc_path.read_bytes() if tc_path and tc_path.is_file() else b"")
    config.set_timing_cache(tc, ignore_mismatch=False)
    prof = builder.create_optimization_profile()
    try:
        prof.set_shape(INPUT_NAME, profile.min, profile.opt, profile.max)
    except ValueError as e:
        raise EngineBuildError(f"TensorRT rejected profile {profile.label()}: {first_line(e)}") from None
    config.add_optimization_profile(prof)
    say(f"TensorRT {trt.__version__}: building {precision} engine for {profile.name or profile.label()} "
        f"({profile.describe()}; strongly typed, workspace {workspace_gib:g} GiB, opt level {opt_level}); "
        "this takes a few minutes once, later runs load it from the cache")
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


def engine_fields(model: nn.Module, descriptor: ModelDescriptor, precision: str, device: torch.device,
                  config: TRTBackend | None = None, calibration: str | Path | None = None,
                  cache: EngineCache | None = None) -> dict:
    """The engine cache key fields for everything but the profile (model, precision, TensorRT, GPU).

    int8 without ``calibration``: keyed by the int8 ONNX already in ``cache`` (what ``engine build --calibration``
    made), as ``cached_onnx`` picks it."""
    import tensorrt as trt

    config = config or TRTBackend()
    src = onnx_precision(precision)
    with _device_scope(device):
        gpu = gpu_fields(device)
    return {**onnx_fields(model, descriptor, src, calibration=calibration, cache=cache), "precision": precision,
            "onnx_precision": src, "tensorrt": trt.__version__, **gpu, "strongly_typed": True,
            "workspace_gib": config.workspace_gib, "opt_level": config.opt_level}


# key fields that change how an engine was built, not what it computes or which inputs it takes: a run
# with other defaults still uses an engine `engine build --workspace 8 --opt-level 5` made
BUILD_ONLY = ("profile", "workspace_gib", "opt_level")


def _same(a: dict, b: dict) -> bool:
    def norm(d: dict) -> str:  # cache fields went through JSON
        return json.dumps({k: v for k, v in d.items() if k not in BUILD_ONLY}, sort_keys=True, default=str)

    return norm(a) == norm(b)


def find_engine(cache: EngineCache, fields: dict, shapes: Sequence[Shape],
                accept: Callable[[ShapeProfile], bool] = lambda p: True) -> tuple[Path, ShapeProfile] | None:
    """A cached engine with these key fields whose profile takes every shape: the tightest one
    (static before dynamic, then the smallest maximum), so a prebuilt ``engine build`` engine is used."""
    found = []
    for e in cache.find("trt", lambda f: "profile" in f and _same(f, fields)):
        prof = ShapeProfile.parse(e.meta["fields"]["profile"], e.meta.get("profile_name", ""))
        if prof.contains_all(shapes) and accept(prof):
            found.append((not prof.is_static, prof.volume, e.path.name, e.path, prof))
    if not found:
        return None
    _, _, _, path, prof = min(found)
    return path, prof


def cached_engine(model: nn.Module, descriptor: ModelDescriptor, precision: str, profile: ShapeProfile,
                  device: torch.device, config: TRTBackend | None = None, cache: EngineCache | None = None,
                  calibration: str | Path | None = None, echo: Callable[[str], None] | None = None) -> Path:
    """The engine for these inputs from the engine cache, built (once, across processes) when needed."""
    import tensorrt as trt

    config = config or TRTBackend()
    cache = cache or EngineCache()
    say = echo or stderr_echo
    fields = {**engine_fields(model, descriptor, precision, device, config, calibration, cache),
              "profile": profile.label()}
    path = cache.path_for(fields, "trt", ".engine")
    if cache.check(path).problem is None:  # hashed: a changed engine of the same size is rebuilt, not loaded
        return path
    onnx_path = cached_onnx(model, descriptor, fields["onnx_precision"], cache, calibration=calibration, echo=say)
    tc = cache.dir / "timing" / f"tensorrt-{trt.__version__}-{fields['gpu'].replace(' ', '_')}.cache"
    tc.parent.mkdir(parents=True, exist_ok=True)

    def build(tmp: Path) -> None:
        with _device_scope(device):
            build_engine(onnx_path, tmp, precision, profile, config.workspace_gib, config.opt_level, tc, say)

    return cache.get_or_build(fields, "trt", ".engine", build, echo=say,
                              describe=f"TensorRT engine {descriptor.variant} x{descriptor.scale} {precision} "
                                       f"{profile.name or profile.label()}")


def plan_profile(shapes: Sequence[Shape], pinned: ShapeProfile | None = None,
                 static_shape: bool = False) -> ShapeProfile:
    """The profile to build when no loaded or cached engine takes ``shapes``.

    A pinned profile must take them all (else ValueError, said before the run rather than per batch);
    otherwise the ``dynamic`` profile widened to the batch size, or to the shapes when they exceed it.
    """
    shapes = [tuple(int(v) for v in s) for s in shapes]  # type: ignore[misc]
    if pinned is not None:
        bad = [s for s in shapes if not pinned.contains(s)]
        if bad:
            n, _, h, w = bad[0]
            raise SettingError(f"TensorRT profile {pinned.name} ({pinned.describe()}) can't take {n} frame(s) "
                             f"of {w}x{h}; pick another profile, lower --batch, or use --tile")
        return pinned
    if static_shape:
        if len({tuple(s) for s in shapes}) != 1:
            raise SettingError("a static profile takes one shape")
        return ShapeProfile.static(shapes[0][0], shapes[0][2], shapes[0][3])
    base = ShapeProfile.named("dynamic", dynamic=True, batch=max(s[0] for s in shapes))
    return base if base.contains_all(shapes) else ShapeProfile.covering(shapes, base)


@dataclass
class _Loaded:
    """One deserialised engine, its execution contexts (one per CUDA stream) and its last launch."""

    profile: ShapeProfile
    path: Path
    engine: Any
    in_dtype: torch.dtype
    out_dtype: torch.dtype
    contexts: dict[int, Any] = field(default_factory=dict)
    last_event: Any = None
    runtime: Any = None  # the TensorRT runtime must outlive its engine

    def release(self) -> None:
        """Drop the engine only after its last launch has finished (a context may still be executing)."""
        if self.last_event is not None:
            self.last_event.synchronize()
        self.contexts.clear()
        self.engine = None


class TRTRunner:
    name = "tensorrt"

    def __init__(self, config: TRTBackend, model: nn.Module, descriptor: ModelDescriptor, precision: str,
                 device: torch.device, cache: EngineCache | None = None, profile: ShapeProfile | None = None,
                 calibration: str | Path | None = None, echo: Callable[[str], None] | None = None) -> None:
        if device.type != "cuda":
            raise SettingError(f"the tensorrt backend needs a CUDA device, not {device}; "
                             f"use --backend {backend_hint(model)}")
        ok, why = trt_available()
        if not ok:
            raise SettingError(f"the tensorrt backend can't run here: {why}; use --backend {backend_hint(model)}")
        if precision not in ("fp32", "fp16", "int8"):
            raise SettingError(f"the tensorrt backend runs fp32, fp16 or int8, not {precision}")
        if descriptor.fixed_size:
            config = replace(config, static_shape=True)  # a fixed graph has exactly one shape profile
        self.config, self.descriptor, self.precision, self.device = config, descriptor, precision, device
        self.model, self.cache, self.calibration = model, cache or EngineCache(), calibration
        self.echo = echo or stderr_echo
        self.pinned = profile or (ShapeProfile.named(config.profile, dynamic=True) if config.profile else None)
        self._fields: dict | None = None
        self._loaded: collections.OrderedDict[str, _Loaded] = collections.OrderedDict()
        self._inflight: collections.deque = collections.deque()
        self._own_stream: torch.cuda.Stream | None = None
        # strongly typed: the ONNX decides (an fp16 file takes and gives half unless the model keeps a float32
        # base path; fp32 and int8 QDQ files take and give float); a loaded engine's own types replace this
        self.dtype = (torch.float16 if precision == "fp16" and not descriptor.float_base else torch.float32)
        self.engine = self.profile = self.engine_path = None
        if profile is not None:
            self.prepare([profile.opt])

    def __repr__(self) -> str:
        return f"TRTRunner({self.descriptor.variant} x{self.descriptor.scale} {self.precision}, {self.profile})"

    # choosing / building engines -------------------------------------------------------------------------
    def fields(self) -> dict:
        if self._fields is None:
            self._fields = engine_fields(self.model, self.descriptor, self.precision, self.device, self.config,
                                         self.calibration, self.cache)
        return self._fields

    def _accept(self, prof: ShapeProfile) -> bool:
        """With a pinned profile only engines inside its range are used (its static or dynamic build)."""
        return self.pinned is None or (self.pinned.contains(prof.min) and self.pinned.contains(prof.max))

    def plan(self, shapes: Sequence[Shape]) -> ShapeProfile:
        return plan_profile(shapes, self.pinned, self.config.static_shape)

    def prepare(self, shapes: Sequence[Shape]) -> None:
        """Have an engine loaded for every shape in ``shapes`` (build it now, with progress, if needed)."""
        shapes = [tuple(int(v) for v in s) for s in shapes]
        groups = [[s] for s in shapes] if self.config.static_shape and self.pinned is None else [shapes]
        for group in groups:
            if any(ld.profile.contains_all(group) for ld in self._loaded.values()):
                continue
            hit = find_engine(self.cache, self.fields(), group, self._accept)
            if hit is not None:
                path, prof = hit
                log.info("TensorRT: using cached engine %s (profile %s)", path.name, prof.label())
            else:
                prof = self.plan(group)
                path = cached_engine(self.model, self.descriptor, self.precision, prof, self.device, self.config,
                                     self.cache, self.calibration, self.echo)
            self._load(path, prof)

    def _load(self, path: Path, profile: ShapeProfile) -> _Loaded:
        import tensorrt as trt

        with _device_scope(self.device):
            runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            data = path.read_bytes()
            # the bytes read are the bytes checked: a changed engine of the same size is never deserialised
            meta = self.cache.check(path, full_hash=False)
            problem = meta.problem or (None if hashlib.sha256(data).hexdigest() == meta.meta.get("sha256")
                                       else "content hash mismatch")
            engine = None if problem else runtime.deserialize_cuda_engine(data)
            if engine is None:
                self.cache.invalidate(path, problem or "TensorRT could not deserialize it (a TensorRT or driver "
                                      "change?)")
                path = cached_engine(self.model, self.descriptor, self.precision, profile, self.device, self.config,
                                     self.cache, self.calibration, self.echo)
                engine = runtime.deserialize_cuda_engine(path.read_bytes())
                if engine is None:
                    raise EngineBuildError(f"a freshly built engine {path} does not deserialize")
        dt = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
        ld = _Loaded(profile, path, engine, dt[engine.get_tensor_dtype(INPUT_NAME)],
                     dt[engine.get_tensor_dtype(OUTPUT_NAME)])
        ld.runtime = runtime
        self._loaded[profile.label()] = ld
        while len(self._loaded) > LOADED_ENGINES:
            _, old = self._loaded.popitem(last=False)
            old.release()
        self.engine, self.profile, self.engine_path, self.dtype = engine, profile, path, ld.in_dtype
        return ld

    def _engine_for(self, shape: Shape) -> _Loaded:
        for key, ld in self._loaded.items():
            if ld.profile.contains(shape):
                self._loaded.move_to_end(key)
                return ld
        self.prepare([shape])
        return self._engine_for(shape)

    # running -----------------------------------------------------------------------------------------------
    def _context(self, ld: _Loaded, stream: torch.cuda.Stream):
        """One execution context per CUDA stream (contexts are not safe to share across streams)."""
        ctx = ld.contexts.get(stream.cuda_stream)
        if ctx is None:
            with _device_scope(self.device):
                ctx = ld.engine.create_execution_context()
            if ctx is None:
                raise RuntimeError("TensorRT could not create an execution context (out of GPU memory?)")
            ld.contexts[stream.cuda_stream] = ctx
        return ctx

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = tuple(x.shape)
        ld = self._engine_for(shape)  # type: ignore[arg-type]
        with _device_scope(self.device):
            x = x.to(device=self.device, dtype=ld.in_dtype).contiguous()
            if x.data_ptr() % ALIGN:  # a tile view can start anywhere: TensorRT wants 256-byte alignment
                x = x.clone()
            caller = torch.cuda.current_stream(self.device)
            stream = caller
            if caller.cuda_stream == 0:  # legacy default stream: TensorRT would add device-wide syncs
                if self._own_stream is None:
                    self._own_stream = torch.cuda.Stream(self.device)
                stream = self._own_stream
                stream.wait_stream(caller)
            ctx = self._context(ld, stream)
            if not ctx.set_input_shape(INPUT_NAME, shape):
                raise SettingError(f"TensorRT refused input {shape} (engine profile {ld.profile.label()})")
            y = torch.empty(tuple(ctx.get_tensor_shape(OUTPUT_NAME)), dtype=ld.out_dtype, device=self.device)
            ctx.set_tensor_address(INPUT_NAME, x.data_ptr())
            ctx.set_tensor_address(OUTPUT_NAME, y.data_ptr())
            if not ctx.execute_async_v3(stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            ev = torch.cuda.Event(blocking=True)  # waits sleep instead of spinning a CPU core
            ev.record(stream)
            ld.last_event = ev
            if stream is not caller:
                caller.wait_event(ev)
        self._inflight.append((ev, x, y))  # keep the buffers alive until the GPU is done with them
        while self._inflight and self._inflight[0][0].query():
            self._inflight.popleft()
        return y

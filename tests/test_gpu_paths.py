"""GPU paths on the CPU: stand-ins that copy the installed APIs' signatures and failure modes exactly.

- ``Plane``: PyAV 19.0.2 ``VideoPlane`` of a CUDA hw frame (``__dlpack__(self, *, stream=None)`` raises
  NotImplementedError for any stream but None; NV12/P010 chroma exported as (H/2, W/2, 2)).
- ``TrtProfile``: TensorRT 11.4 ``IOptimizationProfile.set_shape`` (ValueError unless 0 <= min <= opt <=
  max and fixed dimensions equal; the network input is (-1, 3, -1, -1)).
- ``NoopOps``: streams and events that do nothing but record the order of waits, so the device stage's
  streamed path runs on the CPU and is compared with the CPU branch.
The GPU tests at the end run the real thing when a device is lent and skip here with the reason.
"""

from __future__ import annotations

import re
import sys
import types
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import gpu_backend_unready

from psr2video import Upscaler
from psr2video.models import build_model
from psr2video.runtime import auto, trt_backend
from psr2video.runtime.backends import ORTBackend, TorchBackend, TRTBackend
from psr2video.runtime.engine_cache import EngineCache
from psr2video.runtime.trt_backend import ShapeProfile, find_engine, plan_profile
from psr2video.video import color as C
from psr2video.video.pipeline import DeviceStage, Options, run
from psr2video.video.reader import VideoItem, frame_planes, hwaccel_args, stream_info

K_DLCPU, K_DLCUDA = 1, 2
HAS_CUDA = torch.cuda.is_available()


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PSR2VIDEO_CACHE", str(tmp_path / "cache"))


# ------------------------------------------------------------------------------------------- NVDEC frames
class Plane:
    """PyAV 19 ``VideoPlane`` of a CUDA frame: same signatures, same refusal of a consumer stream."""

    def __init__(self, data: torch.Tensor) -> None:
        self.data = data

    def __dlpack_device__(self) -> tuple[int, int]:
        return (K_DLCUDA, 0)

    def __dlpack__(self, *, stream: int | None = None):
        if stream is not None:
            raise NotImplementedError("CUDA stream synchronization is not supported. "
                                      "Pass stream=None and synchronize before calling __dlpack__.")
        return torch.utils.dlpack.to_dlpack(self.data)


def nvdec_frame(y: np.ndarray, u: np.ndarray, v: np.ndarray, sw: str):
    """A decoded CUDA frame as PyAV presents it: format 'cuda', sw_format, planes Y (H, W), UV (H/2, W/2, 2)."""
    uv = np.stack([u, v], axis=-1)
    return types.SimpleNamespace(format=types.SimpleNamespace(name="cuda"), sw_format=types.SimpleNamespace(name=sw),
                                 width=y.shape[1], height=y.shape[0], colorspace=2, color_range=0,
                                 color_primaries=2, color_trc=2,
                                 planes=(Plane(torch.from_numpy(y)), Plane(torch.from_numpy(uv))))


@pytest.fixture
def torch_sees_cuda_producer(monkeypatch):
    """What torch.from_dlpack does with a CUDA producer: it asks for the current stream and passes it on."""
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: types.SimpleNamespace(cuda_stream=0))


def test_stand_in_plane_refuses_consumer_stream_like_pyav(torch_sees_cuda_producer):
    plane = Plane(torch.zeros(4, 6, dtype=torch.uint8))
    with pytest.raises(NotImplementedError, match="stream synchronization"):
        torch.from_dlpack(plane)  # torch passes stream=1 (legacy default stream) for CUDA producers


@pytest.mark.parametrize("sw,bits,shift", [("nv12", 8, 0), ("p010le", 10, 6)])
def test_nvdec_planes_capsule_and_chroma_split(torch_sees_cuda_producer, sw, bits, shift):
    h, w = 6, 8
    rng = np.random.default_rng(0)
    dt = np.uint8 if bits == 8 else np.uint16
    y, u, v = (rng.integers(0, 1 << bits, size=s).astype(dt) for s in [(h, w), (h // 2, w // 2), (h // 2, w // 2)])
    frame = nvdec_frame(y << shift, u << shift, v << shift, sw)
    planes, got_bits, sw_shift, sh_shift, ready = frame_planes(frame)
    assert (got_bits, sw_shift, sh_shift) == (bits, 1, 1) and ready is None  # CPU data: no event
    assert [tuple(p.shape) for p in planes] == [(h, w), (h // 2, w // 2), (h // 2, w // 2)]
    for got, want in zip(planes, (y, u, v), strict=True):
        assert np.array_equal(got.numpy().astype(np.int64), want.astype(np.int64))


def test_hwaccel_follows_the_model_device():
    from av.codec.hwaccel import HWAccel

    on1 = HWAccel(**hwaccel_args("cuda", 1))
    assert on1.device_id == 1 and on1.is_hw_owned
    assert HWAccel(**hwaccel_args("cuda:2", 0)).device_id == 2
    cpu_model = hwaccel_args("cuda", None)  # a CPU model: NVDEC frames are downloaded, not kept on GPU 0
    assert not cpu_model["is_hw_owned"] and cpu_model["device"] is None


class _Proxy:
    def __init__(self, real, **over) -> None:
        self._real, self._over = real, over

    def __getattr__(self, name):
        return self._over[name] if name in self._over else getattr(self._real, name)


def _clip(path: Path, pix_fmt: str, codec: str = "ffv1", n: int = 2) -> Path:
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, pix_fmt
        for i in range(n):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")
            out.mux(s.encode(f.reformat(format=pix_fmt)))
        out.mux(s.encode(None))
    return path


@pytest.mark.parametrize("pix_fmt,bits,chroma", [("yuv420p10le", 10, (1, 1)), ("yuv444p", 8, (0, 0))])
def test_stream_info_reads_sw_format_under_hwaccel(tmp_path, pix_fmt, bits, chroma):
    path = _clip(tmp_path / "in.mkv", pix_fmt)
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        # a real codec context as PyAV 19 shows it under hwaccel before the first frame
        ctx = _Proxy(v.codec_context, pix_fmt="cuda", is_hwaccel=True, sw_format=None)
        hw = _Proxy(c, streams=types.SimpleNamespace(video=[_Proxy(v, codec_context=ctx)]))
        info = stream_info(hw)
    assert info.pix_fmt == pix_fmt and info.bits == bits
    assert C.PLANAR[info.pix_fmt][:2] == chroma


# ------------------------------------------------------------------------------------------- TensorRT
class TrtProfile:
    """TensorRT 11.4 ``IOptimizationProfile``: set_shape validates like the real one (its docstring's rules)."""

    network_input = (-1, 3, -1, -1)

    def set_shape(self, input: str, min, opt, max) -> None:
        lo, mid, hi = (tuple(min), tuple(opt), tuple(max))
        if not len(lo) == len(mid) == len(hi) == len(self.network_input):
            raise ValueError("Inconsistent dimensions")
        for i, real in enumerate(self.network_input):
            if not 0 <= lo[i] <= mid[i] <= hi[i]:
                raise ValueError(f"min <= opt <= max violated at dimension {i}")
            if real != -1 and not lo[i] == mid[i] == hi[i] == real:
                raise ValueError(f"dimension {i} is fixed to {real}")
        self.shapes = (input, lo, mid, hi)


def test_every_profile_is_valid_for_tensorrt():
    for name in trt_backend.load_profiles():
        for dynamic in (False, True):
            for batch in (1, 4):
                p = ShapeProfile.named(name, dynamic=dynamic, batch=batch)
                TrtProfile().set_shape("input", p.min, p.opt, p.max)
    for w, h in [(8, 8), (640, 360)]:  # custom --shape smaller than the old fixed 16x16 minimum
        p = ShapeProfile.from_shape(w, h, dynamic=True)
        TrtProfile().set_shape("input", p.min, p.opt, p.max)
    with pytest.raises(ValueError, match="min <= opt <= max"):
        ShapeProfile((1, 3, 64, 64), (1, 3, 32, 32), (1, 3, 128, 128))


def test_profiles_take_batches():
    assert ShapeProfile.named("dynamic", dynamic=True).contains((4, 3, 720, 1280))
    prof = plan_profile([(1, 3, 720, 1280), (8, 3, 720, 1280)])
    assert prof.contains((8, 3, 720, 1280)) and prof.contains((1, 3, 720, 1280))
    TrtProfile().set_shape("input", prof.min, prof.opt, prof.max)
    big = plan_profile([(1, 3, 2160, 3840)])
    assert big.contains((1, 3, 2160, 3840)) and big.contains((1, 3, 720, 1280))
    with pytest.raises(ValueError, match=r"can't take 8 frame\(s\) of 1280x720"):
        plan_profile([(8, 3, 720, 1280)], pinned=ShapeProfile.named("720p", dynamic=True))


class _Err:
    def __init__(self, i):
        self.i = i

    def node(self):
        return self.i

    def node_name(self):
        return f"/body/Conv_{self.i}"

    def desc(self):
        return f"unsupported thing {self.i}"


def fake_tensorrt(version: str = "11.4.0.106", parse_ok: bool = True, build_ok: bool = True):
    """A ``tensorrt`` module with the 10.x/11.x names our build uses; records calls, validates profiles."""
    calls: dict = {"flags": [], "builds": 0, "phases": []}
    m = types.ModuleType("tensorrt")
    m.__version__ = version
    m.Logger = type("Logger", (), {"WARNING": 2, "ERROR": 1, "__init__": lambda self, level=0: None})
    m.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=5)
    m.BuilderFlag = types.SimpleNamespace(**({"FP16": "FP16", "INT8": "INT8"} if version.startswith("10") else {}))
    m.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")

    class IProgressMonitor:
        def __init__(self):
            pass

    class Parser:
        num_errors = 0 if parse_ok else 2

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            return parse_ok

        def get_error(self, i):
            return _Err(i)

    class Config:
        builder_optimization_level = 0
        progress_monitor = None

        def set_memory_pool_limit(self, pool, size):
            calls["workspace"] = size

        def set_flag(self, f):
            calls["flags"].append(f)

        def create_timing_cache(self, data):
            return b"tc"

        def set_timing_cache(self, tc, ignore_mismatch):
            pass

        def add_optimization_profile(self, p):
            calls["profile"] = p.shapes

        def get_timing_cache(self):
            return types.SimpleNamespace(serialize=lambda: b"timing")

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls["network_flags"] = flags
            return object()

        def create_builder_config(self):
            calls["config"] = Config()
            return calls["config"]

        def create_optimization_profile(self):
            return TrtProfile()

        def build_serialized_network(self, network, config):
            calls["builds"] += 1
            mon = config.progress_monitor
            if mon is not None:
                mon.phase_start("Building engine", None, 3)
                mon.step_complete("Building engine", 0)
                mon.phase_finish("Building engine")
            return b"ENGINE" if build_ok else None

    m.Builder, m.OnnxParser, m.IProgressMonitor = Builder, Parser, IProgressMonitor
    return m, calls


@pytest.mark.parametrize("version", ["10.9.0", "11.4.0.106"])
def test_both_majors_build_strongly_typed_with_progress_on_stderr(tmp_path, monkeypatch, capsys, version):
    from psr2video.runtime.trt_backend import build_engine, onnx_precision

    fake, calls = fake_tensorrt(version)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    prof = ShapeProfile.named("720p", dynamic=True, batch=2)
    build_engine("m.onnx", tmp_path / "e.engine", "fp16", prof, 2.0, 4, tmp_path / "tc.cache")
    assert calls["network_flags"] == 1 << 5 and calls["flags"] == []  # the fp16 ONNX decides, on 10 and 11
    assert onnx_precision("fp16") == "fp16" and onnx_precision("int8") == "int8"
    assert calls["profile"] == ("input", prof.min, prof.opt, prof.max)
    err = capsys.readouterr().err
    assert "building fp16 engine" in err and "Building engine (3 steps)" in err and "build took" in err


def test_build_errors_are_reported(tmp_path, monkeypatch):
    from psr2video.runtime.trt_backend import EngineBuildError, build_engine

    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(parse_ok=False)[0])
    with pytest.raises(EngineBuildError, match=r"(?s)2 errors.*Conv_0.*unsupported thing 1"):
        build_engine("m.onnx", tmp_path / "f.engine", "fp32", ShapeProfile.static(1, 64, 64), echo=print)
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(build_ok=False)[0])
    with pytest.raises(EngineBuildError, match="failed to build"):
        build_engine("m.onnx", tmp_path / "g.engine", "fp32", ShapeProfile.static(1, 64, 64), echo=print)


def test_prebuilt_engines_are_found_by_their_cache_keys(tmp_path, monkeypatch):
    """What `engine build --profile 720p` makes is what the next run on a 1280x720 input loads."""
    fake, calls = fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(trt_backend, "gpu_fields", lambda device: {"gpu": "Stand-in GPU", "cc": "9.0"})
    torch.manual_seed(0)
    net = build_model("realtime", 2).fuse_for_release()
    cache, dev, say = EngineCache(tmp_path / "engines"), torch.device("cpu"), lambda m: None
    static = trt_backend.cached_engine(net, net.descriptor, "fp16", ShapeProfile.named("720p"), dev, cache=cache,
                                       echo=say)
    dynamic = trt_backend.cached_engine(net, net.descriptor, "fp16", ShapeProfile.named("720p", dynamic=True),
                                        dev, cache=cache, echo=say)
    assert calls["builds"] == 2
    fields = trt_backend.engine_fields(net, net.descriptor, "fp16", dev)
    assert find_engine(cache, fields, [(1, 3, 720, 1280)])[0] == static  # the tightest (static) engine
    assert find_engine(cache, fields, [(1, 3, 720, 1280), (4, 3, 720, 1280)])[0] == dynamic
    assert find_engine(cache, fields, [(1, 3, 1080, 1920)]) is None  # larger than both: build another
    assert find_engine(cache, {**fields, "precision": "fp32"}, [(1, 3, 720, 1280)]) is None
    trt_backend.cached_engine(net, net.descriptor, "fp16", ShapeProfile.named("720p"), dev, cache=cache, echo=say)
    assert calls["builds"] == 2  # asked again: loaded from the cache, not rebuilt


def test_tensorrt_refusal_says_why(monkeypatch):
    monkeypatch.setattr(trt_backend, "trt_available", lambda: (True, "TensorRT 11.4.0"))
    with pytest.raises(ValueError, match="needs a CUDA device, not cpu") as e:
        Upscaler("realtime", 2, model=build_model("realtime", 2), backend="tensorrt", device="cpu")
    assert "11.4" not in str(e.value)


# ------------------------------------------------------------------------------------------- auto, ORT
def test_auto_probes_tensorrt_for_real(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "tensorrt"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise OSError('libnvinfer.so.11: cannot open shared object file')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cfg, reason = auto.choose(torch.device("cuda"))
    assert isinstance(cfg, TorchBackend) and "libnvinfer.so.11" in reason
    assert not hasattr(auto, "LAST_CHOICE")


def test_upscaler_keeps_backend_choice_and_reason():
    up = Upscaler("realtime", 2, model=build_model("realtime", 2), backend="auto", device="cpu")
    assert isinstance(up.backend, ORTBackend) and "faster" in up.backend_reason
    up = Upscaler("mks", 2, backend="torch", device="cpu")
    assert isinstance(up.backend, TorchBackend) and up.backend_reason == "asked for"


def test_ort_tensorrt_provider_only_with_matching_tensorrt(monkeypatch):
    from psr2video.runtime import ort_backend as ob

    monkeypatch.setattr(ob, "available_providers", lambda: list(ob.PROVIDERS.values()))
    monkeypatch.setattr(ob, "tensorrt_ep_major", lambda: 10)
    monkeypatch.setattr(ob, "installed_tensorrt_major", lambda: 11)
    assert ob.choose_providers("auto", torch.device("cuda")) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(ValueError, match=r"needs TensorRT 10.x but 11.x is installed"):
        ob.choose_providers("tensorrt", torch.device("cuda"))
    monkeypatch.setattr(ob, "installed_tensorrt_major", lambda: 10)
    assert ob.choose_providers("auto", torch.device("cuda"))[0] == "TensorrtExecutionProvider"


def test_ort_silent_cpu_fallback_is_one_clear_line():
    from psr2video.runtime.ort_backend import ORTRunner

    stub = types.SimpleNamespace(session=types.SimpleNamespace(get_providers=lambda: ["CPUExecutionProvider"]),
                                 device=torch.device("cuda"), provider="CUDAExecutionProvider",
                                 providers=["CUDAExecutionProvider", "CPUExecutionProvider"], config=ORTBackend())
    with pytest.raises(ValueError, match="fell back to the CPU: CUDAExecutionProvider did not start"):
        ORTRunner._check_providers(stub)
    stub.session = types.SimpleNamespace(get_providers=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    stub.provider, stub.providers = "TensorrtExecutionProvider", ["TensorrtExecutionProvider"] + stub.providers
    ORTRunner._check_providers(stub)  # TensorRT EP missing, CUDA EP up: run on CUDA with a warning
    assert stub.provider == "CUDAExecutionProvider"
    stub.provider, stub.config = "TensorrtExecutionProvider", ORTBackend(provider="tensorrt")
    with pytest.raises(ValueError, match="TensorrtExecutionProvider did not start.*--backend onnxruntime"):
        ORTRunner._check_providers(stub)  # pinned (--backend onnxruntime-tensorrt): no fallback


def test_nonfinite_outputs_are_replaced_and_counted():
    class Broken(torch.nn.Module):
        def forward(self, x):
            y = torch.nn.functional.interpolate(x, scale_factor=2)
            y[:, :, 0, 0] = float("nan")
            y[:, :, 0, 1] = float("inf")
            return y

    up = Upscaler("mks", 2, model=Broken(), backend="torch", device="cpu")
    y = up(torch.rand(1, 3, 4, 4))
    assert torch.isfinite(y).all() and y[0, 0, 0, 0] == 0 and y[0, 0, 0, 1] == 1 and up.nonfinite == 6


# ------------------------------------------------------------------------------------------- device stage
class NoopStream:
    def __init__(self, ops: NoopOps, name: str) -> None:
        self.ops, self.name = ops, name

    def wait_event(self, ev) -> None:
        self.ops.log.append(("wait", self.name, ev.recorded_on))

    def wait_stream(self, other) -> None:
        self.ops.log.append(("wait_stream", self.name, other.name))


class NoopEvent:
    def __init__(self, ops: NoopOps) -> None:
        self.ops, self.recorded_on = ops, None

    def record(self, stream=None) -> None:
        self.recorded_on = (stream or self.ops.current()).name

    def synchronize(self) -> None:
        pass

    def query(self) -> bool:
        return True


class NoopOps:
    """Stand-in for pipeline.CudaOps: the same calls, no device; records which stream waits for what."""

    def __init__(self) -> None:
        self.log: list[tuple] = []
        self.names = iter(["upload", "compute", "download"])
        self.stack = [NoopStream(self, "default")]

    def stream(self):
        return NoopStream(self, next(self.names))

    def event(self):
        return NoopEvent(self)

    def use(self, stream):
        import contextlib

        @contextlib.contextmanager
        def cm():
            self.stack.append(stream)
            try:
                yield
            finally:
                self.stack.pop()

        return cm()

    def scope(self):
        import contextlib

        return contextlib.nullcontext()

    def current(self):
        return self.stack[-1]

    def pinned(self, shape, dtype):
        return torch.empty(shape, dtype=dtype)

    def record_stream(self, t, stream) -> None:
        self.log.append(("record_stream", stream.name))


class StreamCheckingUpscaler:
    """A real Upscaler that notes which stream is current when the model runs."""

    def __init__(self, up: Upscaler, ops: NoopOps | None) -> None:
        self.up, self.ops, self.ran_on = up, ops, []
        self.device, self.dtype, self.clamp, self.scale = up.device, up.dtype, up.clamp, up.scale

    def __call__(self, x):
        self.ran_on.append(self.ops.current().name if self.ops else "cpu")
        return self.up(x)


@pytest.mark.parametrize("pix_fmt, resize, crop", [("yuv420p", False, None), ("yuv420p10le", False, None),
                                                   ("yuv420p", True, None), ("yuv420p10le", False, (2, 4, 0, 2))])
def test_device_stage_streamed_path_matches_cpu_branch(pix_fmt, resize, crop, monkeypatch):
    from psr2video.video import pipeline

    resampled_on = []
    real = pipeline.resample

    def noting(x, height, width):  # --size's resample: on the compute stream, with the model
        resampled_on.append(ops.current().name)
        return real(x, height, width)

    monkeypatch.setattr(pipeline, "resample", noting)
    sw, sh, bits = C.PLANAR[pix_fmt]
    h, w, n = 12, 16, 3
    rng = np.random.default_rng(1)
    dt = np.uint8 if bits == 8 else np.uint16
    lo, hi = 16 << (bits - 8), 235 << (bits - 8)

    def item(i):
        planes = (rng.integers(lo, hi, (h, w)).astype(dt), rng.integers(lo, hi, (h // 2, w // 2)).astype(dt),
                  rng.integers(lo, hi, (h // 2, w // 2)).astype(dt))
        return VideoItem(i, 40 * i, Fraction(1, 1000), planes, bits, sw, sh, None)

    batches = [[item(3 * k + i) for i in range(n)] for k in range(3)]
    up = Upscaler("mks", 2, backend="torch", device="cpu")
    ops = NoopOps()
    streamed = StreamCheckingUpscaler(up, ops)
    from psr2video.video.crop import Crop

    cut = Crop(*crop) if crop else None  # --crop: the planes cut on the device, as views
    cw, ch = cut.size(w, h) if cut else (w, h)
    size = (cw * 3 // 2, ch * 3 // 2) if resize else (2 * cw, 2 * ch)  # --size: resampled on the compute stream
    a = DeviceStage(StreamCheckingUpscaler(up, None), C.ColorInfo(), size, pix_fmt, resize=resize, crop=cut)
    b = DeviceStage(streamed, C.ColorInfo(), size, pix_fmt, ops=ops, resize=resize, crop=cut)
    assert not a.cuda and b.cuda
    for batch in batches:
        ea, eb = a.process(batch), b.process(batch)
        for x, y in zip(ea, eb, strict=True):
            assert x.index == y.index and y.ready is not None and y.ready.recorded_on == "download"
            assert tuple(x.planes[0].shape) == (size[1], size[0])
            for p, q in zip(x.planes, y.planes, strict=True):
                assert p.dtype == q.dtype and torch.equal(p, q)
    assert streamed.ran_on == ["compute"] * 3  # the model runs on the dedicated compute stream
    assert resampled_on == (["default", "compute"] * 3 if resize else [])  # the CPU branch has no streams
    waits = [e for e in ops.log if e[0] == "wait"]
    assert ("wait", "compute", "upload") in waits and ("wait", "download", "compute") in waits


# ------------------------------------------------------------------------------------------- pipeline
def _yuv(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [np.concatenate([np.frombuffer(p, np.uint8).reshape(p.height, -1)[:, :p.width].ravel()
                                for p in f.planes]) for f in c.decode(video=0)]


def test_pipeline_with_model_backends(tmp_path):
    """The whole pipeline with a network on each CPU backend (not only the mks resampler): same frames."""
    src = _clip(tmp_path / "in.mkv", "yuv420p", n=4)
    torch.manual_seed(0)
    net = build_model("realtime", 2)
    outs = {}
    for backend in ("torch", "onnxruntime"):
        up = Upscaler("realtime", 2, model=net, backend=backend, device="cpu")
        assert up.runner.name == backend
        outs[backend] = tmp_path / f"out_{backend}.mkv"
        res = run(Options(input=str(src), output=str(outs[backend]), codec="ffv1"), up, warn=lambda m: None)
        assert res.frames == 4 and res.out_size == (128, 96) and res.nonfinite == 0
    a, b = _yuv(outs["torch"]), _yuv(outs["onnxruntime"])
    mks = Path(tmp_path / "mks.mkv")
    run(Options(input=str(src), output=str(mks), codec="ffv1"), Upscaler("mks", 2, device="cpu"), warn=print)
    assert len(a) == len(b) == 4
    for x, y, m in zip(a, b, _yuv(mks), strict=True):
        assert np.abs(x.astype(int) - y.astype(int)).max() <= 1  # the backends agree to a code
        assert np.abs(x.astype(int) - m.astype(int)).max() > 1  # and the network did something


# ------------------------------------------------------------------------------------------- on a device
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA (no GPU on this machine)")


@pytest.mark.gpu
@needs_cuda
def test_nvdec_ten_bit_to_device(tmp_path, nvdec):
    """Real NVDEC: 10-bit HEVC decodes to P010 on the GPU, handed over by DLPack, 10-bit out."""
    if "hevc" not in av.codecs_available or "libx265" not in av.codecs_available:
        pytest.skip("no HEVC encoder/decoder in this PyAV build")
    src = _clip(tmp_path / "in.mkv", "yuv420p10le", codec="libx265", n=3)
    from psr2video.video.reader import open_input

    with open_input(str(src), hwaccel="cuda", gpu=0) as c:
        info = stream_info(c)
        frames = [frame_planes(f) for f in c.decode(video=0)]
    assert info.bits == 10 and frames
    planes, bits, *_, ready = frames[0]
    assert bits == 10 and planes[0].is_cuda and tuple(planes[1].shape) == (24, 32)
    ready.synchronize()
    assert int(planes[0].max()) < 1024


@pytest.mark.gpu
@needs_cuda
def test_size_resample_on_cuda_matches_the_cpu(tmp_path):
    """--size's Lanczos resample (cuSPARSE on CUDA) gives the CPU's values, fp32 and fp16 in; the CUDA pipeline
    with --size writes the CPU pipeline's frames to a code."""
    from psr2video.output_size import SizeSpec, resample

    x = torch.rand(2, 4, 90, 160)
    for h, w in ((60, 107), (135, 240)):
        ref = resample(x, h, w)
        for dt in (torch.float32, torch.float16):
            got = resample(x.to("cuda", dt), h, w)
            assert got.dtype == dt and got.is_cuda
            assert (got.float().cpu() - ref).abs().max().item() < (1e-5 if dt == torch.float32 else 2e-3)
    src = _clip(tmp_path / "in.mkv", "yuv420p", n=4)
    outs = []
    for dev in ("cpu", "cuda"):
        out = tmp_path / f"{dev}.mkv"
        res = run(Options(input=str(src), output=str(out), codec="ffv1", size=SizeSpec(None, 72)),
                  Upscaler("mks", 2, device=dev, precision="fp32"), warn=lambda m: None)
        assert res.frames == 4 and res.out_size == (96, 72)
        outs.append(_yuv(out))
    for a, b in zip(*outs, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_cuda_graphs_on_second_device():
    net = build_model("realtime", 2)
    x = torch.rand(1, 3, 32, 32, device="cuda:1")
    ref = Upscaler("realtime", 2, model=net, backend="torch", device="cuda:1", precision="fp32")(x)
    g = Upscaler("realtime", 2, model=net, backend=TorchBackend(cuda_graphs=True), device="cuda:1", precision="fp32")
    for _ in range(3):
        x = torch.rand(1, 3, 32, 32, device="cuda:1")
        want = Upscaler("realtime", 2, model=net, backend="torch", device="cuda:1", precision="fp32")(x)
        assert (g(x) - want).abs().max().item() < 1e-4
    assert ref.device == torch.device("cuda:1")


@pytest.mark.gpu
@pytest.mark.skipif(not trt_backend.trt_available()[0],
                    reason=f"TensorRT unavailable: {trt_backend.trt_available()[1]}")
def test_tensorrt_batches_and_prebuilt_engine(tmp_path):
    net = build_model("realtime", 2)
    up = Upscaler("realtime", 2, model=net, backend=TRTBackend(), device="cuda", precision="fp16")
    up.prepare(4, 64, 96)
    path = up.runner.engine_path
    ref = Upscaler("realtime", 2, model=net, backend="torch", device="cuda", precision="fp32")
    for n in (4, 1):
        x = torch.rand(n, 3, 64, 96, device="cuda")
        assert (up(x).float() - ref(x)).abs().max().item() < 2e-2
    again = Upscaler("realtime", 2, model=net, backend=TRTBackend(), device="cuda", precision="fp16")
    again.prepare(4, 64, 96)
    assert again.runner.engine_path == path


@pytest.mark.gpu
@pytest.mark.parametrize("hwaccel", [None, "cuda"])
@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "tensorrt"])
def test_cuda_pipeline_backends(tmp_path, backend, hwaccel, request):
    """Streams, events, NVDEC and every GPU backend through the whole pipeline, against the CPU result."""
    why = gpu_backend_unready(backend)
    if why:
        pytest.skip(why)
    if hwaccel:
        request.getfixturevalue("nvdec")  # (else it would pass on software decoding)
    src = _clip(tmp_path / "in.mkv", "yuv420p", codec="libx264", n=7)
    torch.manual_seed(0)
    net = build_model("realtime", 2)
    cpu = tmp_path / "cpu.mkv"
    run(Options(input=str(src), output=str(cpu), codec="ffv1"), Upscaler("realtime", 2, model=net, device="cpu",
                                                                           backend="torch"), warn=print)
    out = tmp_path / "gpu.mkv"
    up = Upscaler("realtime", 2, model=net, backend=backend, device="cuda", precision="fp32")
    res = run(Options(input=str(src), output=str(out), codec="ffv1", batch=3, hwaccel=hwaccel), up, warn=print)
    assert res.frames == 7 and res.nonfinite == 0
    for x, y in zip(_yuv(cpu), _yuv(out), strict=True):
        assert np.abs(x.astype(int) - y.astype(int)).max() <= 2


def test_upscale_profile_option_is_checked_before_anything_runs(tmp_path):
    from click.testing import CliRunner

    from psr2video.cli import cli

    src = _clip(tmp_path / "in.mkv", "yuv420p")
    for args, msg in [(["--backend", "torch", "--profile", "720p"], "use it with --backend tensorrt"),
                      (["--backend", "tensorrt", "--profile", "8k"], "unknown --profile '8k'"),
                      (["--backend", "tensorrt", "--profile", "720p", "--device", "cpu"], "needs a CUDA device")]:
        r = CliRunner().invoke(cli, ["upscale", str(src), str(tmp_path / "o.mkv"), "--variant", "mks", *args])
        assert r.exit_code == 1 and msg in r.output and "Traceback" not in r.output, r.output
        assert not (tmp_path / "o.mkv").exists()


def _runner_on_stand_ins(monkeypatch, precision: str = "fp16", calibration=None):
    """A TRTRunner on the fake TensorRT (with a Runtime that records what it deserialises), no CUDA needed."""
    import contextlib

    fake, calls = fake_tensorrt()
    calls["loaded"] = []

    class Engine:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def get_tensor_dtype(self, name):
            return fake.DataType.HALF if precision == "fp16" else fake.DataType.FLOAT

    class Runtime:
        def __init__(self, logger) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes):
            calls["loaded"].append(bytes(data))
            return Engine(bytes(data))

    fake.Runtime, fake.DataType = Runtime, types.SimpleNamespace(FLOAT="FLOAT", HALF="HALF")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(trt_backend, "gpu_fields", lambda device: {"gpu": "Stand-in GPU", "cc": "9.0"})
    monkeypatch.setattr(trt_backend, "trt_available", lambda: (True, "TensorRT 11.4.0"))
    monkeypatch.setattr(trt_backend, "_device_scope", lambda device: contextlib.nullcontext())
    return fake, calls


def test_a_changed_engine_of_the_same_size_is_rebuilt_not_loaded(tmp_path, monkeypatch):
    """Engines were checked by size only before deserialize_cuda_engine: one changed in place (same size) was
    loaded as it was; it is hashed first now, dropped and rebuilt."""
    fake, calls = _runner_on_stand_ins(monkeypatch)
    torch.manual_seed(0)
    net = build_model("realtime", 2).fuse_for_release()
    cache, say, shape = EngineCache(tmp_path / "engines"), lambda m: None, (1, 3, 720, 1280)
    path = trt_backend.cached_engine(net, net.descriptor, "fp16", ShapeProfile.named("720p"), torch.device("cpu"),
                                     cache=cache, echo=say)
    assert calls["builds"] == 1 and path.read_bytes() == b"ENGINE"
    path.write_bytes(b"EVIL!!")  # same size, other bytes
    runner = trt_backend.TRTRunner(TRTBackend(), net, net.descriptor, "fp16", torch.device("cuda"), cache=cache,
                                   echo=say)
    runner.prepare([shape])
    assert calls["loaded"] == [b"ENGINE"] and calls["builds"] == 2 and path.read_bytes() == b"ENGINE"
    path.write_bytes(b"EVIL!!")  # `engine build` (cached_engine) hashes too: rebuilt, not reported ready
    assert trt_backend.cached_engine(net, net.descriptor, "fp16", ShapeProfile.named("720p"), torch.device("cpu"),
                                     cache=cache, echo=say).read_bytes() == b"ENGINE"
    assert calls["builds"] == 3


def test_a_run_without_a_calibration_uses_the_prebuilt_int8_engine(tmp_path, monkeypatch):
    """`engine build -p int8 --calibration X` built engines no run ever used (runs ask for no calibration and were
    keyed by the default pictures): a run now finds the prebuilt int8 model and its engine."""
    import numpy as np
    from PIL import Image

    fake, calls = _runner_on_stand_ins(monkeypatch, "int8")
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(
            frames / f"{i}.png")
    torch.manual_seed(0)
    net = build_model("realtime", 2).fuse_for_release()
    cache, say = EngineCache(tmp_path / "engines"), lambda m: None
    prof = ShapeProfile.named("720p")
    built = trt_backend.cached_engine(net, net.descriptor, "int8", prof, torch.device("cpu"), cache=cache,
                                      calibration=frames, echo=say)
    runner = trt_backend.TRTRunner(TRTBackend(), net, net.descriptor, "int8", torch.device("cuda"), cache=cache,
                                   echo=say)
    runner.prepare([(1, 3, 720, 1280)])
    assert runner.engine_path == built and calls["builds"] == 1
    assert len([e for e in cache.entries() if e.meta["kind"] == "onnx"]) == 1  # no default-calibrated export


@pytest.mark.parametrize("toml, words", [
    ("[profiles.weird]\nmin = [64]\n", "[profiles.weird] has no opt or max"),
    ("[profiles.weird]\nmin = [64]\nopt = [64, 64]\nmax = [64, 64]\n", "min must be [width, height]"),
    ("[profiles]\nweird = 3\n", "[profiles.weird] must be a table"),
    ("profiles = [1, 2]\n", "'profiles' must be a table"),
    ("[profiles.weird]\nmin = [64, 64]\nopt = [64, 64]\nmax = [64, 64]\nbatch = 4\n", "batch must be [min, opt, max]"),
])
def test_malformed_profile_files_are_one_line(tmp_path, monkeypatch, toml, words):
    """$PSR2VIDEO_PROFILES entries missing a size, or not tables, were a KeyError/TypeError traceback."""
    from click.testing import CliRunner

    from psr2video.cli import cli

    f = tmp_path / "mine.toml"
    f.write_text(toml)
    monkeypatch.setenv("PSR2VIDEO_PROFILES", str(f))
    with pytest.raises(ValueError, match=re.escape(words)):
        trt_backend.load_profiles()
    r = CliRunner().invoke(cli, ["engine", "build", "--untrained", "--profile", "weird", "--device", "cpu"])
    assert r.exit_code == 1 and words in r.output and "Traceback" not in r.output, r.output

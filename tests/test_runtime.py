"""Backends through ``Upscaler``: ONNX Runtime == torch, tiling == untiled, auto choice, TensorRT/CUDA paths."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from psr2video import Upscaler
from psr2video.models import build_model
from psr2video.runtime import auto
from psr2video.runtime.backends import ORTBackend, TorchBackend, TRTBackend
from psr2video.runtime.trt_backend import ShapeProfile, load_profiles, onnx_precision, trt_available

HAS_CUDA = torch.cuda.is_available()
HAS_TRT, TRT_WHY = trt_available()


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PSR2VIDEO_CACHE", str(tmp_path / "cache"))


def _net(variant, seed=0):
    torch.manual_seed(seed)
    return build_model(variant, 2)


@pytest.mark.parametrize("variant", ["realtime", "stream", "mks", "bicubic"])
def test_onnxruntime_matches_torch(variant):
    net = _net(variant)
    ort_up = Upscaler(variant, 2, model=net, backend="onnxruntime", device="cpu")
    torch_up = Upscaler(variant, 2, model=net, backend="torch", device="cpu")
    assert ort_up.runner.name == "onnxruntime" and ort_up.runner.provider == "CPUExecutionProvider"
    for shape in [(1, 3, 32, 48), (2, 3, 21, 17)]:
        x = torch.rand(shape)
        a, b = ort_up(x), torch_up(x)
        assert a.shape == b.shape == (shape[0], 3, shape[2] * 2, shape[3] * 2)
        assert (a - b).abs().max().item() < 1e-4


def test_onnxruntime_second_runner_reuses_cache(caplog):
    net = _net("realtime")
    Upscaler("realtime", 2, model=net, backend="onnxruntime", device="cpu")
    caplog.clear()
    with caplog.at_level("INFO", logger="psr2video.engine_cache"):
        up = Upscaler("realtime", 2, model=net, backend=ORTBackend(threads=1), device="cpu")
    assert not [r for r in caplog.records if "building" in r.message]
    assert up.runner.model_path.name.startswith("realtime_x2_fp32_ort-cpu-")


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_onnxruntime_reduced_precisions_run(precision):
    up = Upscaler("realtime", 2, model=_net("realtime"), backend="onnxruntime", device="cpu", precision=precision)
    y = up(torch.rand(1, 3, 19, 26))
    assert y.shape == (1, 3, 38, 52) and torch.isfinite(y.float()).all()
    assert up.dtype == (torch.float16 if precision == "fp16" else torch.float32)


def test_onnxruntime_rejects_bf16_and_gpu_provider_on_cpu():
    with pytest.raises(ValueError, match="bf16"):
        Upscaler("realtime", 2, model=_net("realtime"), backend="onnxruntime", device="cpu", precision="bf16")
    with pytest.raises(ValueError, match="device cuda"):
        Upscaler("realtime", 2, model=_net("realtime"), backend=ORTBackend(provider="cuda"), device="cpu")


@pytest.mark.parametrize("variant", ["realtime", "stream"])
def test_tiled_equals_untiled_torch(variant):
    net = _net(variant)
    x = torch.rand(1, 3, 70, 83)
    full = Upscaler(variant, 2, model=net, backend="torch", device="cpu")(x)
    tiled = Upscaler(variant, 2, model=net, backend="torch", device="cpu", tile=32)(x)
    assert (full - tiled).abs().max().item() < 1e-4


def test_auto_picks_onnxruntime_on_cpu_and_says_why(caplog):
    with caplog.at_level("INFO", logger="psr2video.runtime"):
        up = Upscaler("realtime", 2, model=_net("realtime"), backend="auto", device="cpu")
    assert isinstance(up.backend, ORTBackend) and up.runner.name == "onnxruntime"
    assert auto.LAST_CHOICE[0] == "onnxruntime" and "faster" in auto.LAST_CHOICE[1]
    assert any("backend auto -> onnxruntime" in r.message for r in caplog.records)


def test_auto_prefers_tensorrt_then_ort_gpu_on_cuda(monkeypatch):
    monkeypatch.setattr(auto, "_has", lambda m: m == "tensorrt")
    assert isinstance(auto.choose(torch.device("cuda"))[0], TRTBackend)
    monkeypatch.setattr(auto, "_has", lambda m: False)
    monkeypatch.setattr(auto, "_ort_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    cfg, _ = auto.choose(torch.device("cuda"))
    assert isinstance(cfg, ORTBackend) and cfg.provider == "cuda"
    monkeypatch.setattr(auto, "_ort_providers", lambda: [])
    assert isinstance(auto.choose(torch.device("cuda"))[0], TorchBackend)
    assert isinstance(auto.choose(torch.device("cpu"))[0], TorchBackend)


def test_no_gpu_modules_imported_on_cpu_path():
    Upscaler("realtime", 2, model=_net("realtime"), backend="onnxruntime", device="cpu")
    assert "tensorrt" not in sys.modules


def test_shape_profiles():
    profiles = load_profiles()
    assert {"480p", "720p", "1080p", "1440p", "dynamic"} <= set(profiles)
    p = ShapeProfile.named("1080p")
    assert p.is_static and p.opt == (1, 3, 1080, 1920)
    d = ShapeProfile.named("720p", dynamic=True)
    assert not d.is_static and d.contains((1, 3, 500, 900)) and not d.contains((1, 3, 2000, 900))
    assert ShapeProfile.from_shape(640, 360).label() == "1x3x360x640:1x3x360x640:1x3x360x640"
    with pytest.raises(ValueError, match="unknown profile"):
        ShapeProfile.named("8k")


def test_trt_precision_source():
    assert onnx_precision("fp16", strongly_typed=True) == "fp16"  # TensorRT 11: fp16 lives in the ONNX
    assert onnx_precision("fp16", strongly_typed=False) == "fp32"  # TensorRT 10: BuilderFlag.FP16
    assert onnx_precision("int8", strongly_typed=True) == "int8"


def test_tensorrt_backend_refuses_without_cuda_or_tensorrt():
    if HAS_TRT:
        pytest.skip("TensorRT and CUDA are present")
    with pytest.raises(ValueError, match="needs CUDA and TensorRT"):
        Upscaler("realtime", 2, model=_net("realtime"), backend="tensorrt", device="cpu")


def _fake_trt(parse_ok: bool, has_fp16_flag: bool, build_ok: bool = True):
    """A stand-in ``tensorrt`` module recording what the builder was asked to do."""
    calls: dict = {"flags": [], "network_flags": None}
    m = types.SimpleNamespace(__version__="11.0.0" if not has_fp16_flag else "10.9.0")
    m.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level=0: None})
    m.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)
    m.BuilderFlag = types.SimpleNamespace(**({"FP16": "FP16", "INT8": "INT8"} if has_fp16_flag else {}))
    m.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")

    class Err:
        def __init__(self, i):
            self.i = i

        def node(self):
            return self.i

        def node_name(self):
            return f"/body/Conv_{self.i}"

        def desc(self):
            return f"unsupported thing {self.i}"

    class Parser:
        num_errors = 0 if parse_ok else 2

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            return parse_ok

        def get_error(self, i):
            return Err(i)

    class Config:
        builder_optimization_level = 0

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

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            self.shapes = (name, lo, opt, hi)

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
            return Profile()

        def build_serialized_network(self, network, config):
            return b"ENGINE" if build_ok else None

    m.Builder, m.OnnxParser = Builder, Parser
    return m, calls


def test_build_engine_tensorrt11_strongly_typed(tmp_path, monkeypatch):
    from psr2video.runtime.trt_backend import build_engine

    fake, calls = _fake_trt(parse_ok=True, has_fp16_flag=False)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    prof = ShapeProfile.named("720p", dynamic=True)
    build_engine("m.onnx", tmp_path / "e.engine", "fp16", prof, 2.0, 4, tmp_path / "tc.cache")
    assert (tmp_path / "e.engine").read_bytes() == b"ENGINE" and (tmp_path / "tc.cache").read_bytes() == b"timing"
    assert calls["network_flags"] == 2 and calls["flags"] == [] and calls["workspace"] == 2 << 30
    assert calls["profile"] == ("input", prof.min, prof.opt, prof.max)
    assert calls["config"].builder_optimization_level == 4


def test_build_engine_tensorrt10_builder_flags_and_errors(tmp_path, monkeypatch):
    from psr2video.runtime.trt_backend import EngineBuildError, build_engine

    fake, calls = _fake_trt(parse_ok=True, has_fp16_flag=True)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    build_engine("m.onnx", tmp_path / "e.engine", "int8", ShapeProfile.static(1, 64, 64))
    assert calls["network_flags"] == 0 and calls["flags"] == ["FP16", "INT8"]
    fake, _ = _fake_trt(parse_ok=False, has_fp16_flag=True)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    with pytest.raises(EngineBuildError, match=r"(?s)2 errors.*Conv_0.*unsupported thing 1"):
        build_engine("m.onnx", tmp_path / "f.engine", "fp32", ShapeProfile.static(1, 64, 64))
    fake, _ = _fake_trt(parse_ok=True, has_fp16_flag=True, build_ok=False)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    with pytest.raises(EngineBuildError, match="failed to build"):
        build_engine("m.onnx", tmp_path / "g.engine", "fp32", ShapeProfile.static(1, 64, 64))


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRT, reason=f"TensorRT backend unavailable here: {TRT_WHY}")
@pytest.mark.parametrize("precision,tol", [("fp32", 1e-3), ("fp16", 2e-2)])
def test_tensorrt_matches_torch(precision, tol):
    net = _net("realtime")
    ref = Upscaler("realtime", 2, model=net, backend="torch", device="cuda", precision="fp32")
    up = Upscaler("realtime", 2, model=net, backend=TRTBackend(), device="cuda", precision=precision)
    x = torch.rand(1, 3, 45, 67, device="cuda")
    assert (up(x).float() - ref(x)).abs().max().item() < tol
    up2 = Upscaler("realtime", 2, model=net, backend=TRTBackend(), device="cuda", precision=precision)
    assert up2.runner.engine_path == up.runner.engine_path  # cached, not rebuilt


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device here")
def test_onnxruntime_cuda_iobinding():
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu (CUDAExecutionProvider) is not installed")
    net = _net("realtime")
    up = Upscaler("realtime", 2, model=net, backend=ORTBackend(provider="cuda"), device="cuda", precision="fp32")
    ref = Upscaler("realtime", 2, model=net, backend="torch", device="cuda", precision="fp32")
    x = torch.rand(1, 3, 33, 40, device="cuda")
    y = up(x)
    assert y.device.type == "cuda" and (y - ref(x)).abs().max().item() < 1e-3

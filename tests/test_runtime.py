"""Backends through ``Upscaler``: ONNX Runtime == torch, tiling == untiled, auto choice, TensorRT/CUDA paths."""

from __future__ import annotations

import sys

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
    assert up.dtype == torch.float32  # ParagonSR2's files take float32: the base path stays float32 inside


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
    assert "faster" in up.backend_reason
    assert any("backend auto -> onnxruntime" in r.message for r in caplog.records)


def test_auto_prefers_tensorrt_then_ort_gpu_on_cuda(monkeypatch):
    monkeypatch.setattr(auto, "probe_tensorrt", lambda: (True, "TensorRT 11.4.0"))
    assert isinstance(auto.choose(torch.device("cuda"))[0], TRTBackend)
    monkeypatch.setattr(auto, "probe_tensorrt", lambda: (False, "TensorRT is not installed"))
    monkeypatch.setattr(auto, "ort_gpu_provider", lambda device: ("cuda", "onnxruntime-gpu with its CUDA provider"))
    cfg, why = auto.choose(torch.device("cuda"))
    assert isinstance(cfg, ORTBackend) and cfg.provider == "cuda" and "not installed" in why
    monkeypatch.setattr(auto, "ort_gpu_provider", lambda device: (None, "CUDAExecutionProvider failed to start"))
    cfg, why = auto.choose(torch.device("cuda"))
    assert isinstance(cfg, TorchBackend) and "failed to start" in why
    monkeypatch.setattr(auto, "_has_ort_cpu", lambda: False)
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
    assert onnx_precision("fp16") == "fp16"  # TensorRT 10 and 11 both build strongly typed from the fp16 ONNX
    assert onnx_precision("int8") == "int8"


def test_tensorrt_backend_refuses_without_cuda_or_tensorrt():
    if HAS_TRT:
        pytest.skip("TensorRT and CUDA are present")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        Upscaler("realtime", 2, model=_net("realtime"), backend="tensorrt", device="cpu")


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


def test_weights_hash_is_computed_once_and_carried_by_the_descriptor(monkeypatch):
    """The export/engine cache key's weights hash: computed once per Upscaler (not per export, per key, per
    stream) and handed to the runner on the descriptor; the torch backend never needs it."""
    from psr2video.runtime import engine_cache

    real, calls = engine_cache.weights_hash, []
    monkeypatch.setattr(engine_cache, "weights_hash", lambda m: calls.append(1) or real(m))
    net = _net("realtime", seed=5)
    up = Upscaler(model=net, backend="onnxruntime", device="cpu")
    assert up.descriptor.weights_hash == real(net.fuse_for_release()) and len(calls) == 1
    assert up.runner.descriptor.weights_hash == up.descriptor.weights_hash
    assert not Upscaler(model=_net("realtime", seed=6), backend="torch", device="cpu").descriptor.weights_hash
    assert len(calls) == 1


def test_auto_takes_torch_for_bf16():
    """On the CPU auto means ONNX Runtime, which has no bf16: an explicit bf16 picks PyTorch, with the reason."""
    up = Upscaler(model=_net("realtime"), backend="auto", device="cpu", precision="bf16")
    assert up.runner.name == "torch" and "bf16" in up.backend_reason
    assert Upscaler(model=_net("realtime"), backend="auto", device="cpu").runner.name in ("onnxruntime", "torch")


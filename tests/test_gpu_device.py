"""On a lent GPU: race detection over a long clip, shipped models on real half precision, engine recovery.

Every test here needs CUDA (and some TensorRT or onnxruntime-gpu) and skips with the reason elsewhere.
``tools/gpu_check.sh gputests`` runs them with the rest of the tests marked ``gpu``. Exports and engines
go to the session's private cache (conftest.py), so each is built once per run.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import gpu_backend_unready

from psr2video import Upscaler, cards
from psr2video.fileio import sha256_file
from psr2video.metrics import psnr
from psr2video.models import load_model
from psr2video.models.registry import shipped_files
from psr2video.runtime.backends import ORTBackend, TorchBackend, TRTBackend
from psr2video.stress import failures, real_frames, run_suite
from psr2video.video.pipeline import Options, run

HAS_CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA (no GPU on this machine)")]


@pytest.fixture(autouse=True)
def _no_tf32(monkeypatch):
    """fp32 means fp32 in the references (cuDNN convolutions default to TF32 on Ampere and later)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)


def _backend(name: str):
    """The backend config for ``name``, or skip saying why it can't run on CUDA here."""
    why = gpu_backend_unready(name)
    if why:
        pytest.skip(why)
    return {"tensorrt": TRTBackend(), "onnxruntime": ORTBackend(provider="cuda"),
            "torch-graphs": TorchBackend(cuda_graphs=True)}.get(name, TorchBackend())


# ------------------------------------------------------------------ the double-buffered pipeline, 240 frames
def _moving_clip(path: Path, n: int = 241, w: int = 96, h: int = 64) -> Path:
    """H.264 (NVDEC decodes it too) in which every frame differs from its neighbours everywhere: a frame
    from the wrong slot, or half of one, cannot pass for the right one."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": "10", "preset": "ultrafast", "bf": "0"}
        for i in range(n):
            img = np.stack([(xx * 5 + i * 37) % 256, (yy * 9 + i * 53) % 256,
                            rng.integers(0, 256, (h, w))], -1).astype(np.uint8)
            out.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(s.encode(None))
    return path


def _planes(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="yuv420p") for f in c.decode(video=0)]


@pytest.mark.parametrize("hwaccel", [None, "cuda"])
def test_double_buffered_pipeline_equals_the_cpu_pipeline_frame_for_frame(tmp_path, hwaccel, request):
    """241 frames through the streamed CUDA path (pinned double buffers, copy streams, batch 3, a short last
    batch) against the CPU pipeline: each output frame matches its own CPU frame to 2 codes and is far from its
    neighbours', so a missing wait (a stale slot, a buffer overwritten mid-copy) shows as a failing frame."""
    if hwaccel:
        request.getfixturevalue("nvdec")  # (else it would pass on software decoding)
    src = _moving_clip(tmp_path / "in.mkv")
    cpu_out, gpu_out = tmp_path / "cpu.mkv", tmp_path / "gpu.mkv"
    net = load_model("realtime", 2)
    run(Options(input=str(src), output=str(cpu_out), codec="ffv1"),
        Upscaler(model=net, backend="torch", device="cpu", precision="fp32"), warn=print)
    up = Upscaler(model=net, backend="torch", device="cuda", precision="fp32")
    res = run(Options(input=str(src), output=str(gpu_out), codec="ffv1", batch=3, hwaccel=hwaccel), up, warn=print)
    assert res.frames == 241 and res.nonfinite == 0
    a, b = _planes(cpu_out), _planes(gpu_out)
    assert len(a) == len(b) == 241
    bad = []
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        err = np.abs(x.astype(int) - y.astype(int)).max()
        near = min(np.abs(a[j].astype(int) - y.astype(int)).mean() for j in (i - 1, i + 1) if 0 <= j < len(a))
        if err > 2 or near < 10:
            bad.append((i, int(err), round(float(near), 1)))
    assert not bad, f"frames that differ from the CPU pipeline (index, max code error, neighbour distance): {bad}"


# ------------------------------------------------------------ shipped models on the GPU: precision safety
@pytest.mark.parametrize("name", list(shipped_files()))
@pytest.mark.parametrize("backend,precision", [("torch", "fp16"), ("torch", "bf16"), ("torch-graphs", "fp16"),
                                               ("tensorrt", "fp32"), ("tensorrt", "fp16"), ("tensorrt", "int8"),
                                               ("onnxruntime", "fp16")])
def test_shipped_models_on_the_gpu_pass_the_stress_suite(name, backend, precision):
    """Real GPU arithmetic (not the CPU emulation of the default suite): every card and real frame, the raw
    (unclamped) output. The stress bar holds in fp16/bf16/fp32; int8 must stay finite and within 35 dB of
    fp32 torch (its text-vs-MKS2021 margin is reported, not required). Prints the figures for the GPU table."""
    net = load_model(weights=shipped_files()[name])
    cfg = _backend(backend)
    ref = Upscaler(model=copy.deepcopy(net), backend="torch", device="cuda", precision="fp32", clamp=False)
    up = Upscaler(model=net, backend=cfg, device="cuda", precision=precision, clamp=False)

    def fn(x: torch.Tensor) -> torch.Tensor:
        return up(x.cuda()).float().cpu()

    real = real_frames()
    rows = run_suite(fn, 2, precision, real=real, alpha=float(getattr(net.descriptor, "alpha", 1.0)))
    worst, max_abs = float("inf"), 0.0
    for img in [cards.card(n, 256, 192) for n in cards.CARDS] + [t for _, t in real]:
        lr = torch.nn.functional.interpolate(img[None], scale_factor=0.5, mode="bicubic", antialias=True)
        y = up(lr.clamp(0, 1).cuda()).float().clamp(0, 1)
        r = ref(lr.clamp(0, 1).cuda()).clamp(0, 1)
        worst = min(worst, psnr(y.cpu(), r.cpu()))
        max_abs = max(max_abs, float((y - r).abs().max()))
    print(f"\n{name} {backend} {precision}: vs torch fp32 worst PSNR {worst:.1f} dB, max |diff| {max_abs:.4f}; "
          f"stress max |detail| {max(r.detail for r in rows):.3f}")
    assert up.nonfinite == 0  # the Upscaler replaces NaN/inf on CUDA (and counts them), so count, not look
    assert ref.runner.model is not up.runner.model
    if precision == "int8":
        assert worst >= 35.0
    else:
        assert not failures(rows), failures(rows)
        assert worst >= (38.0 if precision == "bf16" else 45.0)


# ------------------------------------------------------------------------ engine cache on the device
def test_corrupted_engine_is_rebuilt_and_the_cache_reused(tmp_path, monkeypatch):
    """Build, reuse (no rebuild), then an engine that TensorRT can't deserialize although its sidecar says
    it is intact (what a TensorRT or driver upgrade leaves): the next Upscaler rebuilds it with the same
    results instead of failing or running garbage."""
    why = gpu_backend_unready("tensorrt")
    if why:
        pytest.skip(why)
    monkeypatch.setenv("PSR2VIDEO_CACHE", str(tmp_path / "cache"))
    net = load_model("realtime", 2)
    x = torch.rand(2, 3, 72, 128, device="cuda")
    first = Upscaler(model=net, backend=TRTBackend(), device="cuda", precision="fp16")
    first.prepare(2, 72, 128)
    want = first(x).float()
    path = Path(first.runner.engine_path)
    stamp = path.stat().st_mtime_ns
    again = Upscaler(model=net, backend=TRTBackend(), device="cuda", precision="fp16")
    again.prepare(2, 72, 128)
    assert Path(again.runner.engine_path) == path and path.stat().st_mtime_ns == stamp  # reused
    raw = bytearray(path.read_bytes())
    raw[:64] = bytes(64)  # same size; the sidecar's hash updated to match: only deserializing can tell
    path.write_bytes(raw)
    side = path.with_name(path.name + ".json")
    meta = json.loads(side.read_text())
    side.write_text(json.dumps({**meta, "sha256": sha256_file(path)}))
    healed = Upscaler(model=net, backend=TRTBackend(), device="cuda", precision="fp16")
    healed.prepare(2, 72, 128)
    assert (healed(x).float() - want).abs().max().item() < 1e-2
    stamp = path.stat().st_mtime_ns
    last = Upscaler(model=net, backend=TRTBackend(), device="cuda", precision="fp16")
    last.prepare(2, 72, 128)
    assert path.stat().st_mtime_ns == stamp  # the rebuilt engine is the cached one from now on

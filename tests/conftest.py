"""Shared fixtures: the validation data (skip cleanly when it is absent) and a private cache per test."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from psr2video import paths

ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run the tests marked slow (CI does: .ci/run)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` (attention variants above x2, long end-to-end runs) are skipped unless
    ``--run-slow`` is given, so the default suite stays quick; .ci/run passes it, so CI still runs them."""
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow (CI does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def data_dir(*parts: str) -> Path:
    """A folder under the data root ($PSR2VIDEO_DATA, else ../shared/data), or skip the test saying where."""
    p = paths.data_path(*parts)
    if not p.exists():
        pytest.skip(f"test data not found at {p} (set PSR2VIDEO_DATA to the data folder)")
    return p


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory) -> Iterator[Path]:
    """One temporary PSR2VIDEO_CACHE for the whole run (exports are reused between tests), so the suite never
    writes into the user's real cache; a test that needs an empty cache sets its own with monkeypatch."""
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("PSR2VIDEO_CACHE")
    os.environ["PSR2VIDEO_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("PSR2VIDEO_CACHE", None)
    else:
        os.environ["PSR2VIDEO_CACHE"] = old


@pytest.fixture(scope="session")
def val_root() -> Path:
    return data_dir("val")


# ---------------------------------------------------------------- foreign-model helpers (test_foreign*.py)
@pytest.fixture
def pan_folder(tmp_path: Path) -> Path:
    """A folder holding one 300x200 picture with stripes and a checkerboard: enough for eval --video's pans."""
    import numpy as np
    from PIL import Image

    folder = tmp_path / "pans"
    folder.mkdir()
    yy, xx = np.mgrid[0:200, 0:300].astype(np.float32)
    a = np.stack([0.5 + 0.5 * np.sin(xx / 7), 0.5 + 0.5 * np.cos(yy / 5), ((xx // 9 + yy // 9) % 2)], -1)
    Image.fromarray((a * 255).astype(np.uint8)).save(folder / "a.png")
    return folder


def export_onnx_file(net: nn.Module, path: Path, example: torch.Tensor, dynamic: dict | None,
                     names: tuple[str, str] = ("input", "output")) -> Path:
    """A community-style ONNX file of ``net`` (any I/O names, static or dynamic axes)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), str(path), input_names=[names[0]], output_names=[names[1]],
                          dynamic_axes=dynamic, opset_version=17, dynamo=False)
    return path


def gpu_backend_unready(backend: str) -> str | None:
    """Why ``backend`` (torch, onnxruntime, tensorrt) can't run on CUDA here, or None when it can: the GPU
    tests skip with this reason."""
    if not torch.cuda.is_available():
        return "needs CUDA (no GPU on this machine)"
    if backend == "tensorrt":
        from psr2video.runtime import trt_backend

        ok, why = trt_backend.trt_available()
        return None if ok else f"TensorRT unavailable: {why}"
    if backend == "onnxruntime":
        from psr2video.runtime import auto

        provider, why = auto.ort_gpu_provider(torch.device("cuda"))
        return None if provider else f"ONNX Runtime has no working GPU provider: {why}"
    return None


@pytest.fixture(scope="session")
def nvdec(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skip, saying why, where FFmpeg's NVDEC can't decode here: a VM without the driver's libnvcuvid decodes
    ``--hwaccel cuda`` in software (the product falls back, said once), which a GPU test would take for the
    hardware path and pass without testing it."""
    import av
    import numpy as np
    from av.codec.hwaccel import HWAccel

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    clip = tmp_path_factory.mktemp("nvdec") / "probe.mp4"
    with av.open(str(clip), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        for i in range(2):
            out.mux(s.encode(av.VideoFrame.from_ndarray(np.full((64, 64, 3), 40 * i, np.uint8), format="rgb24")))
        out.mux(s.encode(None))
    try:
        with av.open(str(clip), hwaccel=HWAccel("cuda", allow_software_fallback=False)) as c:
            next(c.decode(video=0))
    except Exception as e:  # noqa: BLE001 - any failure means no NVDEC here
        pytest.skip(f"NVDEC can't decode here ({type(e).__name__}: {e}); libnvcuvid missing from this machine?")

"""``--backend auto``: the fastest backend available for a device, with the reason made visible.

CUDA: native TensorRT when it imports, else ONNX Runtime with its TensorRT or CUDA provider when
onnxruntime-gpu is installed, else PyTorch. CPU: ONNX Runtime, measured faster than PyTorch eager on the
CPU for every model here (see docs/README-runtimes.md, 2-core x86: realtime x2 at 320x180 117 ms vs
546 ms, stream 1.04 s vs 2.73 s), falling back to PyTorch when onnxruntime is missing.

The choice is logged on ``psr2video.runtime`` at INFO and kept in ``LAST_CHOICE`` (backend, reason).
"""

from __future__ import annotations

import importlib.util
import logging

import torch

from .backends import BackendConfig, ORTBackend, TorchBackend, TRTBackend

log = logging.getLogger("psr2video.runtime")

LAST_CHOICE: tuple[str, str] | None = None


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _ort_providers() -> list[str]:
    if not _has("onnxruntime"):
        return []
    import onnxruntime as ort

    return list(ort.get_available_providers())


def choose(device: torch.device) -> tuple[BackendConfig, str]:
    """(config, reason) for ``device`` without side effects."""
    if device.type == "cuda":
        if _has("tensorrt"):
            return TRTBackend(), "TensorRT is installed: native TensorRT engines are the fastest on NVIDIA GPUs"
        providers = _ort_providers()
        if "TensorrtExecutionProvider" in providers:
            return ORTBackend(provider="tensorrt"), "onnxruntime-gpu with its TensorRT provider"
        if "CUDAExecutionProvider" in providers:
            return ORTBackend(provider="cuda"), "onnxruntime-gpu with its CUDA provider (no TensorRT)"
        return TorchBackend(), "no TensorRT or onnxruntime-gpu: PyTorch on CUDA"
    if "CPUExecutionProvider" in _ort_providers():
        return ORTBackend(provider="cpu"), "ONNX Runtime is 2-5x faster than PyTorch eager on the CPU (measured)"
    return TorchBackend(), "onnxruntime is not installed: PyTorch on the CPU"


def pick_backend(device: torch.device) -> BackendConfig:
    """Resolve ``--backend auto`` for ``device``; logs and records the choice."""
    global LAST_CHOICE
    config, reason = choose(torch.device(device))
    LAST_CHOICE = (config.name, reason)
    log.info("backend auto -> %s on %s: %s", config.name, torch.device(device).type, reason)
    return config

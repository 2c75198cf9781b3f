"""Backend configurations as small frozen dataclasses (vs-mlrt style) and the runner protocol.

A backend config says *how* to run; ``upscaler.make_runner`` turns it, a fused model and a precision into
a callable that maps an NCHW float tensor on the runner's device to the upscaled tensor, and
``auto.resolve`` picks one for ``auto``. This module holds only the configs, so every other runtime
module can import it without a cycle. Heavy or GPU-only libraries are imported only inside the runner
that needs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from ..errors import SettingError
from ..names import BACKENDS


class Runner(Protocol):
    """One compiled/loaded model on one device. ``__call__`` takes and returns NCHW tensors."""

    name: str
    device: torch.device
    dtype: torch.dtype

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class TorchBackend:
    """PyTorch eager, optionally ``torch.compile``d and/or replayed through CUDA graphs."""

    compile: bool = False
    cuda_graphs: bool = False
    channels_last: bool = True
    name: str = "torch"


@dataclass(frozen=True)
class ORTBackend:
    """ONNX Runtime; ``provider`` is auto | cpu | cuda | tensorrt (chosen by what is installed)."""

    provider: str = "auto"
    threads: int = 0
    # Worker threads spin after every run by default; beside decode/encode threads on a small CPU that
    # starves them (2 cores: pipeline 8-11 fps spinning vs 17-18 fps not). Off unless asked for.
    spin: bool = False
    name: str = "onnxruntime"


@dataclass(frozen=True)
class TRTBackend:
    """Native TensorRT (10.x or 11.x) with the engine cache.

    ``profile``: a named profile (runtime/profiles.toml) to run with; inputs it can't take are refused
    before the run. Without it the runner uses any cached engine whose profile takes the input (what
    ``psr2video engine build`` made) and builds a dynamic one otherwise. ``static_shape``: one static
    engine per input shape (kept in a small cache).
    """

    workspace_gib: float = 4.0
    opt_level: int = 3
    static_shape: bool = False
    profile: str | None = None
    name: str = "tensorrt"


class Backend:
    """Namespace for the configs: ``Backend.Torch()``, ``Backend.ORT(provider="cuda")``, ``Backend.TRT()``."""

    Torch = TorchBackend
    ORT = ORTBackend
    TRT = TRTBackend


BackendConfig = TorchBackend | ORTBackend | TRTBackend


def parse_backend(backend: str | BackendConfig) -> BackendConfig | str:
    """Map a CLI/API name to a config; ``auto`` is resolved later, once the device is known."""
    if not isinstance(backend, str):
        return backend
    name = backend.lower()
    if name == "auto":
        return "auto"
    if name in ("torch", "pytorch"):
        return TorchBackend()
    if name in ("torch-compile", "torch-graphs", "torch-compile-graphs"):
        return TorchBackend(compile="compile" in name, cuda_graphs="graphs" in name)
    if name in ("onnxruntime", "ort"):
        return ORTBackend()
    if name.startswith(("onnxruntime-", "ort-")) and name.split("-", 1)[1] in ("cpu", "cuda", "tensorrt"):
        return ORTBackend(provider=name.split("-", 1)[1])
    if name in ("tensorrt", "trt"):
        return TRTBackend()
    raise SettingError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def backend_label(config: BackendConfig) -> str:
    """The name a user types for ``config`` (``torch-compile-graphs``, ``onnxruntime-cuda``): tables and logs
    say which form of a backend ran, not only which library."""
    if isinstance(config, TorchBackend):
        return "torch" + ("-compile" if config.compile else "") + ("-graphs" if config.cuda_graphs else "")
    if isinstance(config, ORTBackend) and config.provider != "auto":
        return f"onnxruntime-{config.provider}"
    return config.name

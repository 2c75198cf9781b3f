"""Inference runtimes: the shared ``Upscaler``, backend configs, tiling, export and engine cache."""

from .backends import Backend, BackendConfig, ORTBackend, TorchBackend, TRTBackend
from .upscaler import Upscaler

__all__ = ["Backend", "BackendConfig", "ORTBackend", "TRTBackend", "TorchBackend", "Upscaler"]

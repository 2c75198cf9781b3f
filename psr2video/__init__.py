"""psr2video: real-time video super-resolution with the ParagonSR2 model family."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Upscaler", "__version__"]


def __getattr__(name: str) -> Any:
    """``psr2video.Upscaler`` imported on first use: the command line checks its arguments and installs its
    Ctrl-C handler before torch is imported (seconds)."""
    if name == "Upscaler":
        from .runtime.upscaler import Upscaler

        return Upscaler
    raise AttributeError(f"module 'psr2video' has no attribute {name!r}")

"""psr2video: real-time video super-resolution with the ParagonSR2 model family.

``Upscaler`` is imported on first use, so ``psr2video --help`` and the torch-free modules
(``names``, ``errors``) do not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runtime.upscaler import Upscaler

__version__ = "0.1.0"
__all__ = ["Upscaler", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Upscaler":
        from .runtime.upscaler import Upscaler

        return Upscaler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

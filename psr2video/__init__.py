"""psr2video: real-time video super-resolution with the ParagonSR2 model family."""

from .runtime.upscaler import Upscaler

__version__ = "0.1.0"
__all__ = ["Upscaler", "__version__"]

"""psr2video: real-time video super-resolution with the ParagonSR2 model family.

The names a user reaches for are here (``from psr2video import Upscaler, Backend``), each imported on first
use, so ``import psr2video``, ``psr2video --help`` and the torch-free modules (``names``, ``errors``) do not
load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import PsrError
    from .foreign import load_model_file
    from .models import MagicKernelSharp2021, WeightsError, build_model, list_shipped, load_model
    from .names import SCALES, VARIANTS
    from .runtime.backends import Backend, BackendConfig
    from .runtime.upscaler import Upscaler

__version__ = "0.1.0"

# public name -> the module that defines it (imported when the name is first asked for)
_LAZY = {
    "Upscaler": ".runtime.upscaler",
    "Backend": ".runtime.backends",
    "BackendConfig": ".runtime.backends",
    "build_model": ".models",
    "load_model": ".models",
    "list_shipped": ".models",
    "MagicKernelSharp2021": ".models",
    "WeightsError": ".models",
    "load_model_file": ".foreign",
    "PsrError": ".errors",
    "VARIANTS": ".names",
    "SCALES": ".names",
}

__all__ = [
    "SCALES", "VARIANTS", "Backend", "BackendConfig", "MagicKernelSharp2021", "PsrError", "Upscaler", "WeightsError",
    "__version__", "build_model", "list_shipped", "load_model", "load_model_file",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

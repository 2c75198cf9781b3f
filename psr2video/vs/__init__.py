"""The Python side of the psr2 VapourSynth plugin.

- ``filter``: what the native shim (plugins/vapoursynth/psr2_shim.c) calls: ``create`` builds the shared
  ``Upscaler`` for ``core.psr2.Upscale``; ``upscale(clip, ...)`` is the same call from Python;
- ``source``: a frame-accurate PyAV source (``open_clip``, ``best_source``);
- ``install``: compiles and installs the shim (``psr2video vs install``);
- ``bench``: vspipe through the plugin vs the ``Upscaler`` alone (``psr2video vs bench``).

``upscale``, ``create``, ``open_clip`` and ``best_source`` are importable from here; they load their
module (and torch or av) on first use only, so the installer stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"upscale": "filter", "create": "filter", "open_clip": "source", "best_source": "source"}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

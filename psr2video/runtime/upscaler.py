"""``Upscaler``: the one way every front end (CLI, VapourSynth, bench, eval) runs a model.

model descriptor + backend + precision + tiling. Input: NCHW RGB in [0, 1] (any float dtype, any
device); output: NCHW RGB on the upscaler's device, ``scale`` times the size, clamped to [0, 1].
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from ..models.registry import BASELINES, ModelDescriptor, build_model, describe, load_model
from ..names import PRECISIONS
from .auto import resolve
from .backends import BackendConfig, ORTBackend, Runner, TorchBackend, TRTBackend
from .tiling import tile_shapes, tiled_apply


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto``/None -> CUDA when available, else CPU; a CUDA request without CUDA is an error."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} requested but CUDA is not available (use --device cpu)")
    return dev


def make_runner(config: BackendConfig, model: nn.Module, descriptor: ModelDescriptor, precision: str,
                device: torch.device) -> Runner:
    """Instantiate the runner for ``config``; the only place that imports a backend module (here, not in
    backends.py, so that the runners can import their configs from backends.py without a cycle)."""
    if isinstance(config, TorchBackend):
        from .torch_backend import TorchRunner

        return TorchRunner(config, model, descriptor, precision, device)
    if isinstance(config, ORTBackend):
        from .ort_backend import ORTRunner

        return ORTRunner(config, model, descriptor, precision, device)
    if isinstance(config, TRTBackend):
        from .trt_backend import TRTRunner

        return TRTRunner(config, model, descriptor, precision, device)
    raise TypeError(f"not a backend config: {config!r}")


class Upscaler:
    """Upscale RGB tensors with a ParagonSR2 variant (or a baseline) on a chosen backend.

    >>> up = Upscaler(variant="realtime", scale=2, device="cpu")
    >>> y = up(torch.rand(1, 3, 64, 64))   # (1, 3, 128, 128)
    """

    def __init__(self, variant: str | None = "stream", scale: int | None = 2,
                 weights: str | Path | None = None, backend: str | BackendConfig = "torch",
                 precision: str | None = None, device: str | torch.device | None = "auto", tile: int = 0,
                 tile_overlap: int | None = None, model: nn.Module | None = None, clamp: bool = True) -> None:
        self.device = resolve_device(device)
        if model is None:
            if variant in BASELINES:
                model = build_model(variant, scale or 2)
            else:
                model = load_model(variant, scale, weights=weights)
        elif getattr(model, "descriptor", None) is None:
            if variant is None or scale is None:
                raise ValueError("a bare model needs variant= and scale= to describe it")
            model.descriptor = describe(model, variant, scale)
        if hasattr(model, "fuse_for_release"):
            model = model.fuse_for_release()
        self.model = model.eval()
        self.descriptor: ModelDescriptor = model.descriptor
        self.scale = self.descriptor.scale
        self.precision = precision or ("fp16" if self.device.type == "cuda" else "fp32")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        self.backend, self.backend_reason = resolve(backend, self.device)
        self.runner = make_runner(self.backend, self.model, self.descriptor, self.precision, self.device)
        self.tile = int(tile)
        self.tile_overlap = self.descriptor.tile_overlap if tile_overlap is None else int(tile_overlap)
        self.clamp = clamp
        self._nonfinite: torch.Tensor | None = None  # device-side count, read only when asked for
        self._nonfinite_cpu = 0

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the backend computes in (feed it this to avoid a cast)."""
        return self.runner.dtype

    def __repr__(self) -> str:
        d = self.descriptor
        return (f"Upscaler({d.variant} x{d.scale}, backend={self.runner.name}, precision={self.precision}, "
                f"device={self.device}, tile={self.tile or 'off'})")

    @property
    def nonfinite(self) -> int:
        """How many output values were NaN or infinite (and replaced) so far."""
        return self._nonfinite_cpu + (0 if self._nonfinite is None else int(self._nonfinite.item()))

    def prepare(self, n: int, height: int, width: int) -> None:
        """Get the backend ready for batches of up to ``n`` frames of ``width`` x ``height`` before a run
        (TensorRT: find or build an engine whose profile takes every tile shape, the last short batch
        included); raises ValueError when it can't take them."""
        prepare = getattr(self.runner, "prepare", None)
        if prepare is not None:
            shapes = tile_shapes(height, width, self.tile, self.tile_overlap, self.descriptor.tile_align)
            prepare([(b, self.descriptor.in_channels, h, w) for b in sorted({1, n}) for h, w in shapes])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.descriptor.in_channels:
            raise ValueError(f"expected NCHW with {self.descriptor.in_channels} channels, got {tuple(x.shape)}")
        y = tiled_apply(self.runner, x, self.scale, self.tile, self.tile_overlap, self.descriptor.tile_align)
        if not y.is_floating_point():
            return y
        if y.is_cuda:  # count on the device (no sync); the replacement is one more cheap kernel
            bad = (~torch.isfinite(y)).sum()
            self._nonfinite = bad if self._nonfinite is None else self._nonfinite + bad
            y = torch.nan_to_num(y, nan=0.0, posinf=1.0, neginf=0.0)
        elif not math.isfinite(float(y.sum(dtype=torch.float32))):
            # CPU: one reduction finds them (every extra elementwise op costs a thread barrier on a busy CPU)
            self._nonfinite_cpu += int((~torch.isfinite(y)).sum())
            y = torch.nan_to_num(y, nan=0.0, posinf=1.0, neginf=0.0)
        return y.clamp(0.0, 1.0) if self.clamp else y

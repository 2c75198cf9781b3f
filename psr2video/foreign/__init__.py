"""Bring your own model: any ONNX file or spandrel-supported checkpoint through the same ``Upscaler``.

``load_model_file(path)`` returns a module with a ``descriptor`` (our ``ModelDescriptor``: scale,
channels, size multiple, minimum or fixed size, tiling advice, precisions, the backends that can run it,
the source file's hash), so the Upscaler, tiling, the engine cache, the video pipeline and VapourSynth
treat it like one of our own:

- ``.onnx``: onnx_file.py (ONNX Runtime and TensorRT; layout, dtype and shapes read from the graph);
- ``.pth`` / ``.pt`` / ``.ckpt`` / ``.safetensors`` from other projects: checkpoint.py (spandrel, safe
  loading; all three backends, exported to ONNX through the engine cache for ONNX Runtime/TensorRT);
- a psr2video ``.safetensors`` (its header says so): our own loader, exactly as ``--weights``.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .errors import ForeignModelError

MODEL_EXTS = (".onnx", ".pth", ".pt", ".ckpt", ".safetensors")

__all__ = ["MODEL_EXTS", "ForeignModelError", "is_psr2video_weights", "load_model_file"]


def is_psr2video_weights(path: Path) -> bool:
    """True for a .safetensors written by psr2video (its header carries our metadata)."""
    if path.suffix.lower() != ".safetensors":
        return False
    from safetensors import safe_open

    from ..models.registry import META_KEY

    try:
        with safe_open(str(path), framework="pt") as f:
            return META_KEY in (f.metadata() or {})
    except Exception:  # not readable as safetensors: the checkpoint loader says why
        return False


def load_model_file(path: str | Path) -> nn.Module:
    """Any supported model file as a module with a ``descriptor`` (ForeignModelError when it can't run)."""
    p = Path(path)
    if p.is_dir():
        raise ForeignModelError(f"{p} is a directory, not a model file")
    if not p.is_file():
        raise ForeignModelError(f"model file not found: {p}")
    ext = p.suffix.lower()
    if ext not in MODEL_EXTS:
        raise ForeignModelError(f"{p.name}: unknown model file type {ext or '(none)'}; psr2video runs "
                                f"{', '.join(MODEL_EXTS)} files")
    if ext == ".onnx":
        from .onnx_file import OnnxFileModel

        return OnnxFileModel(p)
    if is_psr2video_weights(p):
        from ..models.registry import load_model

        return load_model(weights=p)
    from .checkpoint import load_checkpoint

    return load_checkpoint(p)

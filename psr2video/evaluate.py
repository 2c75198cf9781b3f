"""Benchmark-protocol evaluation of upscalers on image folders (Set5, Set14, B100, ...).

HR is cropped to a multiple of the scale, LR is made with PIL's antialiased BICUBIC (which matches the
published bicubic figures), the SR output is quantised to uint8, and PSNR/SSIM are measured on Y with
``scale`` border pixels shaved. Baselines (bicubic, lanczos, mks) run through the same code path.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .metrics import psnr_y, ssim_y
from .pictures import list_images, load_rgb

UpscaleFn = Callable[[Image.Image, int], Image.Image]


def make_lr(hr: Image.Image, scale: int, jpeg_quality: int | None = None) -> tuple[Image.Image, Image.Image]:
    """(HR cropped to a multiple of ``scale``, its antialiased-bicubic LR, optionally JPEG-degraded)."""
    w, h = hr.size
    hr = hr.crop((0, 0, w - w % scale, h - h % scale))
    lr = hr.resize((hr.width // scale, hr.height // scale), Image.Resampling.BICUBIC)
    if jpeg_quality is not None:
        buf = io.BytesIO()
        lr.save(buf, format="JPEG", quality=jpeg_quality)
        buf.seek(0)
        lr = Image.open(buf).convert("RGB")
    return hr, lr


def pil_resize(method: str) -> UpscaleFn:
    filt = {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}[method]
    return lambda lr, s: lr.resize((lr.width * s, lr.height * s), filt)


def tensor_fn(fn: Callable[[torch.Tensor], torch.Tensor]) -> UpscaleFn:
    """Wrap an NCHW [0, 1] tensor upscaler (e.g. an ``Upscaler``) as a PIL -> PIL function."""

    def run(lr: Image.Image, s: int) -> Image.Image:
        x = torch.from_numpy(np.asarray(lr, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        with torch.inference_mode():
            y = fn(x)
        y = (y[0].float().clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0).cpu().numpy()
        return Image.fromarray(y)

    return run


@dataclass
class Result:
    dataset: str
    method: str
    scale: int
    psnr: float
    ssim: float
    images: list[dict] = field(default_factory=list)


def evaluate(fn: UpscaleFn, folder: str | Path, scale: int, method: str = "", ssim: bool = True,
             jpeg_quality: int | None = None) -> Result:
    """Mean PSNR-Y / SSIM-Y of ``fn`` over every image in ``folder``."""
    rows = []
    for path in list_images(folder):
        hr, lr = make_lr(load_rgb(path), scale, jpeg_quality)
        sr = fn(lr, scale)
        if sr.size != hr.size:
            raise ValueError(f"{method}: output {sr.size} != HR {hr.size} for {path.name}")
        a, b = np.asarray(sr), np.asarray(hr)
        rows.append({"image": path.name, "psnr": psnr_y(a, b, scale),
                     "ssim": ssim_y(a, b, scale) if ssim else float("nan")})
    return Result(Path(folder).name, method, scale, float(np.mean([r["psnr"] for r in rows])),
                  float(np.mean([r["ssim"] for r in rows])), rows)


def record_validation(path: Path, rows: dict) -> None:
    """Merge ``rows`` ({dataset: {psnr, ssim}}) into the ``validation`` entry of a weights file's metadata."""
    import json

    from safetensors.torch import load_file, save_file

    from .fileio import atomic_path
    from .models.registry import META_KEY, read_metadata

    meta = read_metadata(path)
    meta["validation"] = {**meta.get("validation", {}), **rows}
    tensors = load_file(str(path))
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})

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

from .errors import PsrError
from .metrics import psnr_y, ssim_y
from .pictures import list_images, load_rgb

SSIM_WINDOW = 11  # metrics.ssim_y's window


class PictureSizeError(PsrError, ValueError):
    """A picture too small to be measured at a scale (no pixel left after the crop and shave, or fewer than
    SSIM's window): one line naming it and the smallest size that works."""


def min_size(scale: int, ssim: bool = True) -> int:
    """The smallest side an HR picture can have at ``scale``: cropped to a multiple of ``scale`` and shaved by
    ``scale`` px on each side, it keeps SSIM's 11x11 window (1 px for PSNR alone)."""
    need = (SSIM_WINDOW if ssim else 1) + 2 * scale
    return -(-need // scale) * scale


def check_size(path: str | Path, size: tuple[int, int], scale: int, ssim: bool = True, hint: bool = True) -> None:
    """Refuse a (width, height) picture too small to measure at ``scale`` (``PictureSizeError``; ``hint``: say
    the size PSNR alone needs)."""
    n = min_size(scale, ssim)
    w, h = size
    if min(w, h) < n:
        without = f" ({min_size(scale, False)}x{min_size(scale, False)} without SSIM)" if ssim and hint else ""
        raise PictureSizeError(f"{path} is {w}x{h} px, too small to measure at x{scale}: pictures need at least "
                               f"{n}x{n} px{without}")


def check_folder_sizes(folder: str | Path, scale: int, ssim: bool = True) -> None:
    """``check_size`` for every picture in ``folder``, from their headers: said before any model runs."""
    for path in list_images(folder):
        try:
            with Image.open(path) as im:
                size = im.size
        except Exception:  # noqa: BLE001 - a damaged picture is reported by name when it is read
            continue
        check_size(path, size, scale, ssim)

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
    """Mean PSNR-Y / SSIM-Y of ``fn`` over every image in ``folder``. Pictures too small to measure are the
    caller's to refuse, once and before any model runs (``check_folder_sizes``, ``check_size``: eval for every
    folder before its methods, training for its val folders when it starts), not again per method and per
    validation."""
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
    old = meta.get("validation", {})
    # per set: a run without SSIM (--no-ssim) keeps the SSIM recorded before (the same weights gave it)
    meta["validation"] = {**old, **{k: {**(old[k] if isinstance(old.get(k), dict) else {}), **v}
                                    for k, v in rows.items()}}
    tensors = load_file(str(path))
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})

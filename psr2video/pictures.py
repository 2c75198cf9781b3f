"""The one loader of still pictures: image folders and frames of a video, as PIL images, uint8 arrays or
float tensors.

Evaluation (PIL), training (uint8 arrays kept in memory), export verification and int8 calibration (float
tensors), the stress suite's real frames and the cards (float tensors) all read pictures through here, so
that "an image folder" and "RGB in [0, 1]" mean the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import PsrError, first_line
from .names import IMAGE_EXTS


class PictureFolderError(PsrError, FileNotFoundError):
    """An image folder that is missing or holds no pictures: one line for the user (still a
    FileNotFoundError for library callers)."""


class PictureReadError(PsrError, ValueError):
    """A picture file that can't be decoded (not an image, truncated, damaged): one line naming the file."""


def list_images(folders: str | Path | Sequence[str | Path], what: str = "image") -> list[Path]:
    """Every image under one folder or several (sorted per folder)."""
    folders = [folders] if isinstance(folders, str | Path) else list(folders)
    files: list[Path] = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise PictureFolderError(f"{what} folder not found: {folder}")
        files += sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise PictureFolderError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) in {', '.join(map(str, folders))}")
    return files


# Pillow's modes for 16-bit grey (PNG, TIFF; "I" is how older Pillows open a 16-bit PNG): its convert("RGB")
# clips them at 255, so a 16-bit picture read almost white everywhere; they are scaled here instead.
WIDE_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
WIDE_MAX = 65535.0


def _grey16(im: Image.Image) -> np.ndarray:
    """A 16-bit grey image as float64 HxW in [0, 1] (values above 65535 or below 0 in an "I" image clipped)."""
    return np.clip(np.asarray(im, dtype=np.float64) / WIDE_MAX, 0.0, 1.0)


def _open(path: str | Path, convert):
    """``convert(image)`` of a picture file, with the errors ``load_rgb`` promises."""
    try:
        with Image.open(path) as im:
            return convert(im)
    except UnidentifiedImageError:
        raise PictureReadError(f"can't read picture {path}: not an image file, or one Pillow can't decode") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        if isinstance(e, OSError) and e.errno is not None:  # the file system's error (permission, I/O): kept
            raise
        raise PictureReadError(f"can't read picture {path}: {first_line(e)}") from None


def _rgb8(im: Image.Image) -> Image.Image:
    if im.mode in WIDE_MODES:  # scaled to 8 bits (65535 -> 255), not clipped
        g = np.round(_grey16(im) * 255.0).astype(np.uint8)
        return Image.fromarray(g).convert("RGB")
    return im.convert("RGB")


def load_rgb(path: str | Path) -> Image.Image:
    """An image file as an RGB PIL image (palette, grey, 16-bit grey, CMYK and alpha images converted); a file
    that is not a picture Pillow can decode raises ``PictureReadError`` naming it (a missing or unreadable file
    keeps its OSError, which names it too)."""
    return _open(path, _rgb8)


def _float(im: Image.Image) -> torch.Tensor:
    if im.mode in WIDE_MODES:  # all 16 bits kept
        g = torch.from_numpy(_grey16(im).astype(np.float32))
        return g[None].expand(3, -1, -1).contiguous()
    return to_tensor(im)


def load_tensor(path: str | Path) -> torch.Tensor:
    """An image file as float 3xHxW in [0, 1]: ``load_rgb``'s picture, but a 16-bit grey one keeps its 16 bits
    (export verification, int8 calibration and the stress suite's extra frames take floats)."""
    return _open(path, _float)


def rgb_array(path: str | Path) -> np.ndarray:
    """An image file as uint8 HxWx3."""
    return np.asarray(load_rgb(path), dtype=np.uint8)


def to_tensor(img: Image.Image | np.ndarray) -> torch.Tensor:
    """A PIL image or uint8 HxWx3 array as float 3xHxW in [0, 1]."""
    a = np.asarray(img.convert("RGB") if isinstance(img, Image.Image) else img, dtype=np.float32) / 255.0
    return torch.from_numpy(a).permute(2, 0, 1).contiguous()


def image_tensors(folder: str | Path, limit: int | None = None) -> list[tuple[str, torch.Tensor]]:
    """(name, 1x3xHxW float tensor) for the images in ``folder``, sorted by name; [] for a folder without
    images (a missing folder raises FileNotFoundError)."""
    try:
        files = list_images(folder)
    except FileNotFoundError:
        if not Path(folder).is_dir():
            raise
        return []
    return [(p.name, load_tensor(p)[None]) for p in files[:limit]]


def video_frames(path: str | Path, count: int = 16, stride: int = 10, start: int = 0,
                 ) -> list[tuple[str, torch.Tensor]]:
    """Up to ``count`` RGB frames of a video (PyAV): frames ``start``, ``start + stride``, ... as
    (``name#index``, 1x3xHxW float tensor), converted as the video command reads them (``frame_rgb``)."""
    import av

    from .video.reader import frame_rgb

    out = []
    with av.open(str(path)) as c:
        for i, frame in enumerate(c.decode(c.streams.video[0])):
            if i < start or (i - start) % stride:
                continue
            out.append((f"{Path(path).name}#{i}", frame_rgb(frame)))
            if len(out) >= count:
                break
    return out


def frames_from(source: str | Path, count: int = 16) -> list[tuple[str, torch.Tensor]]:
    """Frames from a video file, an image folder or a single image (1x3xHxW float tensors); raises
    ValueError when there are none and FileNotFoundError when ``source`` does not exist."""
    p = Path(source)
    if p.is_dir():
        frames = image_tensors(p, count)
        if not frames:
            raise ValueError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) in {p}")
        return frames
    if not p.exists():
        raise FileNotFoundError(f"not found: {p}")
    if p.suffix.lower() in IMAGE_EXTS:
        return [(p.name, load_tensor(p)[None])]
    frames = video_frames(p, count)
    if not frames:
        raise ValueError(f"no video frames could be decoded from {p}")
    return frames

"""16-bit pictures read and written at 16 bits, through FFmpeg's PNG and TIFF codecs (PyAV).

Pillow reads a 16-bit RGB PNG or TIFF as 8-bit, and writes 16 bits only for grey, so a 16-bit photo (a scan,
a raw development, a render) would lose half its precision before the model saw it. FFmpeg's decoders give
the samples exactly and its encoders write them back. The model computes in floating point either way.

What FFmpeg's encoders don't write, Pillow does: a PNG's ICC profile, EXIF and DPI chunks are made by Pillow
(on a 1x1 picture with the same metadata) and put into the 16-bit file as they are. FFmpeg's TIFF encoder
has no place for an ICC profile or EXIF, so a 16-bit TIFF that carries either is written 8-bit, with its
metadata, and a note says why (colours read through the wrong profile would be worse than 8 bits).
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .video import sws

DEEP_OUT = frozenset({".png", ".tif", ".tiff"})  # where 16 bits can be written
# picture mode -> (what the array is read as, PNG's and TIFF's encoder format)
_FORMATS = {"RGB": ("rgb48le", "rgb48be", "rgb48le"), "RGBA": ("rgba64le", "rgba64be", "rgba64le"),
            "L": ("gray16le", "gray16be", "gray16le")}
# the chunks taken from Pillow's file (FFmpeg's own pHYs is replaced): ICC, EXIF, DPI, text, colour
_PNG_META = (b"iCCP", b"eXIf", b"pHYs", b"tEXt", b"zTXt", b"iTXt", b"gAMA", b"cHRM", b"sRGB")


class DeepWriteError(ValueError):
    """FFmpeg's encoder refused the picture (e.g. past its frame-size limit); the caller writes 8 bits."""


def read(path: Path) -> tuple[np.ndarray, str] | None:
    """The picture's samples as float32 HxWxC in [0, 1] and its mode (RGB, RGBA, L), read at 16 bits; None
    when FFmpeg can't decode it, it isn't deeper than 8 bits or it is an animation (the caller reads it with
    Pillow)."""
    import av
    from PIL import Image

    try:
        with Image.open(path) as im:
            if getattr(im, "is_animated", False):  # FFmpeg's first frame is not an APNG's default image
                return None
        frame = _first_frame(str(path))
        if frame is None and path.suffix.lower() == ".png":
            # FFmpeg refuses a PNG whose eXIf chunk starts with JPEG's "Exif\0\0" header (older writers put it
            # there; Pillow reads it): its samples read without that chunk (the EXIF comes from Pillow's reading)
            data = path.read_bytes()
            if data[:8] == b"\x89PNG\r\n\x1a\n":
                frame = _first_frame(io.BytesIO(data[:8] + b"".join(c for t, c in _chunks(data) if t != b"eXIf")))
        if frame is None:
            return None
    except (IndexError, ValueError, OSError):
        return None
    fmt = frame.format
    depth = max((c.bits for c in fmt.components), default=8)
    if depth <= 8 or depth > 16 or fmt.name.startswith(("yuv", "bayer")) or fmt.name.endswith(("f32le", "f32be",
                                                                                                "f16le", "f16be")):
        return None
    alpha = any(c.is_alpha for c in fmt.components)
    grey = not fmt.is_rgb and len([c for c in fmt.components if not c.is_alpha]) == 1
    if alpha and grey:  # 16-bit grey + alpha: rare; Pillow's 8-bit path keeps it grey
        return None
    mode = "RGBA" if alpha else "L" if grey else "RGB"
    try:
        a = sws.to_ndarray(frame, _FORMATS[mode][0])
    except (ValueError, av.error.FFmpegError):
        return None
    a = a.astype(np.float32) / 65535.0
    return (a[..., None] if a.ndim == 2 else a), mode


def _first_frame(src: Any) -> Any:
    """FFmpeg's first decoded frame of ``src`` (a path or a file object); None when it can't decode it."""
    import av

    try:
        with av.open(src) as c:
            return next(c.decode(video=0))
    except (av.error.FFmpegError, StopIteration, IndexError, ValueError, OSError):
        return None


def agrees(got: tuple[np.ndarray, str], im: Any, key_colour: bool = False) -> bool:
    """Whether FFmpeg's 16-bit samples are the picture Pillow read at 8 bits: same size and mode, and every
    sample within two 8-bit steps (the two round differently by one at most). FFmpeg's TIFF decoder reads some
    files wrong without an error (tiled ones as black, premultiplied alpha as straight, an unspecified extra
    sample as alpha); Pillow is then trusted. ``key_colour``: the alpha comes from a see-through colour (PNG's
    tRNS), which Pillow can't match against its 8-bit reading of a 16-bit key: FFmpeg's alpha is trusted and
    only the colours are compared."""
    a, mode = got
    b = np.asarray(im, dtype=np.float32)
    b = b[..., None] if b.ndim == 2 else b
    if a.shape[:2] != b.shape[:2]:
        return False
    if key_colour and mode == "RGBA" and im.mode in ("RGB", "RGBA"):
        a, b = a[..., :3], b[..., :3]
    elif mode != im.mode:
        return False
    elif mode == "RGBA":  # colour where it is seen: a transparent pixel's colour is anyone's
        if np.abs(a[..., 3] * 255.0 - b[..., 3]).max() > 2:
            return False
        seen = b[..., 3] > 0
        a, b = a[seen, :3], b[seen, :3]
    return not a.size or float(np.abs(a * 255.0 - b).max()) <= 2


def write(a: np.ndarray, mode: str, info: dict, dst: Path, tmp: Path) -> None:
    """Float HxWxC in [0, 1] written to ``tmp`` as a 16-bit PNG or TIFF (by ``dst``'s extension) with ``info``'s
    ICC profile, EXIF and DPI (PNG)."""
    import av

    ext = dst.suffix.lower()
    q = (np.clip(a, 0, 1) * 65535.0 + 0.5).astype(np.uint16)
    q = q[..., 0] if mode == "L" else q
    src_fmt, png_fmt, tiff_fmt = _FORMATS[mode]
    out_fmt = png_fmt if ext == ".png" else tiff_fmt
    try:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(q), format=src_fmt)
        if out_fmt != src_fmt:
            frame = sws.reformat(frame, format=out_fmt)
        cc = av.CodecContext.create("png" if ext == ".png" else "tiff", "w")
        cc.width, cc.height, cc.pix_fmt, cc.time_base = q.shape[1], q.shape[0], out_fmt, Fraction(1, 1)
        if ext != ".png" and info.get("dpi"):  # FFmpeg's TIFF encoder writes 72 dpi unless told
            cc.options = {"dpi": str(max(1, round(float(info["dpi"][0]))))}
        data = b"".join(bytes(p) for p in [*cc.encode(frame), *cc.encode(None)])
    except (ValueError, av.error.FFmpegError) as e:  # PyAV's ArgumentError is a ValueError
        raise DeepWriteError(str(e)) from None
    if ext == ".png":
        data = _with_png_metadata(data, info)
    tmp.write_bytes(data)


def tiff_metadata_problem(info: dict) -> str | None:
    """What a 16-bit TIFF from FFmpeg can't hold of ``info`` (None: nothing)."""
    lost = [what for key, what in (("icc_profile", "ICC profile"), ("exif", "EXIF")) if info.get(key)]
    if (info.get("extra") or {}).get("xmp"):
        lost.append("XMP")
    return " and ".join(lost) or None


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """A PNG's chunks as (type, the whole chunk: length, type, data, CRC)."""
    out, i = [], 8
    while i + 8 <= len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        out.append((data[i + 4:i + 8], data[i:i + 12 + n]))
        i += 12 + n
    return out


def _with_png_metadata(data: bytes, info: dict) -> bytes:
    """FFmpeg's PNG with Pillow's ICC, EXIF, DPI, text and colour chunks for ``info`` put in after the header."""
    from PIL import Image

    from . import picture_metadata

    opts = {k: info[k] for k in ("icc_profile", "exif", "dpi") if info.get(k)}
    opts.update(picture_metadata.save_options(info.get("extra") or {}, ".png", icc=bool(opts.get("icc_profile"))))
    meta = []
    if opts:
        buf = io.BytesIO()
        Image.new("RGB", (1, 1)).save(buf, format="PNG", **opts)
        meta = [c for t, c in _chunks(buf.getvalue()) if t in _PNG_META]
    parts = [data[:8]]
    for t, c in _chunks(data):
        if t in _PNG_META:
            continue  # FFmpeg's pHYs says only an unknown pixel aspect (0:1): Pillow's, where there is one
        parts.append(c)
        if t == b"IHDR":
            parts += meta
    return b"".join(parts)

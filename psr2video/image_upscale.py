"""Still pictures through the same Upscaler as video: ``psr2video in.png out.png`` and ``psr2video pics/ out/``.

A picture keeps what it holds: its alpha channel (upscaled with the MKS2021 resampler, the model's own base path:
a model made for RGB is no judge of transparency), grey stays grey, and its ICC profile, EXIF and DPI are written
again (a TIFF's EXIF from its own tags). Lossless formats (PNG, TIFF with its source's compression, BMP, TGA) stay
lossless, and so does a lossless WebP; JPEG (also .jfif, .jpe), WebP and AVIF are written at quality 95 (JPEG and
AVIF without chroma subsampling). Every file is written under a temporary name and renamed when complete, as
videos are.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from struct import error as struct_error
from typing import Any

from . import picture_metadata
from .animation import (
    ANIMATED_FORMATS,
    ANIMATION_EXTS,
    FROM_VIDEO_EXTS,
    PIL_DAMAGE,
    QUALITY,
    AnimationError,
    frame_count,
    n_frames,
    read_video,
    upscale_animation,
    webp_lossless,
    webp_options,
)
from .errors import PsrError, first_line
from .fileio import atomic_path, visible_files
from .names import JPEG_ALIASES, PICTURE_EXTS
from .output_size import SizeError, SizeSpec, check_format, resample

# the 8-bit modes a picture is read in: with alpha, grey, or colour
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_GREY_MODES = {"L", "1", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_DEEP_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


# a picture larger than this runs in tiles on the CPU unless --tile says otherwise: a 3-megapixel photo took
# 6.4 GB through stream x2 whole (a 12-megapixel one would not fit in 24 GB); tiles give the same result
AUTO_TILE_PIXELS = 2048 * 2048
AUTO_TILE = 1024


class PictureError(PsrError):
    """A picture that can't be read or written (named with the user's path)."""


def is_picture(path: str) -> bool:
    """Whether OUT's name asks for a picture (by its extension)."""
    return path != "-" and Path(path).suffix.lower() in PICTURE_EXTS


def readable_picture(path: str) -> bool:
    """Whether IN is a picture PIL can read (also GIF, ICO, PPM... that are never written)."""
    from PIL import Image

    try:
        with Image.open(path):
            return True
    except PIL_DAMAGE:  # (UnidentifiedImageError is an OSError)
        return False


@dataclass(frozen=True)
class Job:
    src: Path
    dst: Path


def plan(input: str, output: str, files: list[Path] | None = None) -> list[Job]:
    """The pictures to write: one file to one file, or every picture of a folder's ``files`` (its visible files,
    ``fileio.walk``'s; walked here when not given) into an output folder, under the same names and sub-folders
    (none: an empty list). Refuses, before anything loads, what can't work for pictures: OUT = IN, a missing
    folder, a folder OUT for one picture, a file OUT for a folder. What every folder run checks (OUT inside IN,
    an OUT that is an input, OUTs that exist: -y, --skip-existing) is the caller's (``commands.folder``)."""
    src, dst = Path(input), Path(output)
    if src.is_dir():
        if (dst.exists() and not dst.is_dir()) or dst.suffix.lower() in PICTURE_EXTS:
            raise PictureError(f"IN is a folder of pictures, so OUT must be a folder too: {output} is a file name")
        files = visible_files(src) if files is None else files  # not ._x.jpg, .git/
        return [Job(p, dst / p.relative_to(src)) for p in files if p.suffix.lower() in PICTURE_EXTS]
    if not dst.parent.exists():
        raise PictureError(f"can't write {output}: folder {dst.parent} does not exist")
    if dst.exists() and dst.resolve() == src.resolve():
        raise PictureError("OUT is the same file as IN")
    if dst.is_dir():  # before "exists; use -y", which -y could not cure
        raise PictureError(f"{output} is a folder, not an output file; name the file, e.g. {dst / src.name}")
    return [Job(src, dst)]


def _read(path: Path) -> tuple[Any, dict, list[str], bool]:
    """The picture as a PIL image in an 8-bit mode (RGB, RGBA, L or LA), its metadata (``info``: ICC profile,
    EXIF, DPI), the notes on what reading it changed, and whether its samples are deeper than 8 bits (then
    the caller reads them again at 16 bits where it can, or says they were written 8-bit)."""
    from PIL import Image

    notes: list[str] = []
    try:
        try:
            im = Image.open(path)
        except PIL_DAMAGE:  # a PNG whose text (or other optional) chunk is damaged: read without that chunk
            if (im := _png_without_bad_chunks(path, notes)) is None:
                raise
        raw = im.tile[0][3] if getattr(im, "tile", None) else ""  # the stored layout (gone after load)
        stored = int(im.tag_v2.get(0x0112, 1)) if im.format == "TIFF" else 1  # (TIFF's Orientation tag)
        im.load()
    except PIL_DAMAGE as e:
        raise PictureError(f"not a readable picture: {path} ({e})") from None
    info = dict(im.info)
    if im.format == "TIFF":
        # Pillow turns a TIFF as its Orientation tag says while loading it (and drops the tag): FFmpeg's reading
        # of the same file (16 bits) is turned to match; the EXIF written says nothing of it (not turned twice)
        if stored in range(2, 9) and 0x0112 not in im.tag_v2:
            info["tiff_turned"] = stored
        if not info.get("exif") and (exif := _tiff_exif(im)) is not None:
            info["exif"], info["tiff_exif"] = exif, True
        info["tiff_compression"] = str(info.get("compression") or "raw")  # kept where it is lossless
    while isinstance(info.get("exif"), bytes) and info["exif"][:12] == b"Exif\x00\x00" * 2:
        # a PNG eXIf chunk holding JPEG's header too (older writers), which Pillow prefixes again: written back
        # as it is, FFmpeg (and so a 16-bit reading of the output) refuses the file
        info["exif"] = info["exif"][6:]
    if info.get("dpi") and max(info["dpi"]) < 2:  # Pillow's 1 dpi for a TIFF that says none: not carried
        info.pop("dpi")
    info["extra"] = picture_metadata.read(im)  # text chunks, a comment, PNG's colour chunks
    if im.format == "WEBP" and webp_lossless(path):
        info["lossless"] = True  # written lossless again into .webp (not at quality 95)
    deep = im.mode in _DEEP_MODES or ";16" in str(raw) or ";12" in str(raw)
    frames = n_frames(im)
    animated = getattr(im, "is_animated", False) and im.format in ANIMATED_FORMATS
    planar = _planar_deep_tiff(im)
    if planar:  # Pillow reads each 16-bit plane's low bytes as 8-bit samples: noise, no error
        im, deep = _planar_from_ffmpeg(path, im, planar, info.get("tiff_turned", 1)), True
    if im.mode == "RGBA" and str(raw).startswith("LA;16"):  # Pillow reads 16-bit grey + alpha as 8-bit RGBA:
        im = im.convert("LA")  # kept grey (R = G = B: nothing lost), as an 8-bit grey + alpha picture is
    plain = im.mode in ("RGB", "RGBA", "L") or im.mode.startswith("I;16")  # no colour conversion below
    if animated:
        notes.append(f"note: {path.name} is an animation of {frames} frames; only the first is upscaled "
                     "(write .gif, .webp or .png, or a video file, to keep them all)")
    elif frames > 1:
        notes.append(f"note: {path.name} holds {frames} pictures; only the first is upscaled")
    if im.mode in ("CMYK", "LAB") and info.get("icc_profile"):
        im = _to_srgb(im, info, path.name, notes)
    key = "transparency" in im.info and not deep  # tRNS: a colour that is see-through (at 16 bits: FFmpeg's)
    if im.mode == "P" or (im.mode == "RGB" and key):
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode == "L" and key:
        im = im.convert("LA")
    elif im.mode == "1":
        im = im.convert("L")
    elif im.mode in _DEEP_MODES:  # 16-bit / 32-bit grey: scaled to 8 bits, not clipped
        import numpy as np

        a = np.asarray(im, dtype=np.float64)
        if im.mode == "F":
            top = max(1.0, float(a.max()))
        elif ";12" in str(raw):  # 12-bit TIFF samples (Pillow's mode says I;16)
            top = 4095.0
        elif im.mode.startswith("I;16") or ";16" in str(raw):
            top = 65535.0  # the format's range, not the picture's brightest value (a dark picture stays dark)
        elif a.min() >= 0 and a.max() <= 255:
            # 32-bit integers all within 0-255: 8-bit values in a wide container (Pillow's own mode "I"
            # saves an 8-bit picture so); read at their 8-bit range, said (the full 32-bit range would be black)
            top = 255.0
            notes.append(f"note: {path.name} holds 32-bit integer samples, all within 0-255: read as 8-bit values")
        elif a.max() <= 65535:
            top = 65535.0  # 16-bit values in a 32-bit container: the 16-bit range (a dark picture stays dark)
        else:
            top = float(a.max())
        grey = Image.fromarray(np.clip(np.rint(a / top * 255.0), 0, 255).astype(np.uint8), "L")
        see = im.info.get("transparency")  # a 16-bit grey PNG's see-through value (tRNS): lost without a word
        im = grey if not isinstance(see, int) else Image.merge(
            "LA", (grey, Image.fromarray(np.where(a == see, 0, 255).astype(np.uint8), "L")))
    elif im.mode not in ("RGB", "RGBA", "L", "LA"):  # CMYK without a profile, YCbCr, premultiplied: as RGB(A)
        im = im.convert("RGBA" if im.mode in _ALPHA_MODES else "RGB")
    icc = info.get("icc_profile")
    space = bytes(icc[16:20]) if icc and len(icc) >= 20 else None
    if space is not None and space != (b"GRAY" if im.mode in ("L", "LA") else b"RGB "):
        del info["icc_profile"]  # a CMYK/Lab profile on RGB pixels makes an invalid file
        notes.append(f"note: {path.name}'s ICC profile ({space.decode('latin-1').strip()}) does not describe the "
                     f"{im.mode} picture written; left out")
    if deep and not plain:
        why = " (16-bit grey with alpha is read at 8 bits here)" if im.mode == "LA" else ""
        notes.append(f"note: {path.name} has more than 8 bits per sample; written 8-bit{why}")
    return im, info, notes, deep and plain


# the TIFF tags that are EXIF's (its IFD0 is a TIFF IFD): what the picture is and who made it, with the Exif and GPS
# sub-IFDs; not the tags that describe the stored pixels (size, strips, compression), which the writer makes, nor
# Software (the program that wrote this file)
_TIFF_EXIF_TAGS = (0x010E, 0x010F, 0x0110, 0x0132, 0x013B, 0x8298)  # description, make, model, date, artist, (c)
_TIFF_SUB_IFDS = (0x8769, 0x8825)  # Exif, GPS


def _png_without_bad_chunks(path: Path, notes: list[str]) -> Any:
    """The PNG at ``path`` opened without its ancillary chunks (text, colour, EXIF: those a reader may skip) whose
    checksum is wrong, which Pillow refuses the whole file for ("cannot identify image file"), named in
    ``notes``; None when it is not a PNG or none is wrong (then its damage is elsewhere: refused)."""
    import io
    import zlib

    from PIL import Image

    try:
        data = path.read_bytes()
    except OSError:
        return None
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    kept, dropped, i = [data[:8]], [], 8
    while i + 12 <= len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        kind, chunk = data[i + 4:i + 8], data[i:i + 12 + n]
        crc = int.from_bytes(data[i + 8 + n:i + 12 + n], "big")
        if kind[:1].islower() and len(chunk) == 12 + n and zlib.crc32(data[i + 4:i + 8 + n]) != crc:
            dropped.append(kind.decode("latin-1"))  # ancillary (lower-case first letter) and damaged
        else:
            kept.append(chunk)
        i += 12 + n
    kept.append(data[i:])
    if not dropped:
        return None
    im = Image.open(io.BytesIO(b"".join(kept)))
    notes.append(f"note: {path.name} has {len(dropped)} damaged chunk{'s' if len(dropped) > 1 else ''} "
                 f"({', '.join(sorted(set(dropped)))}; wrong checksum) that a reader may skip; read without "
                 f"{'them' if len(dropped) > 1 else 'it'}")
    return im


def _tiff_exif(im: Any) -> bytes | None:
    """The EXIF a TIFF holds as its own tags (Pillow gives a TIFF no ``exif`` in ``info``), as an EXIF block;
    None when it holds none of them."""
    from PIL import Image

    try:
        tags = im.getexif()
        out = Image.Exif()
        for tag in _TIFF_EXIF_TAGS:
            if tags.get(tag) not in (None, "", b""):
                out[tag] = tags[tag]
        if tags.get(0x0112, 1) != 1:  # still there: a Pillow that does not turn a TIFF as it loads it
            out[0x0112] = tags[0x0112]
        for ifd in _TIFF_SUB_IFDS:
            if ifd in tags and (sub := tags.get_ifd(ifd)):
                out.get_ifd(ifd).update(sub)
        return out.tobytes() if len(out) or any(out.get_ifd(i) for i in _TIFF_SUB_IFDS) else None
    except (KeyError, TypeError, ValueError, OSError, SyntaxError, struct_error):
        return None


def turn_array(a: Any, orientation: int) -> Any:
    """HxWxC ``a`` turned as EXIF ``orientation`` says it is shown (as Pillow's ``ImageOps.exif_transpose``)."""
    import numpy as np

    turns = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1], 5: lambda a: a.swapaxes(0, 1),
             6: lambda a: np.rot90(a, -1), 7: lambda a: a.swapaxes(0, 1)[::-1, ::-1], 8: lambda a: np.rot90(a)}
    return np.ascontiguousarray(turns[orientation](a)) if orientation in turns else a


def _planar_deep_tiff(im: Any) -> int:
    """The bits per sample of a TIFF whose several samples per pixel are stored plane by plane
    (PlanarConfiguration 2) at more than 8 bits, else 0: Pillow reads it without an error as the wrong bytes (a
    16-bit gradient came back as noise). One sample per pixel (grey) is stored alike either way: Pillow's."""
    if im.format != "TIFF":
        return 0
    tags = getattr(im, "tag_v2", {})
    bits = tags.get(258, (8,))
    bits = bits if isinstance(bits, tuple) else (bits,)
    deep = max(bits, default=8)
    return deep if tags.get(284) == 2 and int(tags.get(277, 1)) > 1 and deep > 8 else 0


def _planar_from_ffmpeg(path: Path, im: Any, bits: int, turned: int = 1) -> Any:
    """The planar deep TIFF ``im`` as FFmpeg's TIFF decoder reads it (it takes planar samples), turned as Pillow
    turned ``im`` (``turned``: its Orientation tag), at 8 bits for the caller's 8-bit path; its 16-bit samples
    are read again there. Refused when FFmpeg can't read it either: Pillow's reading is not the picture."""
    import numpy as np
    from PIL import Image

    from . import deep_pictures

    got = deep_pictures.read(path)
    if got is not None:
        got = turn_array(got[0], turned), got[1]
    if got is None or got[0].shape[:2] != (im.height, im.width):
        raise PictureError(f"can't read {path}: a TIFF with {bits}-bit samples stored plane by plane that "
                           "FFmpeg's decoder can't read either (Pillow reads such files wrong); save it interleaved "
                           "(contiguous) and try again")
    a, mode = got
    a8 = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(a8[..., 0] if mode == "L" else a8, mode)


def _to_srgb(im: Any, info: dict, name: str, notes: list[str]) -> Any:
    """A CMYK or Lab picture converted to sRGB through its own ICC profile (colour-managed, as a viewer shows it),
    the output tagged sRGB; without a usable profile the caller's plain conversion runs."""
    import io

    from PIL import ImageCms

    try:
        srgb = ImageCms.createProfile("sRGB")
        out = ImageCms.profileToProfile(im, ImageCms.ImageCmsProfile(io.BytesIO(info["icc_profile"])), srgb,
                                        outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return im
    info["icc_profile"] = ImageCms.ImageCmsProfile(srgb).tobytes()
    notes.append(f"note: {name} is {im.mode}: converted to sRGB through its ICC profile")
    return out


def _tensor(im: Any) -> Any:
    import numpy as np
    import torch

    a = np.asarray(im, dtype=np.float32) / 255.0
    a = a[..., None] if a.ndim == 2 else a
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]


def _image(t: Any, mode: str) -> Any:
    import numpy as np
    from PIL import Image

    a = (t[0].permute(1, 2, 0).float().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(a[..., 0] if a.shape[2] == 1 else a, mode)


@dataclass(frozen=True)
class Deep:
    """An upscaled picture at more than 8 bits: float HxWxC in [0, 1] and its mode (RGB, RGBA, L)."""

    array: Any
    mode: str

    @property
    def width(self) -> int:
        return self.array.shape[1]

    @property
    def height(self) -> int:
        return self.array.shape[0]


def upscale_picture(up: Any, src: Path, out_ext: str = ".png", size: SizeSpec | None = None
                    ) -> tuple[Any, dict, list[str]]:
    """``src`` upscaled by ``up`` (an Upscaler), its metadata and the notes. The picture comes back as a PIL
    image in its own mode, or as ``Deep`` when it has 16-bit samples and ``out_ext`` can hold them. ``size``:
    resampled to fit that box as the picture is shown (its EXIF orientation applied)."""
    from . import deep_pictures

    im, info, notes, deep = _read(src)
    if out_ext in NO_EXIF and _exif_orientation(im) != 1:  # shown turned, and OUT can't say so: turned here
        from PIL import ImageOps

        im, deep = ImageOps.exif_transpose(im), False  # (8-bit OUT: the 16-bit reading buys nothing here)
        notes.append(f"note: {src.name} is shown turned (EXIF orientation), which {out_ext} can't say: its pixels "
                     "are turned instead")
    to = None
    if size is not None:
        turned = _exif_orientation(im) in (5, 6, 7, 8)  # stored on its side: the box is turned to match
        to = size.fit(im.width, im.height, rotation=90 if turned else 0)
    check_format(*(to or (im.width * up.scale, im.height * up.scale)), out_ext)
    if deep:
        # FFmpeg's exact samples wherever they are the picture Pillow reads, for 8-bit outputs too (one rounding,
        # and a 16-bit PNG's see-through colour, which Pillow misses)
        got = deep_pictures.read(src)
        if got is not None and info.get("tiff_turned"):  # Pillow turned it as its Orientation tag says
            got = turn_array(got[0], info["tiff_turned"]), got[1]
        agree = got is not None and deep_pictures.agrees(got, im, key_colour="transparency" in info)
        tif = out_ext in (".tif", ".tiff")
        # a TIFF's own EXIF tags (camera, date) don't cost its 16 bits: left out of a 16-bit TIFF, said
        lost = deep_pictures.tiff_metadata_problem(
            {k: v for k, v in info.items() if not (k == "exif" and info.get("tiff_exif"))}) if tif else None
        why = ""
        if got is None:  # FFmpeg refuses the file
            why = " (FFmpeg's 16-bit decoder can't read it; Pillow's 8-bit reading is used)"
        elif not agree:  # a tiled or premultiplied TIFF FFmpeg reads wrong: Pillow's reading
            why = " (FFmpeg's 16-bit decoder and Pillow disagree on its samples; Pillow's 8-bit reading is used)"
        elif agree and lost:
            why = f" (a 16-bit TIFF from here can't hold its {lost}; use .png to keep 16 bits and the {lost})"
        if not agree:
            notes.append(f"note: {src.name} has more than 8 bits per sample; written 8-bit{why}")
            return upscale_image(up, im, src.name, notes, to), info, notes
        import numpy as np
        import torch

        a, mode = got
        y = upscale_tensor(up, torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None], mode, src.name,
                           notes, to)
        if out_ext in deep_pictures.DEEP_OUT and not lost:
            if tif and info.get("tiff_exif"):
                notes.append(f"note: {src.name}'s EXIF (camera, date) can't be held in a 16-bit TIFF written here; "
                             "left out (.png keeps 16 bits and the EXIF)")
            return Deep(y[0].permute(1, 2, 0).numpy(), mode), info, notes
        notes.append(f"note: {src.name} has more than 8 bits per sample; written 8-bit{why}")
        return _image(y, mode), info, notes
    return upscale_image(up, im, src.name, notes, to), info, notes


def upscale_grab(up: Any, src: Path, out_ext: str, trim: Any, size: SizeSpec | None = None) -> tuple[Any, list[str]]:
    """The frame of the video ``src`` on screen at ``trim.start`` (a frame grab) upscaled as a still picture is:
    turned as its display matrix says, its pixels made square (a picture can't say its pixel shape), at 16 bits
    (``Deep``) where the video has more than 8 and ``out_ext`` holds them; (the picture, the notes)."""
    from . import deep_pictures

    notes: list[str] = []
    anim = read_video(src, up.scale, notes, max_frames=1, trim=trim, grab=True,
                      deep=out_ext in deep_pictures.DEEP_OUT)
    frame, to = anim.frames[0], None
    if size is not None:
        to = size.fit(frame.width, frame.height, anim.sar)
    elif anim.sar != 1:
        to = (max(1, round(frame.width * up.scale * anim.sar)), frame.height * up.scale)
        notes.append(f"note: {src.name} has non-square pixels (SAR {anim.sar.numerator}:{anim.sar.denominator}); "
                     f"the frame is resampled to {to[0]}x{to[1]} square pixels (Lanczos), as a picture can't say "
                     "its pixel shape")
    check_format(*(to or (frame.width * up.scale, frame.height * up.scale)), out_ext)
    deep = anim.info.get("deep")
    if deep is None:
        return upscale_image(up, frame, src.name, notes, to), notes
    import torch

    y = upscale_tensor(up, torch.from_numpy(deep).permute(2, 0, 1)[None], "RGB", src.name, notes, to)
    return Deep(y[0].permute(1, 2, 0).numpy(), "RGB"), notes


def _exif_orientation(im: Any) -> int:
    """The EXIF orientation tag (1 = as stored; 5-8 = turned a quarter), which the written EXIF keeps."""
    try:
        return int(im.getexif().get(0x0112, 1))
    except (TypeError, ValueError, OSError):
        return 1


def upscale_image(up: Any, im: Any, name: str, notes: list[str], to: tuple[int, int] | None = None) -> Any:
    """A PIL image in RGB, RGBA, L or LA upscaled by ``up``, in the same mode (alpha by MKS2021, grey kept grey);
    a large picture on the CPU runs in tiles, said in ``notes``. Stills and every frame of an animation come
    through here. ``to``: (width, height) the result is resampled to (--size)."""
    return _image(upscale_tensor(up, _tensor(im), im.mode, name, notes, to), im.mode)


def upscale_tensor(up: Any, x: Any, mode: str, name: str, notes: list[str], to: tuple[int, int] | None = None
                   ) -> Any:
    """1xCxHxW float in [0, 1] (C: 3 or 4 for RGB(A), 1 or 2 for L(A)) upscaled by ``up``, clamped to [0, 1];
    resampled to ``to`` = (width, height) when given (--size)."""
    import torch

    from .models.magic import MagicKernelSharp2021

    colour = x[:, :3] if x.shape[1] >= 3 else x[:, :1].expand(-1, 3, -1, -1)
    d, tile = up.descriptor, up.tile
    h, w = x.shape[-2:]
    # a model that looks at the whole frame (pro: global pooling) is tiled too: whole, a large picture needs tens
    # of GB on the CPU (2048x2048 pro: ~58 GB, estimated); its tiles only approximate the whole picture, which the
    # note says
    if (not tile and str(up.device) == "cpu" and w * h > AUTO_TILE_PIXELS
            and d.tiling in ("supported", "discouraged") and not d.fixed_size):
        up.tile = AUTO_TILE
        same = ("the same result in bounded memory" if d.tiling == "supported" else
                f"bounded memory; {d.variant} looks at the whole picture, which the tiles only approximate")
        note = f"note: {name} ({w}x{h}) is upscaled in {AUTO_TILE}-px tiles on the CPU ({same}; --tile to choose)"
        if note not in notes:
            notes.append(note)
    with torch.inference_mode():
        try:
            y = up(colour.to(up.device)).cpu()
        finally:
            up.tile = tile
        if mode in ("L", "LA"):  # grey in, grey out (the model sees three equal channels)
            y = (0.299 * y[:, :1] + 0.587 * y[:, 1:2] + 0.114 * y[:, 2:3])
        if mode in ("RGBA", "LA"):
            alpha = x[:, -1:]
            if alpha.min() < 1:  # the resampler takes RGB: alpha in all three channels, one kept
                a = MagicKernelSharp2021(up.scale)(alpha.expand(-1, 3, -1, -1).contiguous())[:, :1]
                y = _unbleed(up, colour * alpha, y, a.clamp(0, 1), mode)
            else:  # opaque everywhere: stays opaque (no ringing at the edges)
                a = torch.ones_like(y[:, :1])
            y = torch.cat([y, a], 1)
        y = y.float().clamp(0, 1)
        if to is not None and to != (w * up.scale, h * up.scale):
            y = resample(y, to[1], to[0])
            if to[0] > w * up.scale or to[1] > h * up.scale:
                note = (f"note: {name}: the model makes {w * up.scale}x{h * up.scale}; the rest of the way to "
                        f"{to[0]}x{to[1]} (--size) is Lanczos interpolation, which adds no detail")
                if note not in notes:
                    notes.append(note)
    return y


def _unbleed(up: Any, premultiplied: Any, straight: Any, alpha: Any, mode: str) -> Any:
    """The colour of see-through pictures' visible pixels from the premultiplied upscale: upscaled as stored,
    the colour hidden under alpha 0 (black, mostly) bled into the edge (a white sticker's edge pixel at alpha 0.8
    came out 205, not 255: a dark fringe). Where the output alpha is 0.5 or more the premultiplied colour is used
    (divided by at most 2), fading to the straight upscale at alpha 0, which keeps the hidden colour (a game
    texture's RGB under its mask) as it was."""
    import torch

    y = up(premultiplied.to(up.device)).cpu()
    if mode == "LA":
        y = 0.299 * y[:, :1] + 0.587 * y[:, 1:2] + 0.114 * y[:, 2:3]
    unmul = (y / alpha.clamp_min(1 / 255)).clamp(0, 1)
    w = (alpha * 2).clamp(0, 1)
    return torch.lerp(straight.float(), unmul.float(), w.float())


def _save(im: Any, src_info: dict, dst: Path, quality: int | None = None) -> str | None:
    """Write ``im`` (a PIL image, or ``Deep``) to ``dst`` under a temporary name, with the source's ICC profile,
    EXIF and DPI (``quality``: a JPEG's, WebP's or AVIF's, --quality); a note when it could not be written as it
    is."""
    ext = kind(dst.suffix)
    if src_info.get("exif"):  # its PixelX/YDimension say the size written, not the source's
        src_info = {**src_info, "exif": picture_metadata.exif_with_size(src_info["exif"], im.width, im.height)}
    if isinstance(im, Deep):
        from . import deep_pictures

        try:
            with atomic_path(dst) as tmp:
                deep_pictures.write(im.array, im.mode, src_info, dst, tmp)
            return None
        except OSError as e:
            raise PictureError(f"can't write {dst}: {e.strerror or e}") from None
        except deep_pictures.DeepWriteError as e:  # e.g. past FFmpeg's frame-size limit: 8 bits, said
            import torch

            im = _image(torch.from_numpy(im.array).permute(2, 0, 1)[None], im.mode)
            _save(im, src_info, dst)
            return f"note: {dst.name} is written 8-bit: FFmpeg's encoder refused the 16-bit picture ({e})"
    opts: dict[str, Any] = {}
    for key in ("icc_profile", "exif", "dpi"):
        if src_info.get(key):
            opts[key] = src_info[key]
    if ext in NO_ALPHA and im.mode in ("RGBA", "LA"):  # said by the caller
        im = on_white(im)
    if ext in JPEG_EXTS:
        opts.update(quality=quality or QUALITY, subsampling=0)
        if opts.get("exif") and not opts["exif"].startswith(b"Exif\x00\x00"):
            # WebP (and PNG) hold the bare TIFF block; JPEG's APP1 needs its header, or readers ignore it all
            opts["exif"] = b"Exif\x00\x00" + opts["exif"]
    elif ext == ".webp":
        opts.update(webp_options(bool(src_info.get("lossless")), quality))
    elif ext == ".avif":
        opts.update(quality=quality or QUALITY, subsampling="4:4:4")  # as JPEG: no chroma subsampling
        _check_avif(dst)
    elif ext in NO_EXIF:  # they hold neither (said by the caller)
        opts.pop("exif", None)
        opts.pop("icc_profile", None)
        if ext == ".tga" and src_info.get("compression") == "tga_rle":  # run-length coded, as the source was
            opts["compression"] = "tga_rle"
    extra = src_info.get("extra") or {}
    if ext == ".gif":  # 256 colours, chosen as for an animation's frames
        from .animation import Animation, gif_frames, write

        im = im.convert("RGBA" if im.mode in ("RGBA", "LA") else "RGB")
        write(gif_frames([im]), Animation([im], [0.0], 1, picture_metadata.save_options(extra, ext)), dst)
        return
    opts.update(picture_metadata.save_options(extra, ext, icc=bool(opts.get("icc_profile"))))
    if ext in (".tif", ".tiff"):
        if extra.get("xmp"):
            opts["exif"] = picture_metadata.tiff_exif(opts.get("exif"), extra)
        if (how := _tiff_compression(src_info.get("tiff_compression"))) is not None:
            opts["compression"] = how
    note = _jpeg_oversize(opts, dst) if ext in JPEG_EXTS else None
    try:
        with atomic_path(dst) as tmp:
            im.save(tmp, format=_FORMATS[ext], **opts)
    except OSError as e:
        raise PictureError(f"can't write {dst}: {e.strerror or e}") from None
    except ValueError as e:  # Pillow's refusals of what it was given (a block too long, a mode it can't write)
        raise PictureError(f"can't write {dst}: {first_line(e)}") from None
    return note


# a JPEG segment holds 65533 bytes after its length; XMP's APP1 spends 29 of them on its name (Pillow refuses a
# longer block with a ValueError; ICC profiles are split over several segments by Pillow, so any size fits)
_JPEG_SEGMENT = 65533
_JPEG_BLOCKS = (("exif", "EXIF", 0), ("xmp", "XMP", 29), ("comment", "comment", 0))


def _jpeg_oversize(opts: dict[str, Any], dst: Path) -> str | None:
    """The EXIF, XMP or comment in ``opts`` too long for one JPEG segment, taken out of ``opts``; a note naming
    each and its size (None: all fit)."""
    left = []
    for key, what, overhead in _JPEG_BLOCKS:
        block = opts.get(key)
        if block is None:
            continue
        n = len(block.tobytes() if hasattr(block, "tobytes") else block)
        if n > _JPEG_SEGMENT - overhead:
            del opts[key]
            left.append(f"{what} ({n / 1024:.0f} KB)")
    if not left:
        return None
    return (f"note: {dst.name}: the {' and the '.join(left)} {'is' if len(left) == 1 else 'are'} longer than a JPEG "
            "segment holds (64 KB); left out (.png keeps " + ("it)" if len(left) == 1 else "them)"))


JPEG_EXTS = (".jpg", ".jpeg")
NO_EXIF = (".bmp", ".gif", ".tga")  # they hold no EXIF (nor an ICC profile)
NO_DPI = (".webp", ".gif", ".avif", ".tga")  # they hold no resolution (as animations: animation._lost_metadata)
NO_ALPHA = (".jpg", ".jpeg", ".bmp")  # BMP's 32-bit form has an alpha readers ignore (Pillow reads it as RGB)
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF",
            ".bmp": "BMP", ".gif": "GIF", ".avif": "AVIF", ".tga": "TGA"}


def kind(ext: str) -> str:
    """OUT's extension as this module knows its format (.jfif and .jpe are .jpg)."""
    ext = ext.lower()
    return JPEG_ALIASES.get(ext, ext)


def avif_problem(output: str) -> str | None:
    """Why ``output`` (an .avif OUT) can't be written here, or None: this Pillow has no AVIF codec."""
    from PIL import features

    if Path(output).suffix.lower() != ".avif" or features.check("avif"):
        return None
    return (f"can't write {output}: this Pillow was built without AVIF (libavif); write .png (lossless) or .webp "
            "instead")


# the TIFF compressions kept from a TIFF source (lossless, and Pillow writes them for any picture written here);
# another (JPEG's lossy one, a 1-bit scan's CCITT Group 3/4, which can't hold the upscale's greys) is Deflate's
_TIFF_KEPT = ("raw", "tiff_lzw", "tiff_adobe_deflate", "tiff_deflate", "packbits")


def _tiff_compression(source: str | None) -> str | None:
    """The compression a TIFF is written with: its TIFF source's (see ``_TIFF_KEPT``), else Deflate; None (Pillow's
    default: none) when the source was not a TIFF."""
    if source is None:
        return None
    return source if source in _TIFF_KEPT else "tiff_adobe_deflate"


def on_white(im: Any) -> Any:
    """An RGBA or LA picture laid on white (for a format without alpha): a see-through pixel shows as a viewer
    shows it on a page, not as the colour stored under it (often black)."""
    from PIL import Image

    mode = "RGB" if im.mode == "RGBA" else "L"
    out = Image.new(mode, im.size, (255, 255, 255) if mode == "RGB" else 255)
    out.paste(im.convert(mode), mask=im.getchannel("A"))
    return out


def _check_avif(dst: Path) -> None:
    if (problem := avif_problem(str(dst))) is not None:
        raise PictureError(problem)


def run(up: Any, jobs: list[Job], say: Callable[[str], None], quiet: bool = False,
        max_frames: int = 0, size: SizeSpec | None = None, failed: list[str] | None = None,
        trim: Any = None, quality: int | None = None) -> tuple[int, int, float]:
    """Upscale every job's picture with ``up`` (a video into an animation: its first ``max_frames``, 0 = all, of
    the part ``trim`` (--start/--end) when given; a video into a still picture: its frame at ``trim.start``;
    ``size``: each resampled to fit that box; ``quality``: JPEG's, WebP's and AVIF's, --quality); (files written,
    frames upscaled, seconds). A picture that can't
    be read is skipped, and the run raises at the end, unless ``failed`` is given: then each is added there
    ("path: why") and the run returns."""
    t0 = time.perf_counter()
    unreadable: list[str] = []  # what went wrong, per picture not written
    frames = 0

    def skip(e: Exception, job: Job) -> None:
        """A picture not written: raised for one file; in a folder it is named and the others go on."""
        if isinstance(e, SizeError) or str(job.src) not in str(e):  # the others name the file already
            e = PictureError(f"{job.src}: {e}")
        if failed is not None:
            failed.append(str(e))
        elif len(jobs) == 1:
            raise PictureError(str(e)) from None
        say(f"warning: {e}; skipped")
        unreadable.append(str(e))

    for i, job in enumerate(jobs, 1):
        try:
            # a video file (by name and content) into .gif/.webp: an animation
            ext = job.dst.suffix.lower()
            video = ext in FROM_VIDEO_EXTS and not is_picture(str(job.src)) and not readable_picture(str(job.src))
            if video or (ext in ANIMATION_EXTS and frame_count(job.src) > 1):
                notes, n_frames = upscale_animation(up, job.src, job.dst, upscale_image, say, quiet,
                                                     video=video, max_frames=max_frames, size=size, trim=trim,
                                                     quality=quality)
                frames += n_frames
                for n in notes:
                    say(n)
                if not quiet and len(jobs) > 1:
                    say(f"[{i}/{len(jobs)}] {job.src} -> {job.dst} (animation)")
                continue
            ext = kind(ext)  # (.jfif, .jpe: JPEG)
            if trim is not None and not is_picture(str(job.src)) and not readable_picture(str(job.src)):
                out, notes = upscale_grab(up, job.src, ext, trim, size)  # the frame at --start
                info: dict = {}
            else:
                out, info, notes = upscale_picture(up, job.src, ext, size)
        except (PictureError, AnimationError, SizeError) as e:  # unreadable, broken, a --size it can't take
            skip(e, job)
            continue
        see_through = (not isinstance(out, Deep) and out.mode in ("RGBA", "LA")  # Deep: .png/.tif, which hold it
                       and out.getchannel("A").getextrema()[0] < 255)
        if see_through and ext in NO_ALPHA:  # an opaque alpha loses nothing
            notes.append(f"note: {job.src.name} has an alpha channel, which {job.dst.suffix} can't hold; dropped, "
                         "its see-through parts laid on white (use .png or .webp to keep it)")
        lost = [what for key, what in (("icc_profile", "ICC profile"), ("exif", "EXIF")) if info.get(key)
                and ext in NO_EXIF] + (["DPI"] if info.get("dpi") and ext in NO_DPI else [])
        if lost:
            notes.append(f"note: {job.src.name}'s {' and '.join(lost)} can't be held in {job.dst.suffix}; left out")
        if lost := picture_metadata.lost(info.get("extra") or {}, ext):
            notes.append(f"note: {job.src.name}'s {' and '.join(lost)} can't be held in {job.dst.suffix}; left out "
                         "(.png keeps them)")
        if (info.get("extra") or {}).get("iptc"):
            notes.append(f"note: {job.src.name}'s IPTC (captions, credits) is not written by psr2video; left out "
                         "(its XMP and EXIF are carried where the output holds them)")
        try:
            if (note := _save(out, info, job.dst, quality)) is not None:
                notes.append(note)
        except PictureError as e:  # can't be written (a name too long, a file where its folder should be)
            skip(e, job)
            continue
        frames += 1
        for n in notes:
            say(n)
        if not quiet and len(jobs) > 1:
            say(f"[{i}/{len(jobs)}] {job.src} -> {job.dst} ({out.width}x{out.height})")
    if unreadable and failed is None:
        rest = "none was written" if len(unreadable) == len(jobs) else "the others were written"
        raise PictureError(f"{len(unreadable)} of {len(jobs)} pictures could not be upscaled (first: {unreadable[0]}); "
                           f"{rest}")
    return len(jobs) - len(unreadable), frames, time.perf_counter() - t0

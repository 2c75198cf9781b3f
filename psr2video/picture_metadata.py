"""What a still picture says about itself besides its pixels, ICC profile, EXIF and DPI: PNG text chunks (tEXt,
zTXt, iTXt: Stable Diffusion's ``parameters``, ComfyUI's ``workflow``, titles, authors), a JPEG/GIF comment,
PNG's colour chunks (gAMA, cHRM, sRGB) and XMP (rights, keywords: JPEG's APP1, WebP's XMP chunk, TIFF's tag 700,
PNG's iTXt "XML:com.adobe.xmp"). Carried where the output format holds them, named where it does not. IPTC
(JPEG's APP13, TIFF's tag 33723) is never written here (Pillow can't): named.
"""

from __future__ import annotations

from typing import Any

_KEYS = ("text", "comment", "gamma", "chromaticity", "srgb", "xmp", "iptc")
XMP_KEY = "XML:com.adobe.xmp"  # PNG's iTXt keyword for XMP
XMP_OUT = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".avif")  # the outputs written with XMP


def read(im: Any) -> dict[str, Any]:
    """The extra metadata of a loaded PIL image (empty where it has none)."""
    out: dict[str, Any] = {}
    if im.format == "PNG":
        text = dict(getattr(im, "text", None) or {})
        if text:
            out["text"] = text
        for key in ("gamma", "chromaticity", "srgb"):
            if im.info.get(key) is not None:
                out[key] = im.info[key]
    xmp = im.info.get("xmp") or im.info.get(XMP_KEY)
    if xmp:
        out["xmp"] = xmp.encode("utf-8") if isinstance(xmp, str) else bytes(xmp)
        if out.get("text"):  # written as XMP, not as a text chunk (PNG in): one copy in the output
            out["text"].pop(XMP_KEY, None)
            if not out["text"]:
                del out["text"]
    if im.format == "JPEG" and any(m == "APP13" and d.startswith(b"Photoshop 3.0")
                                   for m, d in getattr(im, "applist", ())):
        out["iptc"] = True
    elif im.format == "TIFF" and 33723 in getattr(im, "tag_v2", {}):
        out["iptc"] = True
    comment = im.info.get("comment")
    if comment and im.format in ("JPEG", "GIF", "WEBP"):
        out["comment"] = comment.decode("utf-8", "replace") if isinstance(comment, bytes) else str(comment)
    return out


def save_options(extra: dict[str, Any], ext: str, icc: bool = False) -> dict[str, Any]:
    """Pillow ``save`` keyword arguments that write ``extra`` into a ``ext`` file (``icc``: an ICC profile is
    written too, which replaces an sRGB chunk: PNG allows one of them)."""
    if ext == ".png":
        info = png_info(extra, icc)
        return {"pnginfo": info} if info is not None else {}
    opts: dict[str, Any] = {}
    # (TIFF's tag 700 goes in with its EXIF: tiff_exif)
    if ext in (".jpg", ".jpeg", ".webp", ".avif") and extra.get("xmp"):
        opts["xmp"] = extra["xmp"]
    if ext in (".jpg", ".jpeg", ".gif") and extra.get("comment"):
        opts["comment"] = extra["comment"].encode("utf-8")
    return opts


def tiff_exif(exif: Any, extra: dict[str, Any]) -> Any:
    """The EXIF to write into a TIFF (Pillow writes its tags into the TIFF's own IFD) with ``extra``'s XMP as tag
    700; ``exif`` as it is where there is no XMP."""
    if not extra.get("xmp"):
        return exif
    from PIL import Image

    out = Image.Exif()
    if exif:
        out.load(exif if isinstance(exif, bytes) else exif.tobytes())
    out[700] = extra["xmp"]
    return out


def exif_with_size(exif: Any, width: int, height: int) -> Any:
    """``exif`` (an EXIF block, bare or after JPEG's ``Exif\\0\\0``) with its PixelXDimension and PixelYDimension
    (the Exif IFD's 0xA002, 0xA003) saying ``width`` x ``height``, the size written; changed where they stand
    (nothing else of the block is rewritten: a maker note's offsets stay right). As it is where it has neither, a
    value of the size does not fit its field, or it can't be parsed."""
    import struct

    if not isinstance(exif, bytes | bytearray):
        return exif
    head = 6 if exif[:6] == b"Exif\x00\x00" else 0
    b = bytearray(exif)
    try:
        order = {b"II": "<", b"MM": ">"}[bytes(b[head:head + 2])]

        def entries(ifd: int) -> Any:
            n = struct.unpack_from(order + "H", b, head + ifd)[0]
            for k in range(n):
                at = head + ifd + 2 + 12 * k
                yield at, struct.unpack_from(order + "HHI", b, at)

        ifd0 = struct.unpack_from(order + "I", b, head + 4)[0]
        sub = next((struct.unpack_from(order + "I", b, at + 8)[0] for at, (tag, _, _) in entries(ifd0)
                    if tag == 0x8769), None)
        if sub is None:
            return exif
        for at, (tag, kind, count) in entries(sub):
            value = {0xA002: width, 0xA003: height}.get(tag)
            if value is None or count != 1:
                continue
            if kind == 3 and value <= 0xFFFF:  # SHORT: the first two bytes of the value field
                struct.pack_into(order + "H", b, at + 8, value)
            elif kind == 4:  # LONG
                struct.pack_into(order + "I", b, at + 8, value)
    except (KeyError, struct.error):
        return exif
    return bytes(b)


def png_info(extra: dict[str, Any], icc: bool = False) -> Any:
    """A PngInfo with the text and colour chunks of ``extra`` (a JPEG/GIF comment becomes a ``Comment`` text
    chunk), or None when there is nothing to write."""
    from PIL import PngImagePlugin

    text = dict(extra.get("text") or {})
    if extra.get("comment") and "Comment" not in text:
        text["Comment"] = extra["comment"]
    colour = [k for k in ("gamma", "chromaticity", "srgb") if extra.get(k) is not None and not (k == "srgb" and icc)]
    if not text and not colour and not extra.get("xmp"):
        return None
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        if isinstance(value, PngImagePlugin.iTXt):  # international text: its language and translated key kept
            info.add_itxt(key, value, value.lang or "", value.tkey or "", zip=len(value) > 1024)
        else:
            value = str(value)
            try:
                value.encode("latin-1")
                info.add_text(key, value, zip=len(value) > 1024)
            except UnicodeEncodeError:  # tEXt holds Latin-1 only
                info.add_itxt(key, value, zip=len(value) > 1024)
    if extra.get("xmp"):
        info.add_itxt(XMP_KEY, extra["xmp"].decode("utf-8", "replace"))
    if extra.get("gamma") is not None:
        info.add(b"gAMA", round(float(extra["gamma"]) * 100000).to_bytes(4, "big"))
    if extra.get("chromaticity") is not None:
        info.add(b"cHRM", b"".join(round(float(v) * 100000).to_bytes(4, "big") for v in extra["chromaticity"]))
    if extra.get("srgb") is not None and not icc:
        info.add(b"sRGB", bytes([int(extra["srgb"]) & 0xFF]))
    return info


def lost(extra: dict[str, Any], ext: str) -> list[str]:
    """What of ``extra`` a ``ext`` file can't hold, as words for a note (an sRGB chunk is never named: sRGB is
    what every other format assumes)."""
    out = []
    if extra.get("text") and ext != ".png":
        keys = list(extra["text"])
        out.append(f"PNG text ({', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''})")
    if extra.get("comment") and ext not in (".png", ".jpg", ".jpeg", ".gif"):
        out.append("comment")
    if extra.get("xmp") and ext not in XMP_OUT:
        out.append("XMP")
    if ext != ".png":
        out += [what for key, what in (("gamma", "gamma (gAMA)"), ("chromaticity", "chromaticities (cHRM)"))
                if extra.get(key) is not None]
    return out


__all__ = ["XMP_KEY", "XMP_OUT", "exif_with_size", "lost", "png_info", "read", "save_options", "tiff_exif"]

"""What a still picture says about itself besides its pixels, ICC profile, EXIF and DPI: PNG text chunks (tEXt,
zTXt, iTXt: Stable Diffusion's ``parameters``, ComfyUI's ``workflow``, titles, authors), a JPEG/GIF comment, and
PNG's colour chunks (gAMA, cHRM, sRGB). Carried where the output format holds them, named where it does not.
"""

from __future__ import annotations

from typing import Any

_KEYS = ("text", "comment", "gamma", "chromaticity", "srgb")


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
    if ext in (".jpg", ".jpeg", ".gif") and extra.get("comment"):
        return {"comment": extra["comment"].encode("utf-8")}
    return {}


def png_info(extra: dict[str, Any], icc: bool = False) -> Any:
    """A PngInfo with the text and colour chunks of ``extra`` (a JPEG/GIF comment becomes a ``Comment`` text
    chunk), or None when there is nothing to write."""
    from PIL import PngImagePlugin

    text = dict(extra.get("text") or {})
    if extra.get("comment") and "Comment" not in text:
        text["Comment"] = extra["comment"]
    colour = [k for k in ("gamma", "chromaticity", "srgb") if extra.get(k) is not None and not (k == "srgb" and icc)]
    if not text and not colour:
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
    if ext != ".png":
        out += [what for key, what in (("gamma", "gamma (gAMA)"), ("chromaticity", "chromaticities (cHRM)"))
                if extra.get(key) is not None]
    return out


__all__ = ["lost", "png_info", "read", "save_options"]

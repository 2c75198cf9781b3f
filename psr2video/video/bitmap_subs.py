"""The bytes of bitmap subtitles copied with the video: DVD subpictures (SPU, ``dvd_subtitle``) and Blu-ray PGS
display sets (``hdmv_pgs_subtitle``), read and edited in place (every edit keeps a packet's size).

A DVD subpicture is ``size, control offset, pixel data, control sequences``; each control sequence is ``date (2
bytes, units of 1024/90000 s from the packet's time), offset of the next, commands..., 0xFF``, and its commands show
(0x01) or hide (0x02) the picture, or place it (0x05: x1, x2, y1, y2 in 12 bits each). A PGS display set is segments
``type, length (2 bytes), payload``: the composition (0x16) names the canvas size and places objects, the window
definition (0x17) the windows they show in, an object (0x15) carries a bitmap and its size.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable
from fractions import Fraction
from typing import Any

SPU_TICK = Fraction(1024, 90000)  # s: one unit of a DVD control sequence's date
_SPU_ARGS = {0x00: 0, 0x01: 0, 0x02: 0, 0x03: 2, 0x04: 2, 0x05: 6, 0x06: 4}  # command -> argument bytes

PCS, WDS, ODS, END = 0x16, 0x17, 0x15, 0x80
_SIZE_LINE = re.compile(rb"^size:\s*(\d+)\s*x\s*(\d+)[ \t]*\r?$", re.MULTILINE | re.IGNORECASE)


# --- DVD subpictures ---------------------------------------------------------------------------------------------
def spu_sequences(data: bytes) -> list[tuple[int, int, list[tuple[int, int]]]] | None:
    """The control sequences of one subpicture: (offset, date, [(command, offset of the command)]); None when the
    packet is not one whole, well-formed subpicture (a fragment, another layout): left as it is."""
    if len(data) < 4:
        return None
    size, off = struct.unpack(">HH", data[:4])
    if size != len(data) or not 4 <= off < size:
        return None
    out, seen = [], set()
    while off not in seen and off + 4 <= size:
        seen.add(off)
        date, nxt = struct.unpack(">HH", data[off:off + 4])
        cmds, i = [], off + 4
        while i < size and data[i] != 0xFF:
            c = data[i]
            if c == 0x07:  # change colour/contrast: its own 2-byte length (the length included)
                if i + 3 > size:
                    return None
                n = struct.unpack(">H", data[i + 1:i + 3])[0]
                cmds.append((c, i))
                i += 1 + max(n, 2)
                continue
            if c not in _SPU_ARGS:
                return None
            cmds.append((c, i))
            i += 1 + _SPU_ARGS[c]
        if i >= size:
            return None
        out.append((off, date, cmds))
        if nxt == off:
            break
        off = nxt
    return out or None


def spu_stop(data: bytes, seqs: list[tuple[int, int, list[tuple[int, int]]]] | None = None) -> Fraction | None:
    """When the subpicture leaves the screen (s after its packet's time: its stop command's date); None when it
    has none (it lasts until the stream's next packet) or can't be read. ``seqs``: its ``spu_sequences`` where
    already read."""
    if seqs is None:
        seqs = spu_sequences(data)
    if seqs is None:
        return None
    started = False
    for _, date, cmds in seqs:
        names = [c for c, _ in cmds]
        if 0x01 in names or 0x00 in names:
            started = True
        if 0x02 in names and (started or date > 0):
            return date * SPU_TICK
    return None


def spu_after(data: bytes, elapsed: Fraction) -> bytes | None:
    """The subpicture as shown ``elapsed`` s after its packet's time (the packet moved there): every control
    sequence's date less that time (none before 0), so it leaves the screen when it did; None when it had already
    left (its stop command is at or before then) or the bytes can't be read (then as they are: ``data``)."""
    seqs = spu_sequences(data)
    if seqs is None:
        return data
    stop = spu_stop(data, seqs)
    if stop is not None and stop <= elapsed:
        return None
    units = int(elapsed / SPU_TICK)  # (rounded down: it ends no earlier than it did)
    out = bytearray(data)
    for off, date, _ in seqs:
        struct.pack_into(">H", out, off, max(0, date - units))
    return bytes(out)


def spu_cropped(data: bytes, left: int, top: int, width: int, height: int) -> tuple[bytes, bool]:
    """The subpicture with its rectangle moved by a crop of ``left``/``top`` pixels onto a ``width`` x ``height``
    canvas (the cropped frame); a rectangle that falls (partly) outside is moved inside. (bytes, whether one was
    moved inside)."""
    seqs = spu_sequences(data)
    if seqs is None:
        return data, False
    out, moved = bytearray(data), False
    for _, _, cmds in seqs:
        for c, i in cmds:
            if c != 0x05:
                continue
            b = data[i + 1:i + 7]
            x1, x2 = (b[0] << 4) | (b[1] >> 4), ((b[1] & 0x0F) << 8) | b[2]
            y1, y2 = (b[3] << 4) | (b[4] >> 4), ((b[4] & 0x0F) << 8) | b[5]
            nx, mx = _inside(x1 - left, x2 - x1 + 1, width)
            ny, my = _inside(y1 - top, y2 - y1 + 1, height)
            moved |= mx or my
            nx2, ny2 = nx + x2 - x1, ny + y2 - y1
            out[i + 1:i + 7] = bytes([nx >> 4, ((nx & 0x0F) << 4) | (nx2 >> 8), nx2 & 0xFF,
                                      ny >> 4, ((ny & 0x0F) << 4) | (ny2 >> 8), ny2 & 0xFF])
    return bytes(out), moved


def dvd_canvas(extradata: bytes | None) -> tuple[int, int] | None:
    """The ``size: WxH`` of a DVD subtitle stream's extradata (the frame its rectangles are placed on)."""
    m = _SIZE_LINE.search(extradata or b"")
    return (int(m.group(1)), int(m.group(2))) if m else None


def dvd_extradata_sized(extradata: bytes | None, width: int, height: int) -> bytes:
    """The extradata with its ``size:`` line made ``width`` x ``height`` (one added in front where it has none)."""
    line = f"size: {width}x{height}".encode()
    data = extradata or b""
    if _SIZE_LINE.search(data):
        return _SIZE_LINE.sub(line, data, count=1)
    return line + b"\n" + data


def crop_on_canvas(crop: Any, canvas: tuple[int, int], video: tuple[int, int] | None
                   ) -> tuple[int, int, int, int] | None:
    """--crop (``crop``, a Crop in the source video's pixels) on a subtitle canvas of ``canvas`` (width, height)
    made for a ``video`` (width, height) picture (None: the same size): (left, top, width, height) of the part
    kept, in the canvas's pixels (a 1080p PGS canvas on a 720p video: the crop's edges times 1.5, each rounded to
    the nearest); None where nothing of it is left."""
    cw, ch = canvas
    vw, vh = video if video and video[0] > 0 and video[1] > 0 else canvas
    if cw <= 0 or ch <= 0:
        return None
    x0, x1 = round(Fraction(crop.left * cw, vw)), round(Fraction((vw - crop.right) * cw, vw))
    y0, y1 = round(Fraction(crop.top * ch, vh)), round(Fraction((vh - crop.bottom) * ch, vh))
    if x0 < 0 or y0 < 0 or x1 > cw or y1 > ch or x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1 - x0, y1 - y0


# --- PGS -----------------------------------------------------------------------------------------------------------
def pgs_segments(data: bytes) -> list[tuple[int, int, int]] | None:
    """The segments of a PGS packet: (type, payload offset, payload length); None when it doesn't parse."""
    out, i = [], 0
    while i < len(data):
        if i + 3 > len(data):
            return None
        kind, n = data[i], struct.unpack(">H", data[i + 1:i + 3])[0]
        if i + 3 + n > len(data):
            return None
        out.append((kind, i + 3, n))
        i += 3 + n
    return out


def pgs_ends_set(data: bytes) -> bool:
    """Whether a PGS packet holds the end segment of its display set (or is not readable: nothing to wait for)."""
    segs = pgs_segments(data)
    return segs is None or any(k == END for k, _, _ in segs)


def pgs_cropped(packets: list[bytes], left: int, top: int, width: int, height: int) -> tuple[list[bytes], bool]:
    """One display set (its packets' bytes, in order) moved by a crop of ``left``/``top`` pixels onto a ``width``
    x ``height`` canvas: the composition's canvas size, its windows and objects; a window that falls (partly)
    outside is moved inside, its objects with it. (the packets' bytes, whether a window or object was moved in)."""
    parsed = [pgs_segments(p) for p in packets]
    sizes: dict[int, tuple[int, int]] = {}  # object id -> size (from its first fragment)
    shift: dict[int, tuple[int, int]] = {}  # window id -> how far it was moved inside (x, y)
    out = [bytearray(p) for p in packets]
    moved = False
    for p, segs in zip(packets, parsed, strict=True):
        for kind, at, n in segs or ():
            if kind == ODS and n >= 11 and p[at + 3] & 0x80:
                sizes[struct.unpack(">H", p[at:at + 2])[0]] = struct.unpack(">HH", p[at + 7:at + 11])
    for j, (p, segs) in enumerate(zip(packets, parsed, strict=True)):
        for kind, at, n in segs or ():
            if kind == WDS and n >= 1:
                for w in range(p[at]):
                    o = at + 1 + 9 * w
                    if o + 9 > at + n:
                        break
                    wid, x, y, ww, wh = struct.unpack(">BHHHH", p[o:o + 9])
                    nx, mx = _inside(x - left, ww, width)
                    ny, my = _inside(y - top, wh, height)
                    moved |= mx or my
                    shift[wid] = (nx - (x - left), ny - (y - top))
                    struct.pack_into(">HH", out[j], o + 1, nx, ny)
    for j, (p, segs) in enumerate(zip(packets, parsed, strict=True)):
        for kind, at, n in segs or ():
            if kind != PCS or n < 11:
                continue
            struct.pack_into(">HH", out[j], at, width, height)
            o = at + 11
            for _ in range(p[at + 10]):
                if o + 8 > at + n:
                    break
                oid, wid, flag, x, y = struct.unpack(">HBBHH", p[o:o + 8])
                dx, dy = shift.get(wid, (0, 0))
                ow, oh = sizes.get(oid, (1, 1))
                nx, mx = _inside(x - left + dx, ow, width)
                ny, my = _inside(y - top + dy, oh, height)
                moved |= (mx or my) and wid not in shift
                struct.pack_into(">HH", out[j], o + 4, nx, ny)
                o += 16 if flag & 0x80 else 8
    return [bytes(b) for b in out], moved


class BitmapEdit:
    """What a copied DVD or PGS subtitle stream's packets need on their way into the output: under --crop
    (``crop``, a Crop) their rectangles moved onto the cropped frame (``canvas``: a DVD stream's frame; PGS names
    its own in every composition), a PGS display set waiting for its end segment to be read whole; in MP4/MOV
    (``lengths``) a DVD subpicture given a length (its stop command's date, else until the next one: the muxer
    ends the track at its last sample's length, and a subpicture without one was lost)."""

    def __init__(self, name: str, crop: Any, video: tuple[int, int] | None = None) -> None:
        self.name, self.crop = name, crop
        self.video = video  # the source video's size (the crop's pixels; a canvas of another size is scaled to it)
        self.canvas: tuple[int, int] | None = None
        self.lengths = False
        self._set: list[Any] = []  # PGS: the packets of the display set being read
        self._last: Any = None  # DVD into MP4: the subpicture waiting for the next to know its length
        self._said = False
        self._said_none = False

    def area(self, canvas: tuple[int, int], warn: Callable[[str], None], index: int
             ) -> tuple[int, int, int, int] | None:
        """The crop on ``canvas`` (``crop_on_canvas``); None, said once, where nothing is left of it (the stream's
        pictures are left as they are)."""
        area = crop_on_canvas(self.crop, canvas, self.video)
        if area is None and not self._said_none:
            self._said_none = True
            made = f" (made for a {self.video[0]}x{self.video[1]} picture)" if self.video else ""
            warn(f"note: subtitle stream #{index} ({self.name}): --crop {self.crop} leaves nothing of its "
                 f"{canvas[0]}x{canvas[1]} canvas{made}; its pictures are left where they were")
        return area

    def feed(self, pkt: Any, warn: Callable[[str], None], index: int, end: Fraction | None = None) -> list[Any]:
        """The packets ready to mux once ``pkt`` has come (None: the stream's end; ``end``: where the picture
        ends, s)."""
        if self.name == "hdmv_pgs_subtitle":
            return self._pgs(pkt, warn, index)
        if pkt is not None and self.crop is not None and self.canvas is not None \
                and (area := self.area(self.canvas, warn, index)) is not None:
            try:
                data, moved = spu_cropped(bytes(pkt), *area)
            except (struct.error, IndexError, ValueError):  # bytes not understood: the packet as it was
                data, moved = bytes(pkt), False
            if data != bytes(pkt):
                pkt.update(data)
            self._say(moved, warn, index)
        if not self.lengths:
            return [] if pkt is None else [pkt]
        out = []
        if self._last is not None and (pkt is None or pkt.pts is not None):
            last = self._last
            self._last = None
            if pkt is not None:
                last.duration = max(1, pkt.pts - last.pts)
            elif end is not None:
                last.duration = max(1, math.ceil(end / Fraction(last.time_base)) - last.pts)
            out.append(last)
        if pkt is None:
            return out
        if not pkt.duration and pkt.pts is not None and pkt.time_base:
            try:
                stop = spu_stop(bytes(pkt))
            except (struct.error, IndexError, ValueError):
                stop = None
            if stop is None:
                self._last = pkt
                return out
            pkt.duration = max(1, math.ceil(stop / Fraction(pkt.time_base)))
        return [*out, pkt]

    def _pgs(self, pkt: Any, warn: Callable[[str], None], index: int) -> list[Any]:
        if pkt is not None:
            self._set.append(pkt)
            if not pgs_ends_set(bytes(pkt)):
                return []
        done, self._set = self._set, []
        if done and self.crop is not None:
            old = [bytes(q) for q in done]
            size = _pgs_canvas(old)
            area = None if size is None else self.area(size, warn, index)
            if area is not None:
                try:
                    new, moved = pgs_cropped(old, *area)
                except (struct.error, IndexError, ValueError):  # bytes not understood: the set as it was
                    new, moved = old, False
                for q, data in zip(done, new, strict=True):
                    if data != bytes(q):
                        q.update(data)
                self._say(moved, warn, index)
        return done

    def _say(self, moved: bool, warn: Callable[[str], None], index: int) -> None:
        if moved and not self._said:
            self._said = True
            warn(f"note: subtitle stream #{index} ({self.name}) has pictures outside the cropped frame (--crop "
                 f"{self.crop}, in the bars cut off): moved inside it")


def _pgs_canvas(packets: list[bytes]) -> tuple[int, int] | None:
    """The canvas size a PGS display set's composition names."""
    for p in packets:
        for kind, at, n in pgs_segments(p) or ():
            if kind == PCS and n >= 4:
                return struct.unpack(">HH", p[at:at + 4])
    return None


def _inside(at: int, length: int, span: int) -> tuple[int, bool]:
    """``at`` moved so that ``length`` from it lies in ``[0, span)`` as far as it can (from 0 where it's longer);
    whether it moved."""
    new = max(0, min(at, span - length))
    return new, new != at


__all__ = ["SPU_TICK", "BitmapEdit", "crop_on_canvas", "dvd_canvas", "dvd_extradata_sized", "pgs_cropped",
           "pgs_ends_set", "pgs_segments", "spu_after", "spu_cropped", "spu_sequences", "spu_stop"]

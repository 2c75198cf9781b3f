"""Text subtitles between the forms containers hold (SRT, ASS, WebVTT, MP4's mov_text): the text of a cue, packed
for another form, and overlapping cues laid out for mov_text, which shows one cue at a time."""

from __future__ import annotations

import html
import math
import re
import struct
from fractions import Fraction

TEXT_SUBS = ("subrip", "srt", "ass", "ssa", "mov_text", "text", "webvtt")
ASS_HEADER = (b"[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n\n[V4+ Styles]\nFormat: Name, "
               b"Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, "
               b"Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, "
               b"MarginL, MarginR, MarginV, Encoding\nStyle: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,"
               b"100,0,0,1,1,0,2,10,10,10,0\n\n[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, "
               b"MarginV, Effect, Text\n")

# FFmpeg's mov muxer ends a mov_text cue with an empty sample of no length once another stream's packet has a
# larger dts, compared as raw numbers across time bases: with Matroska's 1 ms against the video's 1/12800 it wrote
# one after every cue. In a fragmented MP4 (stdout) such a sample last in a fragment is given the length of the one
# before: every later cue moved (a cue shown 1.1-1.5 s came out at 1.70-2.10 s), or the muxer aborted the run. In a
# time base finer than the others' (video 1/12800-1/90000, audio up to 1/192000) the comparison holds in seconds
# and it writes almost none (measured: gaps of 2 min, 48 kHz audio); the gaps are empty samples of ours instead
# (CueTimeline(fill=True)).
MOV_TEXT_TIME_BASE = Fraction(1, 1_000_000)
LONGEST_SAMPLE = 3600  # seconds: a sample's length is 32 bits of MOV_TEXT_TIME_BASE (71 min); longer ones split

_SRT_TAG = re.compile(r"</?(?:[ibus]|font)(?:\s[^>]*)?>|\{\\an?\d+\}", re.IGNORECASE)  # what SRT readers act on
_VTT_TAG = re.compile(r"</?(?:[ibu]|c|v|lang|ruby|rt)(?:[.\s][^>]*)?>|<\d[\d:.]*>")  # WebVTT's tags, timestamps
_ASS_DRAWING = re.compile(r"\\p(\d+)")  # \p1..: the text that follows is a vector drawing; \p0 ends it


def convert_text_sub(data: bytes, src: str, dst: str) -> bytes | None:
    """One text subtitle packet from ``src``'s payload to ``dst``'s (mov_text, subrip or webvtt); None if empty.

    mov_text: 16-bit big-endian length, UTF-8 text, style boxes; Matroska SRT: the text; Matroska ASS:
    ``ReadOrder,Layer,Style,Name,MarginL,MarginR,MarginV,Effect,Text`` with ``{...}`` overrides."""
    text = sub_text(data, src)
    return pack_sub_text(text, dst) if text else None


def pack_sub_text(text: str, dst: str) -> bytes:
    """Plain text as ``dst``'s payload. WebVTT reads ``<`` and ``&`` as markup and a line with ``-->`` as a new
    cue's times: they are escaped (``-->`` becomes ``--&gt;``); a blank line ends a cue in SRT and WebVTT files."""
    if dst in ("webvtt", "subrip", "srt"):
        text = re.sub(r"\n\s*\n+", "\n", text)
    if dst == "webvtt":
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    raw = text.encode("utf-8")
    if dst != "mov_text":
        return raw
    raw = raw[:0xFFFF].decode("utf-8", "ignore").encode("utf-8")  # its length is 16 bits
    return struct.pack(">H", len(raw)) + raw


class CueTimeline:
    """Text cues for MP4's mov_text, which shows one sample at a time: cues that overlap (a sign over the
    dialogue, two speakers) become consecutive samples, each with the lines of every cue on screen then, so no
    cue moves. (FFmpeg's muxer laid them end to end: a cue began when the one before ended, and every later cue
    ran late.) Times are ticks of the stream's time base; a cue without a length lasts until the next begins.

    ``fill``: the time between cues is an empty sample too (see MOV_TEXT_TIME_BASE); ``longest``: samples longer
    than that many ticks are split."""

    def __init__(self, fill: bool = False, longest: float = math.inf, time_base: Fraction | None = None) -> None:
        self.active: list[tuple[float, str]] = []  # (end, text) of the cues on screen, in the order they began
        self.at: int | None = None  # where the samples given out so far end
        self.fill, self.longest, self.time_base = fill, longest, time_base

    @classmethod
    def for_mov_text(cls, time_base: Fraction) -> CueTimeline:
        """The timeline for cues in ``time_base`` written as mov_text in MOV_TEXT_TIME_BASE."""
        return cls(fill=True, longest=int(LONGEST_SAMPLE / Fraction(time_base)), time_base=Fraction(time_base))

    def add(self, start: int, end: float, text: str) -> list[tuple[int, int, str]]:
        """The cue from ``start`` to ``end``; the samples (start, end, text) now complete."""
        self.active = [(start if e == math.inf else e, t) for e, t in self.active]  # "until the next": ends here
        out = self._until(start)
        if self.at is None or (not self.active and self.at < start):
            if self.fill and self.at is not None:
                out += self._split(self.at, start, "")
            self.at = start  # (a cue that begins before what was given out, out of order, shows from there)
        self.active.append((end, text))
        return out

    def flush(self) -> list[tuple[int, int, str]]:
        return self._until(max((e for e, _ in self.active if e != math.inf), default=self.at or 0))

    def _until(self, t: float) -> list[tuple[int, int, str]]:
        out = []
        while self.active and self.at is not None and self.at < t:
            nxt = max(min(min(e for e, _ in self.active), t), self.at)  # (never back: a cue ended before)
            out += self._split(self.at, int(nxt), "\n".join(text for _, text in self.active))
            self.at = int(nxt)
            self.active = [(e, x) for e, x in self.active if e > nxt]
        return out

    def _split(self, start: int, end: int, text: str) -> list[tuple[int, int, str]]:
        step = max(1, int(self.longest)) if self.longest != math.inf else max(1, end - start)
        return [(t, min(t + step, end), text) for t in range(start, end, step)]


def sub_text(data: bytes, src: str) -> str:
    """The plain text of one text subtitle packet of ``src`` (mov_text, SRT, ASS/SSA, WebVTT, plain text): markup
    removed, the rest kept as written (``a < b`` in ASS or SRT is text, not a tag); "" when nothing shows."""
    if src == "mov_text":
        n = struct.unpack(">H", data[:2])[0] if len(data) >= 2 else 0
        text = data[2:2 + n].decode("utf-8", "replace")
    else:
        text = data.decode("utf-8", "replace")
        if src in ("ass", "ssa"):
            text = ass_text(text.split(",", 8)[-1])
        elif src in ("subrip", "srt"):
            text = _SRT_TAG.sub("", text)
        elif src == "webvtt":
            text = html.unescape(_VTT_TAG.sub("", text))
    text = text.replace("\r\n", "\n").strip(" \t\r\n")
    return text if text.strip() else ""


def ass_text(text: str) -> str:
    """The text an ASS event shows: override blocks gone, and with them what a drawing (``{\\p1}m 0 0 l ...``)
    draws; ``\\N`` and ``\\n`` new lines (as FFmpeg's converters take both), ``\\h`` a no-break space."""
    out, drawing = [], False
    for part in re.split(r"(\{[^}]*\})", text):
        if part.startswith("{") and part.endswith("}"):
            if scales := _ASS_DRAWING.findall(part):
                drawing = int(scales[-1]) > 0
        elif not drawing:
            out.append(part)
    return "".join(out).replace("\\N", "\n").replace("\\n", "\n").replace("\\h", "\u00a0")

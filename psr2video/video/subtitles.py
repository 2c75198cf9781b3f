"""Text subtitles between the forms containers hold (SRT, ASS, WebVTT, MP4's mov_text): the text of a cue, packed
for another form, and overlapping cues laid out for mov_text, which shows one cue at a time."""

from __future__ import annotations

import math
import re
import struct

TEXT_SUBS = ("subrip", "srt", "ass", "ssa", "mov_text", "text", "webvtt")
ASS_HEADER = (b"[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n\n[V4+ Styles]\nFormat: Name, "
               b"Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, "
               b"Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, "
               b"MarginL, MarginR, MarginV, Encoding\nStyle: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,"
               b"100,0,0,1,1,0,2,10,10,10,0\n\n[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, "
               b"MarginV, Effect, Text\n")


def convert_text_sub(data: bytes, src: str, dst: str) -> bytes | None:
    """One text subtitle packet from ``src``'s payload to ``dst``'s (mov_text or subrip); None if empty.

    mov_text: 16-bit big-endian length, UTF-8 text, style boxes; Matroska SRT: the text; Matroska ASS:
    ``ReadOrder,Layer,Style,Name,MarginL,MarginR,MarginV,Effect,Text`` with ``{...}`` overrides."""
    text = sub_text(data, src)
    return pack_sub_text(text, dst) if text else None


def pack_sub_text(text: str, dst: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack(">H", len(raw)) + raw if dst == "mov_text" else raw


class CueTimeline:
    """Text cues for MP4's mov_text, which shows one sample at a time: cues that overlap (a sign over the
    dialogue, two speakers) become consecutive samples, each with the lines of every cue on screen then, so no
    cue moves. (FFmpeg's muxer laid them end to end: a cue began when the one before ended, and every later cue
    ran late.) Times are ticks of the stream's time base; a cue without a length lasts until the next begins."""

    def __init__(self) -> None:
        self.active: list[tuple[float, str]] = []  # (end, text) of the cues on screen, in the order they began
        self.at: int | None = None  # where the samples given out so far end

    def add(self, start: int, end: float, text: str) -> list[tuple[int, int, str]]:
        """The cue from ``start`` to ``end``; the samples (start, end, text) now complete."""
        self.active = [(start if e == math.inf else e, t) for e, t in self.active]  # "until the next": ends here
        out = self._until(start)
        if self.at is None or (not self.active and self.at < start):
            self.at = start  # (a cue that begins before what was given out, out of order, shows from there)
        self.active.append((end, text))
        return out

    def flush(self) -> list[tuple[int, int, str]]:
        return self._until(max((e for e, _ in self.active if e != math.inf), default=self.at or 0))

    def _until(self, t: float) -> list[tuple[int, int, str]]:
        out = []
        while self.active and self.at is not None and self.at < t:
            nxt = min(min(e for e, _ in self.active), t)
            out.append((self.at, int(nxt), "\n".join(text for _, text in self.active)))
            self.at = int(nxt)
            self.active = [(e, x) for e, x in self.active if e > nxt]
        return out


def sub_text(data: bytes, src: str) -> str:
    """The plain text of one text subtitle packet of ``src`` (mov_text, SRT, ASS/SSA, WebVTT)."""
    if src == "mov_text":
        n = struct.unpack(">H", data[:2])[0] if len(data) >= 2 else 0
        text = data[2:2 + n].decode("utf-8", "replace")
    else:
        text = data.decode("utf-8", "replace")
        if src in ("ass", "ssa"):
            text = text.split(",", 8)[-1]
            text = re.sub(r"\{[^}]*\}", "", text).replace("\\N", "\n").replace("\\n", "\n")
        text = re.sub(r"<[^>]+>", "", text)
    return text.strip()

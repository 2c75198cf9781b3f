"""Text subtitles between the forms containers hold (SRT, ASS, WebVTT, MP4's mov_text): the text of a cue, packed
for another form, and overlapping cues laid out for mov_text, which shows one cue at a time."""

from __future__ import annotations

import html
import math
import re
import struct
from fractions import Fraction
from typing import Any

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


def codec_name(s: Any) -> str:
    """A stream's codec by FFmpeg's canonical name (``dvd_subtitle``, not the decoder's ``dvdsub``); "" where it has
    none (any stream's: the writer's and trim's one lookup)."""
    cc = getattr(s, "codec_context", None)
    if cc is None:
        return ""
    try:
        return cc.codec.canonical_name or cc.name
    except Exception:  # noqa: BLE001
        return getattr(cc, "name", "") or ""


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


_ASS_BLOCK = re.compile(r"\{[^}]*\}")
_ASS_TIMED = re.compile(r"\\(fade|fad|move|t)\s*\(")
_ASS_KARAOKE = re.compile(r"\\(kf|ko|k|K)(\d+(?:\.\d*)?)")


def ass_after(data: bytes, elapsed: Fraction, duration: Fraction) -> bytes:
    """A Matroska ASS line (``ReadOrder,...,Text``) ``duration`` s long, moved to start ``elapsed`` s later (a
    part begun while it was on screen): its timed effects, which count from the line's start, made to count from
    the new one, so they go on where they were rather than start again: ``\\fad``/``\\fade`` (the alpha reached
    then, the rest of the fade), ``\\move`` (the point reached, the rest of the path; ``\\pos`` once done), ``\\t``
    (its times less ``elapsed``; its tags themselves once done) and the karaoke syllables (``\\k``, ``\\kf``,
    ``\\ko``, ``\\K``: those sung take 0, the one being sung what is left of it). Anything it can't read is left
    as it is."""
    text = data.decode("utf-8", "surrogateescape")
    head = text.split(",", 8)
    if len(head) < 9 or "{" not in head[8] or elapsed <= 0:
        return data
    e, d0 = Fraction(elapsed) * 1000, Fraction(duration) * 1000  # ms, as ASS times its effects
    sung = [Fraction(0), e / 10]  # (karaoke: where the syllables so far end, in cs; the elapsed time in cs)

    def block(m: re.Match[str]) -> str:
        return _ass_karaoke(_ass_timed(m.group(0), e, d0), sung)

    head[8] = _ASS_BLOCK.sub(block, head[8])
    return ",".join(head).encode("utf-8", "surrogateescape")


def _num(v: Fraction | float) -> str:
    r = round(float(v), 2)
    return str(int(r)) if r == int(r) else f"{r:.2f}".rstrip("0")


def _ass_timed(blk: str, e: Fraction, d0: Fraction) -> str:
    """The \\fad, \\fade, \\move and \\t tags of one override block, rewritten for a line that starts ``e`` ms
    later (``d0``: its length before, ms)."""
    out, i = [], 0
    while (m := _ASS_TIMED.search(blk, i)) is not None:
        j, depth = m.end(), 1
        while j < len(blk) and depth:
            depth += {"(": 1, ")": -1}.get(blk[j], 0)
            j += 1
        if depth:  # unclosed (renderers read to the block's end): left as it is
            break
        inner = blk[m.end():j - 1]
        new = _ass_tag(m.group(1), inner, e, d0)
        out.append(blk[i:m.start()] + (new if new is not None else blk[m.start():j]))
        i = j
    out.append(blk[i:])
    return "".join(out)


def _ass_tag(name: str, inner: str, e: Fraction, d0: Fraction) -> str | None:
    if name == "t":
        parts = inner.split(",", 3)
        nums = []
        for p in parts:
            try:
                nums.append(Fraction(p.strip()))
            except (ValueError, ZeroDivisionError):
                break
        tags = ",".join(parts[len(nums):])
        if len(nums) not in (0, 1, 2, 3) or not tags.lstrip().startswith("\\"):
            return None
        t1, t2 = (nums[0], nums[1]) if len(nums) >= 2 else (Fraction(0), Fraction(0))
        accel = nums[2] if len(nums) == 3 else nums[0] if len(nums) == 1 else None
        t2 = t2 or d0  # (0: the line's end)
        if e >= t2:
            return tags  # done: its tags hold from the start
        return f"\\t({_num(t1 - e)},{_num(t2 - e)},{'' if accel is None else _num(accel) + ','}{tags})"
    try:
        args = [Fraction(a.strip()) for a in inner.split(",")]
    except (ValueError, ZeroDivisionError):
        return None
    if name == "move" and len(args) in (4, 6):
        x1, y1, x2, y2 = args[:4]
        t1, t2 = args[4:6] if len(args) == 6 else (Fraction(0), d0)
        if t1 > t2:
            t1, t2 = t2, t1
        if (t1 <= 0 and t2 <= 0) or t1 == t2:  # (how renderers read these: over the whole line)
            t1, t2 = Fraction(0), d0
        if e >= t2:
            return f"\\pos({_num(x2)},{_num(y2)})"
        k = max(Fraction(0), (e - t1) / (t2 - t1))
        return (f"\\move({_num(x1 + (x2 - x1) * k)},{_num(y1 + (y2 - y1) * k)},{_num(x2)},{_num(y2)},"
                f"{_num(max(Fraction(0), t1 - e))},{_num(t2 - e)})")
    if name == "fad" and len(args) == 2:
        a, times = [Fraction(255), Fraction(0), Fraction(255)], [Fraction(0), args[0], d0 - args[1], d0]
    elif name == "fade" and len(args) == 7:
        a, times = args[:3], args[3:]
    else:
        return None
    now = _alpha_at(e, a, times)
    new = [t - e for t in times]
    a1 = now if new[0] < 0 else a[0]
    a2 = now if new[2] < 0 else a[1]
    new = [max(Fraction(0), t) for t in new]
    return f"\\fade({_num(round(a1))},{_num(round(a2))},{_num(a[2])},{','.join(_num(t) for t in new)})"


def _alpha_at(t: Fraction, a: list[Fraction], times: list[Fraction]) -> Fraction:
    """A \\fade's alpha ``t`` ms into the line (as renderers compute it)."""
    t1, t2, t3, t4 = times
    if t < t1:
        return a[0]
    if t < t2:
        return a[0] + (a[1] - a[0]) * (t - t1) / (t2 - t1)
    if t < t3:
        return a[1]
    if t < t4:
        return a[1] + (a[2] - a[1]) * (t - t3) / (t4 - t3)
    return a[2]


def _ass_karaoke(blk: str, sung: list[Fraction]) -> str:
    """The karaoke syllables of one override block, those already sung ``sung[1]`` cs into the line taking 0
    (highlighted from the start), the one being sung what is left of it (``sung[0]``: where the syllables before
    this block end, carried on)."""
    def one(m: re.Match[str]) -> str:
        start, length = sung[0], Fraction(m.group(2))
        sung[0] = start + length
        if start >= sung[1]:
            return m.group(0)
        return f"\\{m.group(1)}{_num(max(Fraction(0), start + length - sung[1]))}"

    return _ASS_KARAOKE.sub(one, blk)

"""``--start`` / ``--end`` / ``--duration``: upscale one part of a video.

A part is what an encoder tries settings on before a two-hour run, or the scene that is wanted. Times are read as
FFmpeg reads ``-ss`` / ``-to`` / ``-t`` (seconds, ``MM:SS`` or ``HH:MM:SS``, with decimals; ``s``/``ms``/``us``
suffixes) and count from the file's start, as a player shows them. The part's frames are those whose time lies
in ``[start, end)``; every kept stream (video, audio, subtitles) and the chapters are moved so that the output
starts at 0, as ``ffmpeg -ss`` does, and a timecode names the part's first frame.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ..errors import PsrError

_CLOCK = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)$")
_SECONDS = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(s|ms|us)?$")
_UNIT = {None: 1, "s": 1, "ms": Fraction(1, 1000), "us": Fraction(1, 1_000_000)}


class TrimError(PsrError):
    """A part of the video that can't be cut: a malformed time, an end before the start, a start past the end."""


def parse_time(text: str, flag: str = "--start") -> Fraction:
    """A time in seconds (exact): ``90``, ``90.5``, ``1500ms``, ``1:30``, ``01:02:03.25``."""
    t = text.strip()
    if m := _CLOCK.match(t):
        h, mi, s = m.groups()
        if (int(mi) >= 60 and h is not None) or Fraction(s) >= 60:
            raise TrimError(f"{flag} {text}: minutes and seconds of a clock time run 0-59 (e.g. 1:02:03.5)")
        return int(h or 0) * 3600 + int(mi) * 60 + Fraction(s)
    if m := _SECONDS.match(t):
        return Fraction(m.group(1)) * _UNIT[m.group(2)]
    if t.startswith("-"):
        raise TrimError(f"{flag} {text}: times count from the video's start and can't be negative")
    raise TrimError(f"{flag} {text}: give a time as seconds (90, 90.5, 1500ms) or a clock time (1:30, 01:02:03.5)")


def clock(t: Fraction | float) -> str:
    """``t`` seconds as H:MM:SS.mmm (M:SS.mmm under an hour), as the part is named back to the user."""
    ms = int(round(float(t) * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s = f"{rest / 1000:06.3f}".rstrip("0").rstrip(".")
    s = s if "." in s or len(s) == 2 else s.zfill(2)
    return f"{h}:{m:02d}:{s}" if h else f"{m}:{s}"


@dataclass(frozen=True)
class Trim:
    """The part asked for, in seconds from the file's start: ``[start, end)``, ``end`` None = to the end."""

    start: Fraction = Fraction(0)
    end: Fraction | None = None

    @classmethod
    def from_options(cls, start: str | None, end: str | None, duration: str | None) -> Trim | None:
        """The options as given on the command line (None each when absent); None when none is given."""
        if start is None and end is None and duration is None:
            return None
        if end is not None and duration is not None:
            raise TrimError("give --end or --duration, not both (--end is a time in the video, --duration a length)")
        lo = parse_time(start, "--start") if start is not None else Fraction(0)
        if duration is not None:
            length = parse_time(duration, "--duration")
            if length <= 0:
                raise TrimError(f"--duration {duration}: the part must last longer than 0")
            return cls(lo, lo + length)
        hi = parse_time(end, "--end") if end is not None else None
        if hi is not None and hi <= lo:
            raise TrimError(f"--end {end} is not after --start {start or 0}: the part would be empty")
        return cls(lo, hi)

    def describe(self) -> str:
        return f"{clock(self.start)}-{clock(self.end) if self.end is not None else 'end'}"

    def window(self, origin: Fraction) -> Window:
        """The part in the file's own times (``origin``: the container's start time, where a player shows 0). A
        part from the start keeps everything before its end as a whole run does, times included (MP4's audio
        priming packet lies before 0)."""
        hi = None if self.end is None else origin + self.end
        if self.start == 0:
            return Window(origin, hi, zero=Fraction(0), open_start=True)
        return Window(origin + self.start, hi)

    def check(self, length: float | None, name: str) -> None:
        """Refuse a part that starts at or past the end of a video ``length`` s long (None: unknown)."""
        if length is not None and length > 0 and self.start >= Fraction(length).limit_denominator(1_000_000):
            from pathlib import Path

            raise TrimError(f"--start {clock(self.start)} is at or past the end of {Path(name).name} "
                            f"({clock(length)} long)")


GRID_MAX = Fraction(1)  # s: the coarsest common grid every stream of a part moves by (its output starts there)


@dataclass(frozen=True)
class Window:
    """A part in the file's own times (s): what is kept lies in ``[lo, hi)``; kept times are moved back by
    ``zero`` (``lo`` unless set on the video's time grid: ``on_grid``)."""

    lo: Fraction
    hi: Fraction | None
    zero: Fraction | None = None
    open_start: bool = False  # from the file's start: nothing before ``lo`` is dropped, no time moves

    def on_grid(self, time_base: Fraction | None, *others: Any) -> Window:
        """The same part, moved back by a time at or before ``lo`` that the video's ``time_base`` and the
        ``others`` (the copied streams' time bases) all hold exactly, so every stream moves by the same time: AVI's
        video ticks are whole frames and its MP2 sound's 24 ms packets, and moving each by its own rounding put
        them 16 ms apart. Where the common grid would be coarser than ``GRID_MAX``, the video's own."""
        if not time_base or self.open_start:
            return self
        tb = grid = Fraction(time_base)
        for o in others:
            if o:
                o = Fraction(o)
                common = Fraction(math.lcm(grid.numerator, o.numerator), math.gcd(grid.denominator, o.denominator))
                if common <= GRID_MAX:
                    grid = common
        grid = grid if grid <= GRID_MAX else tb
        return Window(self.lo, self.hi, math.floor(self.lo / grid) * grid)

    @property
    def moved(self) -> Fraction:
        """How far kept times move back (s)."""
        return self.lo if self.zero is None else self.zero

    def ticks(self, time_base: Fraction) -> int:
        """``moved`` in ``time_base`` ticks, rounded down: a kept time stays >= 0."""
        return math.floor(self.moved / Fraction(time_base))

    def before(self, t: Fraction | float) -> bool:
        return not self.open_start and t < self.lo

    def after(self, t: Fraction | float) -> bool:
        """At or past the end (kept times are < hi)."""
        return self.hi is not None and t >= self.hi


class PacketCut:
    """The part's rule for the packets of the streams copied with it (audio, subtitles, data): kept when their
    time lies in the part, then moved with it. A subtitle on screen when the part starts is kept once (two
    readings may meet it), from the part's start, for what is left of it; one still on screen at its end is cut
    there. Shared by the reader and the scale-out join."""

    def __init__(self, window: Window) -> None:
        self.window = window
        self.lead: set[tuple[int, int, bytes]] = set()  # subtitles (stream, pts, text) begun before the part, kept
        # bitmap subtitle stream -> its last packet before the part (``on_screen``); and ASS lines begun before it,
        # rewritten (``_ready``: given out as they are, moved with the part)
        self.shown: dict[Any, Any] = {}
        self._ready: set[int] = set()
        self._set: dict[int, list[Any]] = {}  # bitmap subtitle stream -> the packets at the time of its ``shown``
        self._ticks: dict[Fraction, int] = {}

    def ticks(self, time_base: Fraction) -> int:
        """How far kept times move back, in ``time_base`` ticks."""
        tb = Fraction(time_base)
        t = self._ticks.get(tb)
        if t is None:
            t = self._ticks[tb] = self.window.ticks(tb)
        return t

    def __call__(self, pkt: Any) -> bool:
        """Whether ``pkt`` is kept; a kept packet's times (and a subtitle's duration) are rewritten."""
        win, tb = self.window, Fraction(pkt.time_base)
        at = pkt.pts if pkt.pts is not None else pkt.dts
        if at is None or win.after(at * tb):
            return False
        subtitle = pkt.stream.type == "subtitle" and pkt.duration
        if win.before(at * tb) and pkt.stream.type == "subtitle" and not pkt.duration:
            # a bitmap subtitle (PGS, DVB, DVD) lasts until the stream's next packet: the last one before the part
            # is on screen when it starts (or is the empty one that cleared the screen)
            last = self.shown.get(pkt.stream.index)
            before = None if last is None else last.pts if last.pts is not None else last.dts
            if before is None or at >= before:
                # a PGS display set demuxed a segment a packet (FFmpeg's .sup and M2TS readers) shares one time:
                # the earlier packets of the last one go with it (its end segment alone shows nothing)
                held = self._set.setdefault(pkt.stream.index, [])
                if before is None or at > before:
                    held.clear()
                elif last is not None:
                    held.append(last)
                self.shown[pkt.stream.index] = pkt
            return False
        if win.before(at * tb):
            lo = math.ceil(win.lo / tb)
            key = (pkt.stream.index, at, bytes(pkt))  # lines begun together (ASS signs and dialogue) are two
            if not subtitle or at + pkt.duration <= lo or key in self.lead:
                return False
            self.lead.add(key)
            if not _from_part_start(pkt, (lo - at) * tb):  # (a DVD subpicture whose own stop came first)
                return False
            if (moved := _ass_from(pkt, lo - at)) is not None:  # its timed effects rewritten: given out as a new
                moved.pts = moved.dts = lo  # packet with the bitmap subtitles on screen (``on_screen``)
                if win.hi is not None and (lo + moved.duration) * tb > win.hi:
                    moved.duration = math.ceil(win.hi / tb) - lo
                self.shown[("ass", pkt.stream.index, len(self.shown))] = moved
                self._ready.add(id(moved))
                return False
            pkt.duration -= lo - at
            if pkt.dts is not None:
                pkt.dts += lo - at
            if pkt.pts is not None:
                pkt.pts = lo
            at = lo
        if subtitle and win.hi is not None and (at + pkt.duration) * tb > win.hi:
            pkt.duration = math.ceil(win.hi / tb) - at
        shift = self.ticks(tb)
        if pkt.pts is not None:
            pkt.pts -= shift
        if pkt.dts is not None:
            pkt.dts -= shift
        return True

    def on_screen(self) -> list[Any]:
        """The bitmap subtitles on screen when the part starts (each stream's last packet before it), moved to the
        part's start; each once (two readings may meet it). Asked for when the part has begun."""
        out = []
        for pkt in self.shown.values():
            tb = Fraction(pkt.time_base)
            if id(pkt) in self._ready:
                pkt.pts -= self.ticks(tb)
                pkt.dts = pkt.pts
                out.append(pkt)
                continue
            at = pkt.pts if pkt.pts is not None else pkt.dts
            key = (pkt.stream.index, at, bytes(pkt))
            if key in self.lead:
                continue
            self.lead.add(key)
            lo = math.ceil(self.window.lo / tb)
            if not _from_part_start(pkt, (lo - at) * tb):  # a DVD subpicture that had left the screen
                continue
            for q in [*self._set.get(pkt.stream.index, ()), pkt]:
                q.pts = q.dts = lo - self.ticks(tb)
                out.append(q)
        self.shown.clear()
        self._set.clear()
        self._ready.clear()
        return out


def _ass_from(pkt: Any, elapsed: int) -> Any:
    """An ASS line begun ``elapsed`` ticks before the part, its timed effects (\\fad, \\fade, \\move, \\t,
    the karaoke syllables) made to count from the part's start: rewritten in place where the new text is no longer
    (spaces pad its first override block, which renderers skip), else a new packet of what is left of it (given
    out with the bitmap subtitles on screen); None where the packet itself is moved."""
    from .subtitles import ass_after, codec_name

    if codec_name(pkt.stream) not in ("ass", "ssa") or elapsed <= 0:
        return None

    tb = Fraction(pkt.time_base)
    data = bytes(pkt)
    new = ass_after(data, elapsed * tb, pkt.duration * tb)
    if new == data:
        return None
    if len(new) <= len(data):
        brace = new.index(b"{", len(b",".join(new.split(b",", 8)[:8])) + 1) + 1
        pkt.update(new[:brace] + b" " * (len(data) - len(new)) + new[brace:])
        return None
    import av

    out = av.Packet(new)
    out.stream = pkt.stream
    out.time_base, out.duration = pkt.time_base, pkt.duration - elapsed
    return out


def _from_part_start(pkt: Any, elapsed: Fraction) -> bool:
    """A subtitle packet begun ``elapsed`` s before the part, about to be moved to its start: a DVD subpicture's
    own times (its control sequences' dates, its stop command) made to count from there; False for one that had
    already left the screen."""
    from .subtitles import codec_name

    if codec_name(pkt.stream) == "dvd_subtitle":
        from .bitmap_subs import spu_after

        data = bytes(pkt)
        new = spu_after(data, elapsed)
        if new is None:
            return False
        if new != data:
            pkt.update(new)  # (the same size: dates edited in place)
    return True


# a part starting closer than this to the video's start is read from the start: decoding that little costs less than
# what a seek there can get wrong (sound muxed before the first keyframe, an MPEG-TS seek landing mid-GOP)
SEEK_MIN = 10
SEEK_PAD = 1  # s: a seek aims this far before the part (bwdif gets the frame before it; loosely muxed sound)
SEEK_RETRY = (10, 60)  # s before the part: where to seek again when a seek passed over some of it
NO_TIMESTAMPS = 0x80  # AVFMT_NOTIMESTAMPS: raw elementary streams, which can't seek by time (and fail at the end)


def worth_seeking(c: Any, video: Any, win: Window) -> bool:
    """Whether to seek ``c`` to the part rather than read it from the start: a file (a pipe is read anyway),
    with timestamps (a raw stream's failed seek leaves it at its end), the part well into its ``video`` stream."""
    from pathlib import Path

    if win.open_start or not video.time_base or not Path(c.name).is_file() or c.format.flags & NO_TIMESTAMPS:
        return False
    start = video.start_time * Fraction(video.time_base) if video.start_time is not None else Fraction(0)
    return win.lo - start > SEEK_MIN


def seek(c: Any, target: Fraction) -> bool:
    """Read ``c`` from the keyframe at or before ``target`` (s, the file's times); False where it can't."""
    import av

    try:
        c.seek(math.floor(target * 1_000_000), backward=True)  # AV_TIME_BASE, the default stream
        return True
    except (av.error.FFmpegError, OSError, ValueError):
        return False


def decode_part(c: Any, stream: Any, win: Window | None) -> Iterator[Any]:
    """The decoded frames of ``c``'s ``stream`` that lie in the part (every frame without ``win``), for the
    readers that need only frames (a video into an animation, --crop auto)."""
    if win is None:
        yield from continuous(c, stream)
        return
    yield from _kept(frames_from(c, stream, win), win)


def frames_from(c: Any, stream: Any, win: Window) -> Iterator[Any]:
    """Every decoded frame of ``c``'s ``stream`` from a keyframe at or before the part's start: sought as the video
    reader seeks (to the keyframe before start - 1 s, again 10 s and 60 s further back when the first frame is
    past the start or none comes before the end; where no seek gets there, the file read again from its start),
    or from the file's start where a seek is not worth it."""
    if not worth_seeking(c, stream, win):
        yield from continuous(c, stream)
        return
    for back in (SEEK_PAD, *SEEK_RETRY):
        if not seek(c, win.lo - back):
            break
        frames = continuous(c, stream)
        first = next(frames, None)
        t = None if first is None or first.pts is None else first.pts * first.time_base
        if first is not None and (t is None or t <= win.lo):
            yield first
            yield from frames
            return
        stream.codec_context.flush_buffers()  # late (or at the end): again, further back
    import av

    with av.open(c.name, format=c.format.name.split(",")[0]) as again:
        yield from continuous(again, again.streams[stream.index])


def continuous(c: Any, stream: Any) -> Iterator[Any]:
    """``c.decode(stream)``, timed as the video reader times frames (``continuity``: joined recordings)."""
    from .continuity import decode

    return decode(c, stream)


def _kept(frames: Iterator[Any], win: Window) -> Iterator[Any]:
    """The frames of ``frames`` (decoded from the start) in the part, up to its end."""
    for f in frames:
        t = f.pts * f.time_base if f.pts is not None and f.time_base else None
        if t is not None and win.after(t):
            return
        if t is None or not win.before(t):
            yield f


def part_window(trim: Trim, c: Any, video: Any, out_ticks: tuple[Fraction, ...] = ()) -> Window:
    """``trim`` in ``c``'s own times, on the grid of its ``video`` stream's and its other streams' time bases and
    ``out_ticks`` (the output's, where it counts in frames: AVI) (the single-process run and the scale-out join
    take it the same way, and land their frames on the same ticks)."""
    others = [s.time_base for s in c.streams if s.index != video.index and s.type in ("audio", "subtitle", "data",
                                                                                      "video")]
    return trim.window(container_origin(c)).on_grid(video.time_base, *out_ticks, *others)


def container_origin(c: Any) -> Fraction:
    """Where a player's 0 lies in the file's times: the container's start time (MPEG-TS starts at 1.4 s)."""
    return Fraction(c.start_time or 0, 1_000_000)


def trim_chapters(chapters: list[dict[str, Any]], win: Window) -> list[dict[str, Any]]:
    """The chapters that overlap the part, cut to it and moved with it (a chapter begun before the part begins
    the output)."""
    out = []
    for ch in chapters:
        tb = Fraction(ch["time_base"])
        start, end = ch["start"] * tb, ch["end"] * tb
        if (end <= win.lo and not win.open_start) or (win.hi is not None and start >= win.hi):
            continue
        start = (start if win.open_start else max(start, win.lo)) - win.moved
        end = (min(end, win.hi) if win.hi is not None else end) - win.moved
        out.append(dict(ch, start=math.floor(start / tb), end=math.ceil(end / tb)))
    return out


def shift_timecode(tc: str, frames: int, rate: Fraction | None) -> str | None:
    """The SMPTE timecode ``frames`` frames after ``tc`` (``HH:MM:SS:FF``, or drop-frame at 29.97/59.94: any
    other last separator, ``;`` as a rule, as FFmpeg reads it), or None when it can't be told (no frame rate, a
    malformed timecode)."""
    m = re.match(r"^(\d+):(\d\d):(\d\d)([:;.,])(\d+)$", tc.strip())
    if not m or not rate:
        return None
    hh, mm, ss, sep, ff = m.groups()
    nominal = round(float(rate))
    if nominal <= 0:
        return None
    drop = (2 if nominal == 30 else 4 if nominal == 60 else 0) if sep != ":" else 0
    minutes = int(hh) * 60 + int(mm)
    n = (minutes * 60 + int(ss)) * nominal + int(ff) - drop * (minutes - minutes // 10) + frames
    if drop:  # frame number -> drop-frame labels (SMPTE 12M: two labels skipped each minute but every tenth)
        per10, per1 = nominal * 600 - drop * 9, nominal * 60 - drop
        tens, rest = divmod(n, per10)
        n += drop * 9 * tens + (drop * ((rest - drop) // per1) if rest > drop else 0)
    ff_, sec = n % nominal, n // nominal
    return f"{sec // 3600 % 24:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}{sep}{ff_:02d}"


__all__ = ["SEEK_MIN", "SEEK_PAD", "SEEK_RETRY", "PacketCut", "Trim", "TrimError", "Window", "clock",
           "container_origin", "decode_part", "frames_from", "parse_time", "part_window", "seek", "shift_timecode",
           "trim_chapters", "worth_seeking"]

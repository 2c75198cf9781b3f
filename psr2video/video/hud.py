"""Progress: a rich Live panel on a TTY, plain periodic lines otherwise, a final summary; fps burn-in.

``Stats`` is written by the three threads (decode / device / encode) and read by the HUD, always under its
lock: writers call its methods, readers take a ``snapshot()``. Per-stage figures are exponential moving
averages of milliseconds per frame.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class Stats:
    total: int = 0  # expected frames (0 = unknown)
    exact: bool = True  # ``total`` is a count (the container's), not an estimate from length x frame rate
    length: float = 0.0  # media seconds the run covers, when known (0 = unknown): progress and ETA by media time
    cap: int = 0  # --max-frames: the most frames the run can give, not what it will give
    src_fps: float = 0.0
    start: float = field(default_factory=time.perf_counter)
    done: int = 0  # frames through the device stage
    encoded: int = 0
    out_bytes: int = 0
    out_path: str = ""
    final_path: str = ""  # OUT, which ``out_path`` (its temporary name) becomes at the end
    last_time: float = math.nan  # media time (s) of the last frame through the device stage (NaN: not known)
    first_time: float = math.nan  # and of the first
    step: float = 0.0  # s between the last two frames: how long the last one is shown
    stage_ms: dict[str, float] = field(default_factory=dict)
    stage_total: dict[str, float] = field(default_factory=dict)
    queues: dict[str, Any] = field(default_factory=dict)
    device: torch.device | None = None
    _recent: list[tuple[float, int, float]] = field(default_factory=list)  # (wall time, done, media time)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, stage: str, seconds: float, frames: int = 1) -> None:
        """``seconds`` spent in ``stage`` on ``frames`` frames (0: time that belongs to no one frame, such as
        the encoder's final flush: counted in the total, not in the per-frame figure)."""
        with self._lock:
            if frames:
                ms = 1000.0 * seconds / frames
                prev = self.stage_ms.get(stage)
                self.stage_ms[stage] = ms if prev is None else 0.9 * prev + 0.1 * ms
            self.stage_total[stage] = self.stage_total.get(stage, 0.0) + seconds

    def frame_done(self, n: int, media_time: float) -> None:
        """``n`` frames through the device stage, the last at ``media_time`` (NaN: it has no timestamp, a raw
        stream's: timed one frame period after the previous, as the writer times it, so a stop names its time)."""
        now = time.perf_counter()
        with self._lock:
            first = not self.done
            period = 1.0 / self.src_fps if self.src_fps else math.nan
            if media_time == media_time:
                t = media_time
            elif first:
                t = (n - 1) * period
            else:
                t = self.last_time + n * period
            if first:
                self.first_time = t - (n - 1) * (period if period == period else 0.0)
            elif t == t and self.last_time == self.last_time and t > self.last_time:
                self.step = (t - self.last_time) / n
            self.done += n
            self.last_time = t
            self._recent.append((now, self.done, t))
            while len(self._recent) > 2 and now - self._recent[0][0] > 2.0:
                self._recent.pop(0)

    def set_encoded(self, frames: int, out_bytes: int) -> None:
        with self._lock:
            self.encoded, self.out_bytes = frames, out_bytes

    def snapshot(self) -> Stats:
        """A consistent copy for readers (HUD, summary): counters and dicts copied under the lock."""
        with self._lock:
            snap = copy.copy(self)
            snap.stage_ms, snap.stage_total, snap._recent = dict(self.stage_ms), dict(self.stage_total), \
                list(self._recent)
        return snap

    end: float = 0.0

    def finish(self) -> None:
        with self._lock:
            self.end = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return (self.end or time.perf_counter()) - self.start

    @property
    def fps_avg(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def fps_now(self) -> float:
        if self.end:
            return self.fps_avg
        with self._lock:
            if len(self._recent) < 2:
                return self.fps_avg
            (t0, n0, _), (t1, n1, _) = self._recent[0], self._recent[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else self.fps_avg

    @property
    def media_done(self) -> float:
        """Media seconds the frames done cover (the last one shown for the step before it); NaN when unknown."""
        if not self.done or self.last_time != self.last_time or self.first_time != self.first_time:
            return math.nan
        step = self.step or (1.0 / self.src_fps if self.src_fps else 0.0)
        return max(self.last_time - self.first_time + step, 0.0)

    @property
    def realtime(self) -> float | None:
        """Media time over wall time for the whole run (not frames over the nominal rate: a VFR stream's frames
        cover more or less than 1/rate each); None when the frames' times are unknown."""
        m = self.media_done
        return m / self.elapsed if m == m and self.elapsed > 0 else None

    @property
    def realtime_now(self) -> float | None:
        if self.end:
            return self.realtime
        with self._lock:
            recent = [r for r in self._recent if r[2] == r[2]]
        if len(recent) < 2 or recent[-1][0] <= recent[0][0] or recent[-1][2] < recent[0][2]:
            return self.realtime
        return (recent[-1][2] - recent[0][2]) / (recent[-1][0] - recent[0][0])

    @property
    def known_total(self) -> int:
        """The expected frames while they are believable (0 once the run passes them: a container's length
        that undercounts, e.g. joined recordings whose timestamps start again, no longer gives a total or ETA);
        a --max-frames below them lowers them."""
        tot = min(self.total, self.cap) if self.total and self.cap else self.total
        return tot if tot and self.done <= tot else 0

    @property
    def media_fraction(self) -> float | None:
        """How far through the run's media length the frames done are (None when the length is unknown)."""
        m = self.media_done
        return min(m / self.length, 1.0) if self.length > 0 and m == m else None

    @property
    def progress(self) -> float | None:
        """The fraction done while the run's end is known: by frames where their count is exact, else by media
        time (a --max-frames that comes first ends it sooner); None once the run has ended, or with no known end
        (a cap alone is only a bound)."""
        if self.end:
            return None
        if self.known_total and self.exact:
            return self.done / self.known_total
        f = self.media_fraction
        if f is None:
            return None
        return min(max(f, self.done / self.cap if self.cap else 0.0), 1.0)

    def total_after(self, sep: str) -> str:
        """``total_text`` as it follows the count: ``sep`` before a total, a bound in brackets."""
        tot = self.total_text()
        return "" if not tot else f" ({tot})" if tot.startswith("at most") else f"{sep}{tot}"

    def total_text(self) -> str:
        """The frame total as shown after the count: '100' (a count), '~236' (an estimate: the frames done over
        the media fraction they cover, so a VFR stream's converges), 'at most 1000' (a cap, with no known end),
        or ''."""
        if self.known_total and self.exact:
            return str(self.known_total)
        if self.end:
            return ""
        f = self.media_fraction
        est = round(self.done / f) if f else self.known_total
        if est and self.cap:
            est = min(est, self.cap)
        if est and est >= self.done:
            return f"~{est}"
        return f"at most {self.cap}" if self.cap and self.cap >= self.done else ""

    @property
    def eta(self) -> float | None:
        """Seconds left: by frames where their count is exact, else by media time at the current realtime
        factor, or by the cap where that comes first; None with no known end, and once the run has ended."""
        if self.end:
            return None
        fps = self.fps_now
        if self.known_total and self.exact:
            return max(self.known_total - self.done, 0) / fps if fps > 0 else None
        rt, m = self.realtime_now, self.media_done
        if not self.length or not rt or m != m:
            return None
        left = max(self.length - m, 0.0) / rt
        if self.cap and fps > 0:
            left = min(left, max(self.cap - self.done, 0) / fps)
        return left

    def memory(self) -> str:
        if self.device is not None and self.device.type == "cuda":
            return f"{torch.cuda.memory_allocated(self.device) / 2**20:.0f} MiB GPU " \
                   f"(peak {torch.cuda.max_memory_allocated(self.device) / 2**20:.0f})"
        try:
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            return f"{rss / 2**20:.0f} MiB RSS"
        except OSError:
            return "?"

    def out_size(self) -> int:
        """Bytes written so far: the file (audio, subtitles and the container's own bytes too), under its
        temporary name while the run goes on, under OUT once it has been renamed; else the video's bytes."""
        for path in (self.out_path, self.final_path if self.end else ""):
            if path:
                try:
                    return max(Path(path).stat().st_size, self.out_bytes)
                except OSError:
                    continue
        return self.out_bytes

    def depths(self) -> str:
        return " ".join(f"{k} {q.qsize()}/{q.maxsize}" for k, q in self.queues.items())

    def line(self) -> str:
        r = self.realtime_now
        rt = f" ({r:.2f}x realtime)" if r is not None else ""
        tot = self.total_after("/")
        eta = self.eta
        stages = " ".join(f"{k} {v:.1f}" for k, v in self.stage_ms.items())
        return (f"frame {self.done}{tot} | {self.fps_now:.1f} fps now, {self.fps_avg:.1f} avg{rt} | "
                f"ms/frame {stages} | queues {self.depths()} | {self.memory()} | out {_size(self.out_size())} | "
                f"elapsed {_dur(self.elapsed)}" + (f" | ETA {_dur(eta)}" if eta is not None else ""))


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _dur(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class Hud:
    """Live panel (TTY) or plain lines every ``every`` seconds (not a TTY); ``quiet`` shows nothing live."""

    def __init__(self, stats: Stats, title: str, stream: Any = None, every: float = 5.0, quiet: bool = False,
                 tty: bool | None = None) -> None:
        self.stats, self.title = stats, title
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.every, self.quiet = every, quiet
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Any = None

    def _panel(self) -> Any:
        from rich.panel import Panel
        from rich.table import Table

        s = self.stats.snapshot()
        t = Table.grid(padding=(0, 2))
        t.add_column(style="bold cyan")
        t.add_column()
        tot = s.total_after(" / ")
        p = s.progress
        pct = f"  ({100 * p:.0f} %)" if p is not None else ""
        t.add_row("frames", f"{s.done}{tot}{pct}   encoded {s.encoded}")
        r = s.realtime_now
        rt = f"   {r:.2f}x realtime" if r is not None else ""
        rt += f" (source {s.src_fps:.3g} fps)" if s.src_fps else ""
        t.add_row("speed", f"{s.fps_now:.1f} fps now, {s.fps_avg:.1f} avg{rt}")
        t.add_row("ms/frame", "  ".join(f"{k} {v:.1f}" for k, v in s.stage_ms.items()) or "-")
        t.add_row("queues", s.depths() or "-")
        t.add_row("memory", s.memory())
        eta = s.eta
        t.add_row("output", f"{_size(s.out_size())}   elapsed {_dur(s.elapsed)}"
                  + (f"   ETA {_dur(eta)}" if eta is not None else ""))
        return Panel(t, title=self.title, border_style="blue")

    def start(self) -> None:
        if self.quiet:
            return
        if self.tty:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self._panel(), console=Console(file=self.stream), refresh_per_second=4,
                              transient=False)
            self._live.start()
        self._thread = threading.Thread(target=self._loop, name="psr2-hud", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        period = 0.25 if self.tty else self.every
        while not self._stop.wait(period):
            if self._live is not None:
                self._live.update(self._panel())
            else:
                print(self.stats.snapshot().line(), file=self.stream, flush=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._live is not None:
            self._live.update(self._panel())
            self._live.stop()


# --- fps burn-in: a 3x5 bitmap font drawn into the Y plane on the device ---------------------------------
_FONT = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001010010010",
    "8": "111101111101111", "9": "111101111001111", ".": "000000000000010", " ": "000000000000000",
    "f": "011100110100100", "p": "000111101111100", "s": "000011010001110",
}
_GLYPHS: dict[tuple, torch.Tensor] = {}


def _glyph_row(text: str, device: torch.device) -> torch.Tensor:
    key = (text, str(device))
    if key not in _GLYPHS:
        cols = []
        for ch in text:
            g = torch.tensor([int(b) for b in _FONT.get(ch, _FONT[" "])], dtype=torch.bool).reshape(5, 3)
            cols += [g, torch.zeros(5, 1, dtype=torch.bool)]
        _GLYPHS.clear() if len(_GLYPHS) > 256 else None
        _GLYPHS[key] = torch.cat(cols, 1).to(device)
    return _GLYPHS[key]


def burn_text(planes: tuple[torch.Tensor, ...], text: str, bits: int, shift_w: int, shift_h: int) -> None:
    """Draw ``text`` (digits, '.', 'fps') white on a black box in the top-left corner of (N, H, W) planes."""
    y = planes[0]
    h, w = y.shape[-2:]
    k = max(1, h // 120)
    mask = _glyph_row(text, y.device)
    mask = mask.repeat_interleave(k, 0).repeat_interleave(k, 1)
    mh, mw = mask.shape
    pad = k
    bh, bw = min(mh + 2 * pad, h), min(mw + 2 * pad, w)
    m = 1 << (bits - 8)
    y[..., :bh, :bw] = 16 * m
    sub = mask[: bh - pad, : bw - pad]
    region = y[..., pad:pad + sub.shape[0], pad:pad + sub.shape[1]]
    region[..., sub] = 235 * m
    for c in planes[1:]:
        c[..., : -(-bh >> shift_h), : -(-bw >> shift_w)] = 128 * m

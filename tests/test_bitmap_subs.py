"""Bitmap subtitles copied with the video: DVD subpictures and PGS display sets placed on the cropped frame
(--crop), a DVD subpicture's own stop command read at --start, PGS into .m2ts, DVD subpictures' lengths in MP4."""

from __future__ import annotations

import struct
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner

from psr2video.cli import cli
from psr2video.video.bitmap_subs import (
    SPU_TICK,
    dvd_canvas,
    dvd_extradata_sized,
    pgs_cropped,
    spu_after,
    spu_cropped,
    spu_sequences,
    spu_stop,
)

TB = Fraction(1, 1000)


def run(*args: str) -> tuple[int, str]:
    """psr2video upscale ARGS in this process, its notes included (not -q)."""
    r = CliRunner().invoke(cli, ["upscale", *args], catch_exceptions=False)
    return r.exit_code, r.stderr if r.stderr_bytes is not None else r.output  # (click 8.1: mixed, no stderr)
W, H = 64, 48  # the clips' frame: 8-pixel black bars top and bottom


def spu(x: int, y: int, w: int, h: int, stop_ms: int | None) -> bytes:
    """A DVD subpicture: a ``w`` x ``h`` rectangle of colour 3 at (x, y), shown at once, hidden ``stop_ms`` later
    (None: no stop command, it lasts until the next)."""
    line = bytes([0x00, 3])  # a run to the end of the line, colour 3
    top, bot = line * ((h + 1) // 2), line * (h // 2)
    ctrl = 4 + len(top) + len(bot)
    x2, y2 = x + w - 1, y + h - 1
    cmds = bytes([0x03, 0x32, 0x10, 0x04, 0xFF, 0xF0, 0x05, x >> 4, ((x & 0xF) << 4) | (x2 >> 8), x2 & 0xFF,
                  y >> 4, ((y & 0xF) << 4) | (y2 >> 8), y2 & 0xFF, 0x06]) + struct.pack(">HH", 4, 4 + len(top)) \
        + bytes([0x01, 0xFF])
    seq2 = ctrl + 4 + len(cmds)
    body = top + bot + struct.pack(">HH", 0, seq2 if stop_ms else ctrl) + cmds
    if stop_ms:
        body += struct.pack(">HH", int(stop_ms / 1000 / SPU_TICK), seq2) + bytes([0x02, 0xFF])
    return struct.pack(">HH", 4 + len(body), ctrl) + body


def seg(kind: int, payload: bytes) -> bytes:
    return bytes([kind]) + struct.pack(">H", len(payload)) + payload


def pgs_set(num: int, x: int, y: int, w: int, h: int) -> list[bytes]:
    """A PGS display set showing a ``w`` x ``h`` object at (x, y) in a window of its size (one segment each)."""
    pcs = struct.pack(">HHBHBBBB", W, H, 0x10, num, 0x80, 0, 0, 1) + struct.pack(">HBBHH", 0, 0, 0, x, y)
    wds = bytes([1]) + struct.pack(">BHHHH", 0, x, y, w, h)
    pds = bytes([0, 0, 1, 235, 128, 128, 255])
    rle = (bytes([0x00, 0x80 | w, 0x01]) + b"\x00\x00") * h
    ods = struct.pack(">HBB", 0, 0, 0xC0) + (len(rle) + 4).to_bytes(3, "big") + struct.pack(">HH", w, h) + rle
    return [seg(0x16, pcs), seg(0x17, wds), seg(0x14, pds), seg(0x15, ods), seg(0x80, b"")]


def pgs_clear(num: int) -> list[bytes]:
    pcs = struct.pack(">HHBHBBBB", W, H, 0x10, num, 0x00, 0, 0, 0)
    return [seg(0x16, pcs), seg(0x17, bytes([1]) + struct.pack(">BHHHH", 0, 0, 0, W, H)), seg(0x80, b"")]


def video(out: av.container.OutputContainer, frames: int, gop: int = 25) -> list[tuple[float, av.Packet]]:
    v = out.add_stream("libx264", rate=25)
    v.width, v.height, v.pix_fmt = W, H, "yuv420p"
    v.options = {"preset": "ultrafast", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
    pk = []
    for i in range(frames):
        a = np.zeros((H, W, 3), np.uint8)
        a[8:H - 8] = 60 + (i * 4) % 120
        f = av.VideoFrame.from_ndarray(a, format="rgb24")
        f.pts = i
        pk += [(float(p.pts * p.time_base), p) for p in v.encode(f)]
    return pk + [(float(p.pts * p.time_base), p) for p in v.encode(None)]


def dvd_clip(path: Path, subs: list[tuple[int, bytes]], frames: int = 30, gop: int = 25) -> Path:
    """``frames`` of 64x48 H.264 (8-pixel bars) with DVD subtitles (time ms, subpicture) whose extradata names a
    64x48 canvas."""
    with av.open(str(path), "w") as out:
        pk = video(out, frames, gop)
        s = out.add_stream("dvdsub")
        s.time_base = TB
        s.codec_context.extradata = (f"size: {W}x{H}\npalette: " + ", ".join(["000000", "ffffff", "808080",
                                                                              "ffff00"] + ["000000"] * 12)
                                     + "\n").encode()
        for t, data in subs:
            p = av.Packet(data)
            p.pts = p.dts = t
            p.time_base, p.stream = TB, s
            pk.append((t / 1000, p))
        for _, p in sorted(pk, key=lambda x: x[0]):
            out.mux(p)
    return path


def pgs_clip(path: Path, tmp: Path, frames: int = 50, split: bool = False) -> Path:
    """``frames`` of 64x48 H.264 (8-pixel bars) with PGS subtitles: 'A' at 0.3 s (y 30, in the picture) cleared at
    0.8 s, 'B' at 1.0 s (y 2, in the top bar) cleared at 1.5 s; a display set a packet, as FFmpeg reads a .sup
    (``split``: a segment a packet, as a Blu-ray's M2TS carries them; write ``path`` as .m2ts to keep them so:
    FFmpeg's Matroska muxer merges them again)."""
    sup = b""
    for t, segs in ((300, pgs_set(0, 16, 30, 32, 6)), (800, pgs_clear(1)), (1000, pgs_set(2, 10, 2, 40, 4)),
                    (1500, pgs_clear(3))):
        sup += b"".join(b"PG" + struct.pack(">II", t * 90, t * 90) + sg for sg in segs)
    (tmp / "in.sup").write_bytes(sup)
    with av.open(str(path), "w") as out, av.open(str(tmp / "in.sup")) as src:
        pk = video(out, frames)
        s = out.add_stream_from_template(src.streams[0])
        for p in src.demux():
            if p.dts is None:
                continue
            parts = [bytes(p)]
            if split:
                data, parts = bytes(p), []
                while data:
                    n = 3 + struct.unpack(">H", data[1:3])[0]
                    parts, data = [*parts, data[:n]], data[n:]
            for part in parts:
                q = av.Packet(part)
                q.pts, q.dts, q.time_base, q.stream = p.pts, p.dts, p.time_base, s
                pk.append((float(p.pts * p.time_base), q))
        for _, p in sorted(pk, key=lambda x: x[0]):
            out.mux(p)
    return path


def read_subs(path: Path) -> tuple[str, bytes, list[tuple[float, float, bytes]]]:
    """The first subtitle stream's codec, extradata and packets (time s, length s, bytes)."""
    with av.open(str(path)) as c:
        s = c.streams.subtitles[0]
        return s.codec_context.name, bytes(s.codec_context.extradata or b""), [
            (round(float(p.pts * p.time_base), 3), round(float((p.duration or 0) * p.time_base), 3), bytes(p))
            for p in c.demux(s) if p.dts is not None and p.size]


def rects(data: bytes) -> list[tuple[int, int, int, int]]:
    """A subpicture's rectangles (x1, y1, x2, y2)."""
    out = []
    for _, _, cmds in spu_sequences(data) or ():
        for c, i in cmds:
            if c == 0x05:
                b = data[i + 1:i + 7]
                out.append(((b[0] << 4) | (b[1] >> 4), (b[3] << 4) | (b[4] >> 4), ((b[1] & 15) << 8) | b[2],
                            ((b[4] & 15) << 8) | b[5]))
    return out


# --- the bytes -------------------------------------------------------------------------------------------------
def test_spu_stop_and_what_is_left_of_it() -> None:
    data = spu(10, 20, 30, 6, 500)
    stop = spu_stop(data)
    assert stop is not None and abs(stop - Fraction(1, 2)) < SPU_TICK
    assert spu_stop(spu(10, 20, 30, 6, None)) is None
    assert spu_after(data, Fraction(6, 10)) is None  # had left the screen
    later = spu_after(data, Fraction(2, 10))
    assert later is not None and len(later) == len(data)
    left = spu_stop(later)
    assert left is not None and Fraction(3, 10) - SPU_TICK <= left <= Fraction(3, 10) + SPU_TICK
    assert spu_after(b"\x00\x10junk", Fraction(1)) == b"\x00\x10junk"  # not a subpicture: as it is


def test_spu_and_pgs_placed_on_the_cropped_frame() -> None:
    moved, inside = spu_cropped(spu(10, 30, 30, 6, 500), 0, 8, W, H - 16)
    assert rects(moved) == [(10, 22, 39, 27)] and not inside
    moved, inside = spu_cropped(spu(10, 2, 30, 4, 500), 0, 8, W, H - 16)  # in the top bar: moved in
    assert rects(moved) == [(10, 0, 39, 3)] and inside
    assert dvd_canvas(dvd_extradata_sized(b"size: 64x48\npalette: 0\n", 64, 32)) == (64, 32)
    assert dvd_extradata_sized(b"palette: 0\n", 64, 32).startswith(b"size: 64x32\n")
    out, inside = pgs_cropped(pgs_set(0, 10, 2, 40, 4), 0, 8, W, H - 16)
    pcs, wds = out[0][3:], out[1][3:]
    assert struct.unpack(">HH", pcs[:4]) == (W, H - 16) and struct.unpack(">HH", pcs[15:19]) == (10, 0)
    assert struct.unpack(">HH", wds[2:6]) == (10, 0) and inside
    out, inside = pgs_cropped(pgs_set(0, 16, 30, 32, 6), 0, 8, W, H - 16)
    assert struct.unpack(">HH", out[0][3:][15:19]) == (16, 22) and not inside


# --- through a run -------------------------------------------------------------------------------------------------
def test_dvd_subpicture_at_start_keeps_its_own_end(tmp_path: Path) -> None:
    """At --start, a DVD subpicture that had left the screen (its stop command) is not shown again at 0; one still
    on screen keeps only what is left of it (its bytes: the dates count from the part's start)."""
    src = dvd_clip(tmp_path / "dvd.mkv", [(100, spu(10, 30, 30, 6, 300)), (700, spu(10, 30, 30, 6, 600))])
    # (0.1-0.4 s, 0.7-1.3 s): from 0.5 s the first is gone, the second comes at 0.2 s whole; from 1.0 s the second
    # is on screen for 0.3 s more
    for start, at, left in (("0.5", 0.2, Fraction(6, 10)), ("1.0", 0.0, Fraction(3, 10))):
        out = tmp_path / f"cut{start}.mkv"
        code, log = run(str(src), str(out), "--variant", "mks", "--start", start, "--end", "1.2")
        assert code == 0, log
        _, _, subs = read_subs(out)
        assert [t for t, _, _ in subs] == [at], subs
        stop = spu_stop(subs[0][2])
        assert stop is not None and abs(stop - left) <= 2 * SPU_TICK, stop


def test_dvd_subpicture_at_start_in_scale_out(tmp_path: Path) -> None:
    """Scale-out's join cuts DVD subpictures at --start as the single-process run does (one left the screen:
    not shown; one on screen: what is left of it; one in the part: as it is)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_trim import scaleout_part

    from psr2video.video.trim import Trim

    src = dvd_clip(tmp_path / "dvd.mkv", [(100, spu(10, 30, 30, 6, 300)), (700, spu(10, 30, 30, 6, 600)),
                                          (1500, spu(10, 30, 30, 6, 200))], frames=50, gop=5)
    one, many = tmp_path / "one.mkv", tmp_path / "many.mkv"
    code, log = run(str(src), str(one), "--variant", "mks", "-q", "--start", "1.0", "--end", "1.8")
    assert code == 0, log
    scaleout_part(src, many, Trim(Fraction(1), Fraction(9, 5)), seconds=0.2)
    a, b = read_subs(one)[2], read_subs(many)[2]
    assert a == b and [t for t, _, _ in a] == [0.0, 0.5], (a, b)
    left = spu_stop(a[0][2])
    assert left is not None and abs(left - Fraction(3, 10)) <= 2 * SPU_TICK, left


def test_dvd_and_pgs_subtitles_cropped(tmp_path: Path) -> None:
    """--crop 8:8:0:0 of a 64x48 frame: the DVD canvas (size:) and PGS canvases are 64x32, the rectangles move up
    8 pixels, one in the top bar is moved inside (said)."""
    import inspect

    from psr2video.video import pipeline

    src = inspect.getsource(pipeline)
    if "crop=" not in src[src.index("Writer(self.tmp"):src.index("reader.copy_ids")]:
        pytest.skip("the pipeline gives the writer no crop (patch_Q_1 not applied)")
    src = dvd_clip(tmp_path / "dvd.mkv", [(100, spu(10, 30, 30, 6, 400)), (600, spu(10, 2, 30, 4, 400))])
    out = tmp_path / "crop.mkv"
    code, log = run(str(src), str(out), "--variant", "mks", "--crop", "8:8:0:0")
    assert code == 0, log
    assert "moved inside it" in log
    _, extra, subs = read_subs(out)
    assert dvd_canvas(extra) == (W, H - 16)
    assert [rects(d) for _, _, d in subs] == [[(10, 22, 39, 27)], [(10, 0, 39, 3)]]
    src = pgs_clip(tmp_path / "pgs.m2ts", tmp_path, split=True)  # (a display set read whole before it is moved)
    out = tmp_path / "pcrop.mkv"
    code, log = run(str(src), str(out), "--variant", "mks", "--crop", "8:8:0:0")
    assert code == 0, log
    with av.open(str(out)) as c:
        pk = [p for p in c.demux(c.streams.subtitles[0]) if p.size]
        got = [(r.x, r.y) for p in pk for r in p.decode()]
        canvases = {struct.unpack(">HH", bytes(p)[3:7]) for p in pk if bytes(p)[0] == 0x16}
    assert got == [(16, 22), (10, 0)] and canvases == {(W, H - 16)}


def test_pgs_display_set_on_screen_at_start(tmp_path: Path) -> None:
    """A PGS subtitle on screen when a part starts, demuxed a segment a packet (M2TS): its whole display set is
    kept from 0 (only its last packet, the end segment, was: nothing showed until the next)."""
    src = pgs_clip(tmp_path / "pgs.m2ts", tmp_path, split=True)
    with av.open(str(src)) as c:
        assert sum(1 for p in c.demux(c.streams.subtitles[0]) if p.size) == 16  # (a segment a packet)
    out = tmp_path / "cut.mkv"
    code, log = run(str(src), str(out), "--variant", "mks", "-q", "--start", "1.2")
    assert code == 0, log
    with av.open(str(out)) as c:
        shown = [(round(float(p.pts * p.time_base), 3), r.x, r.y) for p in c.demux(c.streams.subtitles[0])
                 if p.size for r in p.decode()]
    assert shown == [(0.0, 10, 2)], shown


@pytest.mark.parametrize(("ext", "kept"), [(".m2ts", True), (".mts", True), (".ts", False)])
def test_pgs_into_m2ts(tmp_path: Path, ext: str, kept: bool) -> None:
    """M2TS (Blu-ray's MPEG-TS, .m2ts/.mts) holds PGS: carried, every display set read back; .ts does not."""
    src = pgs_clip(tmp_path / "pgs.mkv", tmp_path, frames=40)
    out = tmp_path / f"out{ext}"
    code, log = run(str(src), str(out), "--variant", "mks")
    assert code == 0, log
    with av.open(str(src)) as c:
        n = sum(1 for p in c.demux(c.streams.subtitles[0]) if p.size)
    with av.open(str(out)) as c:
        subs = [s for s in c.streams if s.type == "subtitle"]
        if not kept:
            assert not subs and "holds only DVB subtitles" in log, log
            return
        assert [s.codec_context.name for s in subs] == ["pgssub"], log
        assert sum(1 for p in c.demux(subs[0]) if p.size) == n


def test_dvd_subtitles_into_mp4_keep_the_last(tmp_path: Path) -> None:
    """Copied into MP4, DVD subpictures get a length (their stop command; else until the next, the last until the
    picture's end): the last one was a sample of no length and did not read back."""
    src = dvd_clip(tmp_path / "dvd.mkv", [(100, spu(10, 30, 30, 6, 400)), (600, spu(10, 30, 30, 6, None))])
    out = tmp_path / "out.mp4"
    code, log = run(str(src), str(out), "--variant", "mks")
    assert code == 0, log
    name, _, subs = read_subs(out)
    assert name == "dvdsub" and [t for t, _, _ in subs] == [0.1, 0.6], subs
    assert subs[-1][1] > 0.5  # the last: to the picture's end (1.2 s)

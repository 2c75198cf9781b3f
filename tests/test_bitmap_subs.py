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
    BitmapEdit,
    crop_on_canvas,
    dvd_canvas,
    dvd_extradata_sized,
    pgs_cropped,
    spu_after,
    spu_cropped,
    spu_sequences,
    spu_stop,
)
from psr2video.video.crop import Crop

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


def pgs_set(num: int, x: int, y: int, w: int, h: int, canvas: tuple[int, int] = (W, H)) -> list[bytes]:
    """A PGS display set showing a ``w`` x ``h`` object at (x, y) in a window of its size (one segment each), on a
    ``canvas`` (width, height)."""
    pcs = struct.pack(">HHBHBBBB", *canvas, 0x10, num, 0x80, 0, 0, 1) + struct.pack(">HBBHH", 0, 0, 0, x, y)
    wds = bytes([1]) + struct.pack(">BHHHH", 0, x, y, w, h)
    pds = bytes([0, 0, 1, 235, 128, 128, 255])
    rle = (bytes([0x00, 0x80 | w, 0x01]) + b"\x00\x00") * h
    ods = struct.pack(">HBB", 0, 0, 0xC0) + (len(rle) + 4).to_bytes(3, "big") + struct.pack(">HH", w, h) + rle
    return [seg(0x16, pcs), seg(0x17, wds), seg(0x14, pds), seg(0x15, ods), seg(0x80, b"")]


def pgs_clear(num: int, canvas: tuple[int, int] = (W, H)) -> list[bytes]:
    pcs = struct.pack(">HHBHBBBB", *canvas, 0x10, num, 0x00, 0, 0, 0)
    return [seg(0x16, pcs), seg(0x17, bytes([1]) + struct.pack(">BHHHH", 0, 0, 0, *canvas)), seg(0x80, b"")]


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


def dvd_clip(path: Path, subs: list[tuple[int, bytes]] | list[tuple[int, bytes, int]], frames: int = 30,
             gop: int = 25, canvas: tuple[int, int] = (W, H)) -> Path:
    """``frames`` of 64x48 H.264 (8-pixel bars) with DVD subtitles (time ms, subpicture[, packet length ms, as
    mkvmerge gives from a stop command]) whose extradata names a
    ``canvas`` (width, height): written once, then remuxed with that extradata (the dvdsub encoder of the first
    write puts its own, a palette without a ``size:`` line)."""
    first = path.with_name(f"enc_{path.name}")
    with av.open(str(first), "w") as out:
        pk = video(out, frames, gop)
        s = out.add_stream("dvdsub")
        s.time_base = TB
        for t, data, *length in subs:
            p = av.Packet(data)
            p.pts = p.dts = t
            p.time_base, p.stream = TB, s
            if length:
                p.duration = length[0]
            pk.append((t / 1000, p))
        for _, p in sorted(pk, key=lambda x: x[0]):
            out.mux(p)
    extra = (f"size: {canvas[0]}x{canvas[1]}\npalette: "
             + ", ".join(["000000", "ffffff", "808080", "ffff00"] + ["000000"] * 12) + "\n").encode()
    with av.open(str(first)) as inp, av.open(str(path), "w") as out:
        streams = {}
        for st in inp.streams:
            streams[st.index] = out.add_stream_from_template(st)
            if st.type == "subtitle":
                streams[st.index].codec_context.extradata = extra
        for p in inp.demux():
            if p.dts is not None:
                p.stream = streams[p.stream.index]
                out.mux(p)
    first.unlink()
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


# --- --crop on a subtitle canvas of another size than the video --------------------------------------------------
def test_crop_scaled_onto_the_canvas() -> None:
    """--crop is in the video's pixels: a canvas of another size gets it scaled (a 1080p PGS with a 720p video:
    times 1.5); nothing left: None."""
    crop = Crop(8, 8, 0, 0)
    assert crop_on_canvas(crop, (W, H), (W, H)) == (0, 8, W, H - 16)
    assert crop_on_canvas(crop, (W, H), None) == (0, 8, W, H - 16)  # (no video size: the canvas's own)
    assert crop_on_canvas(crop, (2 * W, 2 * H), (W, H)) == (0, 16, 2 * W, 2 * H - 32)
    assert crop_on_canvas(Crop(16, 16, 0, 0), (W // 2, H // 2), (W, H)) == (0, 8, W // 2, H // 2 - 16)
    assert crop_on_canvas(Crop(138, 138, 0, 0), (1920, 1080), (1280, 720)) == (0, 207, 1920, 666)
    assert crop_on_canvas(Crop(16, 16, 0, 0), (W, H), (W, H)) == (0, 16, W, H - 32)
    assert crop_on_canvas(Crop(24, 24, 0, 0), (W, H), (W, H)) is None
    assert crop_on_canvas(crop, (W, H), (W, H // 3)) is None  # the crop passes the canvas: nothing kept


def test_pgs_canvas_with_nothing_left_is_kept_and_said() -> None:
    """A display set whose canvas the crop leaves nothing of is left as it was, said once (a struct.error from a
    negative canvas size was a traceback)."""
    notes: list[str] = []
    edit = BitmapEdit("hdmv_pgs_subtitle", Crop(16, 16, 0, 0))  # (no video size: the canvas taken as the video)
    pk = []
    for i, data in enumerate([b"".join(pgs_set(0, 4, 10, 16, 4, canvas=(32, 24))), b"".join(pgs_clear(1, (32, 24)))]):
        p = av.Packet(data)
        p.pts = p.dts = i
        pk.append(p)
    got = [bytes(q) for p in pk for q in edit.feed(p, notes.append, 3)]
    assert got == [bytes(p) for p in pk]
    assert len(notes) == 1 and "leaves nothing of its 32x24 canvas" in notes[0], notes
    dvd = BitmapEdit("dvd_subtitle", Crop(8, 8, 0, 0), (W, H))
    dvd.canvas = (W, H)
    # (the last: a subpicture whose control sequence parses but whose rectangle can't be moved: ValueError inside)
    raising = bytes.fromhex("002e0010000f00030003000300030003000088280332100434f00500a02701e0"
                            "01060004000a01ff0023002802ff")
    for junk in (b"\x00\x10junk", b"\x00\x08\x00\x04\x00\x00\x00\x04", b"\x16\x00\x02ab\x80\x00\x00", raising):
        p = av.Packet(junk)
        assert [bytes(q) for q in dvd.feed(p, notes.append, 1)] == [junk]  # not understood: as it was


def pgs_canvas_clip(path: Path, tmp: Path, canvas: tuple[int, int], at: tuple[int, int, int, int],
                    preview: bool = False) -> Path:
    """30 frames of 64x48 H.264 with one PGS subtitle on a ``canvas`` (width, height): an object ``at`` (x, y, w,
    h) from 0.3 s, cleared at 0.8 s; ``preview``: a 32x24 video stream before the main one."""
    sup = b"".join(b"PG" + struct.pack(">II", t * 90, t * 90) + sg
                   for t, segs in ((300, pgs_set(0, *at, canvas=canvas)), (800, pgs_clear(1, canvas))) for sg in segs)
    (tmp / "canvas.sup").write_bytes(sup)
    with av.open(str(path), "w") as out, av.open(str(tmp / "canvas.sup")) as src:
        pk = []
        if preview:
            small = out.add_stream("libx264", rate=25)
            small.width, small.height, small.pix_fmt = 32, 24, "yuv420p"
            small.options = {"preset": "ultrafast"}  # (no B-frames: the packets are muxed in time order)
            for i in range(30):
                f = av.VideoFrame.from_ndarray(np.zeros((24, 32, 3), np.uint8), format="rgb24")
                f.pts = i
                pk += [(float(p.pts * p.time_base), p) for p in small.encode(f)]
            pk += [(float(p.pts * p.time_base), p) for p in small.encode(None)]
        pk += video(out, 30)
        s = out.add_stream_from_template(src.streams[0])
        for p in src.demux():
            if p.dts is not None:
                p.stream = s
                pk.append((float(p.pts * p.time_base), p))
        for _, p in sorted(pk, key=lambda x: x[0]):
            out.mux(p)
    return path


@pytest.mark.parametrize(("canvas", "at", "crop", "want"), [
    ((2 * W, 2 * H), (32, 60, 64, 12), "8:8:0:0", ((2 * W, 2 * H - 32), (32, 44))),  # 1080p PGS on a 720p video
    ((W // 2, H // 2), (4, 10, 16, 4), "16:16:0:0", ((W // 2, H // 2 - 16), (4, 2)))])  # (was a struct.error)
def test_pgs_canvas_of_another_size_cropped(tmp_path: Path, canvas: tuple[int, int], at: tuple[int, int, int, int],
                                            crop: str, want: tuple[tuple[int, int], tuple[int, int]]) -> None:
    """A PGS canvas larger or smaller than the video: the crop's edges scaled to it (the canvas was cut by the
    video's pixels: the wrong size and places, and a negative size for a small one, a traceback)."""
    src = pgs_canvas_clip(tmp_path / "pgs.mkv", tmp_path, canvas, at)
    out = tmp_path / "crop.mkv"
    code, log = run(str(src), str(out), "--variant", "mks", "-q", "--crop", crop)
    assert code == 0, log
    with av.open(str(out)) as c:
        pk = [bytes(p) for p in c.demux(c.streams.subtitles[0]) if p.size]
    pcs = [p[3:] for p in pk if p[0] == 0x16]
    assert {struct.unpack(">HH", p[:4]) for p in pcs} == {want[0]}
    assert struct.unpack(">HH", pcs[0][15:19]) == want[1]


def test_dvd_canvas_of_another_size_cropped(tmp_path: Path) -> None:
    """A DVD stream whose ``size:`` names a canvas twice the video's: its ``size:`` line replaced by the crop scaled
    to it, the rectangles moved by the scaled top edge; one a quarter of the video's (a negative ``size:`` was
    written, the crop taken as its pixels): scaled down."""
    subs = [(100, spu(10, 60, 30, 6, 400))]
    src = dvd_clip(tmp_path / "dvd.mkv", subs, canvas=(2 * W, 2 * H))
    assert dvd_canvas(read_subs(src)[1]) == (2 * W, 2 * H)  # (a real size: line, as a DVD rip's)
    out = tmp_path / "crop.mkv"
    code, log = run(str(src), str(out), "--variant", "mks", "-q", "--crop", "8:8:0:0")
    assert code == 0, log
    _, extra, got = read_subs(out)
    assert dvd_canvas(extra) == (2 * W, 2 * H - 32) and extra.count(b"size:") == 1, extra
    assert [rects(d) for _, _, d in got] == [[(10, 44, 39, 49)]]
    src = dvd_clip(tmp_path / "small.mkv", [(100, spu(2, 4, 8, 2, 400))], canvas=(W // 4, H // 4))
    out = tmp_path / "small_crop.mkv"
    code, log = run(str(src), str(out), "--variant", "mks", "-q", "--crop", "16:16:0:0")
    assert code == 0, log
    _, extra, got = read_subs(out)
    assert dvd_canvas(extra) == (W // 4, H // 4 - 8) and [rects(d) for _, _, d in got] == [[(2, 0, 9, 1)]]


def test_dvd_subpictures_with_and_without_a_length(tmp_path: Path) -> None:
    """A DVD stream mixing subpictures with a length (held for an early end's cut) and without: the one without
    went out at once, before the held one, and FFmpeg refused the stream's time going back ('Invalid argument')."""
    src = dvd_clip(tmp_path / "dvd.mkv", [(100, spu(10, 30, 30, 6, 1000), 1000), (600, spu(10, 10, 30, 6, None), 0)])
    assert [(t, d) for t, d, _ in read_subs(src)[2]] == [(0.1, 1.0), (0.6, 0.0)]
    out = tmp_path / "o.mkv"
    code, log = run(str(src), str(out), "--variant", "mks", "-q")
    assert code == 0, log
    assert [(t, d) for t, d, _ in read_subs(out)[2]] == [(0.1, 1.0), (0.6, 0.0)]


def test_pgs_crop_scaled_against_the_main_video(tmp_path: Path) -> None:
    """A preview track first (32x24), the main 64x48 video second: --crop is in the main video's pixels, and a PGS
    canvas of that size keeps the crop unscaled (it was scaled against the first video stream: 64x16, not 64x32)."""
    path = pgs_canvas_clip(tmp_path / "two.mkv", tmp_path, (W, H), (10, 30, 16, 4), preview=True)
    code, log = run(str(path), str(tmp_path / "o.mkv"), "--variant", "mks", "-q", "--crop", "8:8:0:0")
    assert code == 0, log
    with av.open(str(tmp_path / "o.mkv")) as c:
        pk = [bytes(p) for p in c.demux(c.streams.subtitles[0]) if p.size]
    assert {struct.unpack(">HH", p[3:7]) for p in pk if p[0] == 0x16} == {(W, H - 16)}

"""Nothing lost, nothing silent: inputs that used to lose picture or time without a word.

Every input is a real file made here with PyAV (FFmpeg's encoders, muxers and filters); every output is
checked by reading it back with PyAV (no ffprobe on the test machines), not with psr2video's own reader.
"""

from __future__ import annotations

import io
import math
import struct
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner
from test_video import packets, pattern

from psr2video.cli import cli
from psr2video.paths import SAMPLE_CLIP
from psr2video.video import color as C

ROOT = Path(__file__).resolve().parents[1]
TB = Fraction(1, 1000)
SWS = {C.SPACE_BT709: "ITU709", C.SPACE_BT470BG: "ITU601", C.SPACE_SMPTE170M: "SMPTE170M",
       C.SPACE_BT2020_NCL: "BT2020"}


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, ["upscale", *args, "-q"], catch_exceptions=False)
    return r.exit_code, r.stderr if r.stderr_bytes is not None else r.output  # (click 8.1: mixed, no stderr)


def error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("Error")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def n_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


# --- colour: RGB, packed YUV and palette input -------------------------------------------------------------
PATCHES = [(30, 200, 40), (230, 30, 30), (40, 60, 220), (128, 128, 128), (250, 250, 250), (12, 12, 12),
           (250, 220, 30), (90, 20, 140)]


def patches(h: int, w: int) -> np.ndarray:
    """Eight flat colour blocks (4 x 2): their centres survive any resampler."""
    img = np.zeros((h, w, 3), np.uint8)
    for k, c in enumerate(PATCHES):
        r, q = divmod(k, 4)
        img[r * h // 2:(r + 1) * h // 2, q * w // 4:(q + 1) * w // 4] = c
    return img


def centres(img: np.ndarray) -> np.ndarray:
    """Mean colour of an 8x8 block at the centre of each patch."""
    h, w = img.shape[:2]
    out = []
    for k in range(len(PATCHES)):
        r, q = divmod(k, 4)
        cy, cx = (2 * r + 1) * h // 4, (2 * q + 1) * w // 8
        out.append(img[cy - 4:cy + 4, cx - 4:cx + 4].reshape(-1, 3).astype(np.float64).mean(0))
    return np.array(out)


def as_rgb(f: av.VideoFrame) -> np.ndarray:
    """RGB (0-255 scale) as the frame's own tags say (swscale: an independent YUV -> RGB; deep formats through
    rgb48, as swscale's 10-bit -> rgb24 path alone is 3 codes off on flat colours)."""
    deep = max(c.bits for c in av.VideoFormat(f.format.name).components) > 8
    fmt, div = ("rgb48le", 257.0) if deep else ("rgb24", 1.0)
    if av.VideoFormat(f.format.name).is_rgb or f.format.name == "pal8":
        return f.to_ndarray(format=fmt) / div
    return f.to_ndarray(format=fmt, src_colorspace=SWS.get(f.colorspace, "ITU601"),
                        src_color_range="JPEG" if f.color_range == C.RANGE_FULL else "MPEG") / div


def make_colour_clip(path: Path, codec: str, pix_fmt: str, w: int, h: int) -> None:
    img = patches(h, w)
    with av.open(str(path), "w") as out:
        v = out.add_stream(codec, rate=25)
        v.width, v.height, v.pix_fmt = w, h, pix_fmt
        if codec == "libx264rgb":
            v.options = {"qp": "0", "preset": "ultrafast"}
        if pix_fmt == "yuyv422":  # packed YUV, tagged as what it is
            v.codec_context.colorspace = C.SPACE_SMPTE170M
            v.codec_context.color_range = C.RANGE_LIMITED
        for i in range(2):
            if pix_fmt == "pal8":
                pal = np.zeros((256, 4), np.uint8)
                pal[: len(PATCHES), 0] = 255
                pal[: len(PATCHES), 1:] = PATCHES
                idx = np.zeros((h, w), np.uint8)
                for k in range(len(PATCHES)):
                    idx[(img == PATCHES[k]).all(-1)] = k
                f = av.VideoFrame.from_ndarray((idx, pal), format="pal8")
            else:
                f = av.VideoFrame.from_ndarray(img, format="rgb24")
                if pix_fmt != "rgb24":
                    f = f.reformat(format=pix_fmt, dst_colorspace="ITU601", dst_color_range="MPEG")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))


@pytest.mark.parametrize("codec,pix_fmt,w,h,ext", [
    ("ffv1", "bgr0", 1280, 720, "mkv"),  # HD RGB: untagged HD is read as BT.709 (the old recolouring bug)
    pytest.param("libx264rgb", "bgr24", 1280, 720, "mkv", marks=pytest.mark.slow),
    ("ffv1", "gbrp10le", 160, 96, "mkv"),  # 10-bit RGB
    ("rawvideo", "yuyv422", 160, 96, "nut"),  # packed YUV
    ("png", "pal8", 160, 96, "nut"),  # palette
])
def test_rgb_packed_and_palette_colours(tmp_path: Path, codec: str, pix_fmt: str, w: int, h: int, ext: str) -> None:
    """Colours come back within 2 code values, and the output is tagged as what was written (issue 11 item 1,
    issue 15 item 3: RGB used to come out recoloured, or washed out: written limited, tagged full)."""
    src = tmp_path / f"in.{ext}"
    make_colour_clip(src, codec, pix_fmt, w, h)
    with av.open(str(src)) as c:
        f = next(c.decode(video=0))
        assert f.format.name in (pix_fmt, "gbrp", "gbrp10le")  # libx264rgb decodes as gbrp
        want = centres(as_rgb(f))
    assert np.abs(want - np.array(PATCHES)).max() <= 5  # the clip holds about the colours we think it does
    out = tmp_path / "out.mkv"
    code, err = run(str(src), str(out), "--variant", "bicubic", "--codec", "ffv1")
    assert code == 0, err
    with av.open(str(out)) as c:
        cc = c.streams.video[0].codec_context
        assert cc.color_range == C.RANGE_LIMITED
        if pix_fmt != "yuyv422":
            assert cc.colorspace == (C.SPACE_BT709 if h >= 720 else C.SPACE_SMPTE170M)
        frames = list(c.decode(video=0))
    assert len(frames) == 2 and (frames[0].width, frames[0].height) == (2 * w, 2 * h)
    got = centres(as_rgb(frames[0]))
    assert np.abs(got - want).max() <= 2, (got.round(1), want)


def test_decide_color() -> None:
    """One decision: what the reader converts to is what the device stage reads and the output says."""
    rgb = C.decide_color(C.SPACE_RGB, C.RANGE_FULL, None, None, 720, "bgr0")
    assert (rgb.space, rgb.full_range, rgb.work_fmt, rgb.from_rgb) == (C.SPACE_BT709, False, "yuv444p", True)
    assert rgb.output_tags()["color_range"] == C.RANGE_LIMITED
    assert rgb.sws_args()["dst_colorspace"] == "ITU709" and rgb.sws_args()["dst_color_range"] == "MPEG"
    sd = C.decide_color(None, None, None, None, 480, "rgb48le")
    assert (sd.space, sd.bits, sd.work_fmt) == (C.SPACE_SMPTE170M, 16, "yuv444p16le")
    packed = C.decide_color(C.SPACE_BT709, C.RANGE_FULL, None, None, 480, "uyvy422")
    assert (packed.work_fmt, packed.full_range, packed.from_rgb) == ("yuv422p", True, False)
    assert packed.sws_args()["src_colorspace"] == packed.sws_args()["dst_colorspace"]  # codes kept
    alpha = C.decide_color(None, None, None, None, 480, "yuva420p")
    assert alpha.alpha and alpha.work_fmt == "yuv420p"


# --- rotation ----------------------------------------------------------------------------------------------
def test_rotation_display_matrix_carried(tmp_path: Path) -> None:
    """A phone clip's 90-degree display matrix is carried (MP4 and MKV), and the run says so."""
    src = tmp_path / "phone.mp4"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.set_display_rotation(90)
        for i in range(3):
            f = av.VideoFrame.from_ndarray(pattern(48, 64, i), format="rgb24")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    with av.open(str(src)) as c:
        assert next(c.decode(video=0)).rotation == 90
    for ext in ("mp4", "mkv"):
        out_path = tmp_path / f"out.{ext}"
        code, err = run(str(src), str(out_path), "--variant", "mks")
        assert code == 0, err
        assert "rotated by 90 degrees" in err
        with av.open(str(out_path)) as c:
            f = next(c.decode(video=0))
            assert (f.width, f.height, f.rotation) == (128, 96, 90), ext
    # MPEG-TS and AVI have no place for it: the run said "carries the same display matrix" and wrote it unrotated
    for ext, fmt in (("ts", "mpegts"), ("avi", "avi")):
        code, err = run(str(src), str(tmp_path / f"out.{ext}"), "--variant", "mks")
        assert code == 0 and "carries the same display matrix" not in err, err
        assert f"rotated by 90 degrees (display matrix), which {fmt} can't hold: the output shows the pixels " \
               "unrotated" in err, err


# --- damage the demuxer skips --------------------------------------------------------------------------
def make_mkv_with_clusters(path: Path, n: int = 75) -> bytes:
    """A 3 s 25 fps MKV with audio and 0.5 s clusters (a real file's clusters are 1-5 s)."""
    with av.open(str(path), "w", options={"cluster_time_limit": "500"}) as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 160, 120, "yuv420p"
        v.options = {"crf": "20", "preset": "ultrafast", "bf": "0", "g": "12"}
        a = out.add_stream("aac", rate=48000)
        a.layout = "stereo"
        rng = np.random.default_rng(0)
        k = 0
        for i in range(n):
            f = av.VideoFrame.from_ndarray(pattern(120, 160, i), format="rgb24")
            f.pts = i
            out.mux(v.encode(f))
            while k * 1024 < (i + 1) * 48000 / 25:
                af = av.AudioFrame.from_ndarray((rng.standard_normal((2, 1024)) * 0.05).astype(np.float32),
                                                format="fltp", layout="stereo")
                af.sample_rate, af.pts = 48000, k * 1024
                out.mux(a.encode(af))
                k += 1
        out.mux(v.encode(None))
        out.mux(a.encode(None))
    return path.read_bytes()


@pytest.mark.parametrize("garbage", [6000, 200])
def test_skipped_clusters_reported(tmp_path: Path, garbage: int) -> None:
    """Garbage over a cluster header makes the demuxer skip a whole cluster without an error: found from the
    packet positions and timestamps, reported as 'damaged input at A-B s' (exit 1 unless --ignore-errors)."""
    data = bytearray(make_mkv_with_clusters(tmp_path / "in.mkv"))
    clusters = [i for i in range(len(data) - 4) if data[i:i + 4] == b"\x1f\x43\xb6\x75"]
    assert len(clusters) >= 5
    at = clusters[len(clusters) // 2] - 10
    data[at:at + garbage] = bytes((i * 37 + 11) % 256 for i in range(garbage))
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(bytes(data))
    with av.open(str(bad)) as c:  # the demuxer really does skip without raising
        times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    lost = 75 - len(times)
    assert 5 <= lost < 40
    gap = max(range(1, len(times)), key=lambda i: times[i] - times[i - 1])
    out = tmp_path / "o.mkv"
    code, err = run(str(bad), str(out), "--variant", "mks")
    line = error_line(err)
    assert code == 1 and f"damaged input at {times[gap - 1] + 0.04:.2f}-{times[gap]:.2f} s" in line, line
    assert f"~{lost} frames missing" in line and "--ignore-errors" in line
    assert n_frames(out) == len(times)
    code, err = run(str(bad), str(out), "--variant", "mks", "-y", "--ignore-errors")
    assert code == 0 and "damaged input at" in err


def test_regular_vfr_is_not_damage(tmp_path: Path) -> None:
    """A VFR clip's long frame (a pause) is not reported as damage."""
    from test_video import make_clip

    pts = [i * 40 for i in range(10)] + [2000 + i * 40 for i in range(5)]
    src = make_clip(tmp_path / "in.mkv", pts=pts, audio=(), subtitle=False)
    code, err = run(str(src), str(tmp_path / "o.mkv"), "--variant", "mks")
    assert code == 0 and "damaged" not in err, err


# --- HDR10 ---------------------------------------------------------------------------------------------------
MASTER = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"


def hdr_side_data(path: Path) -> tuple[tuple, tuple]:
    from av.sidedata.sidedata import Type

    with av.open(str(path)) as c:
        f = next(c.decode(video=0))
        sd = {k: bytes(v) for k, v in f.side_data.items()}
    md = sd.get(Type.MASTERING_DISPLAY_METADATA, b"")
    cll = sd.get(Type.CONTENT_LIGHT_LEVEL, b"")
    md_v = struct.unpack("<22i", md) if md else ()
    return tuple(md_v[i] / md_v[i + 1] for i in range(0, 20, 2)) if md_v else (), (
        struct.unpack("<2I", cll) if cll else ())


@pytest.fixture(scope="module")
def hdr_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hdr") / "hdr10.mkv"
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx265", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p10le"
        cc = v.codec_context
        cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = 9, 9, 16, 1  # BT.2020, PQ
        v.options = {"crf": "28", "x265-params": f"log-level=error:master-display={MASTER}:max-cll=1000,400"}
        for i in range(3):
            f = av.VideoFrame.from_ndarray(pattern(48, 64, i), format="rgb24").reformat(format="yuv420p10le")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    return path


@pytest.mark.parametrize("codec", ["libx265", "libx264", "libsvtav1"])
def test_hdr10_side_data_carried(hdr_clip: Path, tmp_path: Path, codec: str) -> None:
    """Mastering display and content light level reach the encoder and come back out of the decoder."""
    md, cll = hdr_side_data(hdr_clip)
    assert md and cll == (1000, 400)
    out = tmp_path / "o.mkv"
    code, err = run(str(hdr_clip), str(out), "--variant", "mks", "--codec", codec, "--preset",
                    "12" if codec == "libsvtav1" else "ultrafast")
    assert code == 0, err
    md2, cll2 = hdr_side_data(out)
    assert cll2 == cll
    assert md2 == pytest.approx(md, rel=2e-3, abs=2e-4)
    with av.open(str(out)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.color_trc, cc.color_primaries, cc.pix_fmt) == (16, 9, "yuv420p10le")


def test_hdr10_warns_where_the_encoder_cannot(hdr_clip: Path, tmp_path: Path) -> None:
    code, err = run(str(hdr_clip), str(tmp_path / "o.mkv"), "--variant", "mks", "--codec", "ffv1")
    assert code == 0 and "HDR10" in err and "can't be given to ffv1" in err, err


# --- interlacing ---------------------------------------------------------------------------------------------
def make_interlaced(path: Path, n: int = 6, field: str = "tff") -> None:
    """Interlaced H.264, top field first (or ``field`` "bff"; x264 takes the field order from frame flags: set
    with setfield)."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.options = {"preset": "ultrafast", "crf": "18"}
        v.codec_context.flags |= av.codec.context.Flags.interlaced_dct
        v.codec_context.field_order = 2 if field == "tff" else 3  # AV_FIELD_TT / BB
        g = av.filter.Graph()
        src = g.add_buffer(width=64, height=48, format="yuv420p", time_base=Fraction(1, 25))
        sf = g.add("setfield", field)
        sink = g.add("buffersink")
        src.link_to(sf)
        sf.link_to(sink)
        g.configure()
        for i in range(n):
            f = av.VideoFrame.from_ndarray(pattern(48, 64, i), format="rgb24").reformat(format="yuv420p")
            f.pts, f.time_base = i, Fraction(1, 25)
            src.push(f)
            out.mux(v.encode(sink.pull()))
        out.mux(v.encode(None))


def test_interlaced_keeps_field_order_or_deinterlaces(tmp_path: Path) -> None:
    src = tmp_path / "tff.mkv"
    make_interlaced(src)
    with av.open(str(src)) as c:
        assert c.streams.video[0].codec_context.field_order == 2
        assert all(f.interlaced_frame for f in c.decode(video=0))
    out = tmp_path / "o.mkv"
    code, err = run(str(src), str(out), "--variant", "mks")
    assert code == 0 and "interlaced input (top field first)" in err and "whole frames" in err, err
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.field_order == 2
        frames = list(c.decode(video=0))
    assert len(frames) == 6 and all(f.interlaced_frame for f in frames)
    prog = tmp_path / "p.mkv"
    code, err = run(str(src), str(prog), "--variant", "mks", "--deinterlace")
    assert code == 0 and "deinterlaced (bwdif" in err, err
    with av.open(str(prog)) as c:
        assert c.streams.video[0].codec_context.field_order in (0, 1)
        frames = list(c.decode(video=0))
    assert len(frames) == 6 and not any(f.interlaced_frame for f in frames)


@pytest.mark.parametrize("ext", ["mp4", "ts"])
def test_bottom_field_first_is_read_from_the_frames(tmp_path: Path, ext: str) -> None:
    """Bottom-field-first H.264 in MP4 or MPEG-TS: the stream-level field order is the parser's guess (top first),
    and the run said 'top field first' and wrote the output top field first (judder on an interlaced display),
    while --deinterlace (bwdif, parity=auto) followed the frames' own flag. The frames' flag decides now."""
    from psr2video.video.reader import top_field_first

    src = tmp_path / f"bff.{ext}"
    make_interlaced(src, field="bff")
    with av.open(str(src)) as c:
        assert c.streams.video[0].codec_context.field_order == 2  # (the guess the run used to take)
        assert top_field_first(next(c.decode(video=0))) is False
    out = tmp_path / "o.mkv"
    code, err = run(str(src), str(out), "--variant", "mks")
    assert code == 0 and "interlaced input (bottom field first)" in err, err
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.field_order == 3
        assert top_field_first(next(c.decode(video=0))) is False


# --- MPEG-TS splices: overlapping audio timestamps, a size change -------------------------------------------
def ts_segment(path: Path, t0: float, n: int, size: tuple[int, int], audio_from: float, audio_to: float) -> bytes:
    w, h = size
    with av.open(str(path), "w", format="mpegts") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.time_base = Fraction(1, 90000)
        v.options = {"preset": "ultrafast", "bf": "0"}
        a = out.add_stream("mp2", rate=48000)
        a.layout = "stereo"
        for i in range(n):
            f = av.VideoFrame.from_ndarray(pattern(h, w, i), format="rgb24")
            f.pts, f.time_base = int(round((t0 + i / 25) * 90000)), Fraction(1, 90000)
            out.mux(v.encode(f))
        k = 0
        while audio_from + k * 1152 / 48000 < audio_to:
            af = av.AudioFrame.from_ndarray(np.zeros((2, 1152), np.float32), format="fltp", layout="stereo")
            af.sample_rate = 48000
            af.pts, af.time_base = int(round(audio_from * 48000)) + k * 1152, Fraction(1, 48000)
            out.mux(a.encode(af))
            k += 1
        out.mux(v.encode(None))
        out.mux(a.encode(None))
    return path.read_bytes()


def splice(*segments: bytes) -> bytes:
    """Concatenate TS recordings the way one capture would hold them: continuity counters run on."""
    out = bytearray(b"".join(segments))
    last: dict[int, int] = {}
    for i in range(0, len(out) - 187, 188):
        pid = ((out[i + 1] & 0x1F) << 8) | out[i + 2]
        if out[i + 3] & 0x10:  # has payload: the counter steps
            cc = (last[pid] + 1) & 15 if pid in last else out[i + 3] & 15
            out[i + 3] = (out[i + 3] & 0xF0) | cc
            last[pid] = cc
    return bytes(out)


def test_overlapping_ts_audio_is_fixed_and_named(tmp_path: Path) -> None:
    """A capture spliced from two recordings whose audio overlaps by 0.2 s: fixed like ffmpeg does it, the
    summary names the stream and the time, nothing is dropped (issue 15 item 6)."""
    cap = tmp_path / "cap.ts"
    cap.write_bytes(splice(ts_segment(tmp_path / "a.ts", 0.0, 25, (64, 48), 0.0, 1.1),
                           ts_segment(tmp_path / "b.ts", 1.0, 25, (64, 48), 0.9, 2.0)))
    with av.open(str(cap)) as c:
        dts = [p.dts for p in c.demux(audio=0) if p.dts is not None]
    assert any(b <= a for a, b in zip(dts, dts[1:], strict=False))  # the input really goes backwards
    out = tmp_path / "o.mkv"
    code, err = run(str(cap), str(out), "--variant", "mks")
    assert code == 0, err
    assert "audio stream #1:" in err and "non-increasing timestamps from 0.89 s" in err, err
    with av.open(str(out)) as c:
        got = [p.dts for p in c.demux(audio=0) if p.dts is not None and p.size]
    assert len(got) == len(dts)
    assert all(b >= a for a, b in zip(got, got[1:], strict=False))  # Matroska takes equal dts
    assert n_frames(out) == 50


def test_mid_stream_size_change_is_named(tmp_path: Path) -> None:
    cap = tmp_path / "cap.ts"
    cap.write_bytes(splice(ts_segment(tmp_path / "a.ts", 0.0, 10, (64, 48), 0.0, 0.4),
                           ts_segment(tmp_path / "b.ts", 0.4, 10, (80, 64), 0.4, 0.8)))
    out = tmp_path / "o.mkv"
    code, err = run(str(cap), str(out), "--variant", "mks")
    assert code == 0, err
    assert "input changes size at 0.40 s (64x48 -> 80x64)" in err, err
    with av.open(str(out)) as c:
        sizes = {(f.width, f.height) for f in c.decode(video=0)}
    assert sizes == {(128, 96)}
    assert n_frames(out) == 20


def test_joined_ts_recordings_follow_on(tmp_path: Path) -> None:
    """``cat a.ts b.ts``: the second recording's timestamps start again at 0 (and the join breaks the continuity
    counters). Its frames piled up on one tick after the first's end and its sound on one time, with a false
    "damaged input" at the join; now every later packet moves to follow on (ffmpeg's correction), said."""
    one = ts_segment(tmp_path / "a.ts", 0.0, 50, (64, 48), 0.0, 2.0)
    cat = tmp_path / "cat.ts"
    cat.write_bytes(one + ts_segment(tmp_path / "b.ts", 0.0, 50, (64, 48), 0.0, 2.0))
    out = tmp_path / "o.mkv"
    code, err = run(str(cat), str(out), "--variant", "mks")
    assert code == 0 and "damaged" not in err, err
    assert "timestamps jump (joined recordings?)" in err and "moved to follow on, as ffmpeg does" in err, err
    with av.open(str(out)) as c:
        video = sorted(float(f.pts * f.time_base) for f in c.decode(video=0))
    with av.open(str(out)) as c:
        audio = [float(p.pts * p.time_base) for p in c.demux(audio=0) if p.pts is not None and p.size]
    steps = np.diff(video)  # at the join the second recording follows the sound's end (a 24 ms MP2 frame)
    assert len(video) == 100 and ((steps > 0.038) & (steps < 0.065)).all() and np.median(steps) == pytest.approx(0.04)
    assert all(b > a for a, b in zip(audio, audio[1:], strict=False))
    assert audio[-1] - audio[0] == pytest.approx(video[-1] - video[0], abs=0.1)  # the sound follows on too
    # a video into an animation reads the same times
    assert run(str(cat), str(tmp_path / "o.gif"), "--variant", "mks", "-q")[0] == 0
    with av.open(str(tmp_path / "o.gif")) as c:
        shown = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    assert shown == sorted(shown) and shown[-1] == pytest.approx(3.96, abs=0.05)


def test_scaleout_refuses_timestamps_it_cannot_cut_before_ray(tmp_path: Path) -> None:
    """Joined recordings and video times going back: a single process corrects them; the scale-out cuts can't
    hold them (NUT takes only increasing dts) and stopped with a raw 'Invalid argument' traceback."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'psr2video[ray]')")
    a = ts_segment(tmp_path / "a.ts", 0.0, 25, (64, 48), 0.0, 1.0)
    cat, back = tmp_path / "cat.ts", tmp_path / "back.ts"
    cat.write_bytes(a + ts_segment(tmp_path / "b.ts", 0.0, 25, (64, 48), 0.0, 1.0))
    back.write_bytes(splice(a, ts_segment(tmp_path / "c.ts", 0.92, 10, (64, 48), 1.0, 1.2)))  # a frame back
    for src, words in ((cat, "its timestamps jump from 0.97 s to 0.01 s (joined recordings?)"),
                       (back, "its video timestamps do not increase at 0.92 s")):
        out = tmp_path / "o.mkv"
        code, err = run(str(src), str(out), "--variant", "mks", "-q", "--workers", "2")
        assert code == 1 and "Traceback" not in err, err
        assert words in error_line(err) and "run it without --workers/--ray" in error_line(err), err
        assert not out.exists()
        code, err = run(str(src), str(out), "--variant", "mks", "-q")  # one process takes it
        assert code == 0 and n_frames(out) in (50, 35), err
        out.unlink()


# --- cover art, subtitles that need another form -------------------------------------------------------------
def cover_jpeg() -> bytes:
    """A 32x32 red JPEG: the cover art of the tests below."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), (200, 50, 50), np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def test_cover_art_kept_in_mp4(tmp_path: Path) -> None:
    jpg = cover_jpeg()
    src = tmp_path / "in.mp4"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        cov = out.add_stream("mjpeg")
        cov.width = cov.height = 32
        cov.pix_fmt = "yuvj420p"
        cov.disposition = av.stream.Disposition.attached_pic
        for i in range(4):
            f = av.VideoFrame.from_ndarray(pattern(48, 64, i), format="rgb24")
            f.pts = i
            out.mux(v.encode(f))
        p = av.Packet(jpg)
        p.stream, p.pts, p.dts, p.time_base = cov, 0, 0, cov.time_base
        out.mux(p)
        out.mux(v.encode(None))
    dst = tmp_path / "out.mp4"
    code, err = run(str(src), str(dst), "--variant", "mks")
    assert code == 0, err
    with av.open(str(dst)) as c:
        pics = [s for s in c.streams.video if s.disposition & av.stream.Disposition.attached_pic]
        assert len(pics) == 1
        assert [bytes(p) for p in c.demux(pics[0]) if p.size] == [jpg]
    # MOV: FFmpeg's muxer takes the stream but writes cover art only in MP4 mode; it vanished without a word
    code, err = run(str(src), str(tmp_path / "out.mov"), "--variant", "mks")
    assert code == 0 and "warning: cover art (stream #1) can't be carried in mov; dropped (use .mp4 or .mkv" in err
    # MPEG-TS takes any stream and wrote the cover as a "data" stream no player shows, in silence
    code, err = run(str(src), str(tmp_path / "out.ts"), "--variant", "mks")
    assert code == 0 and "warning: cover art (stream #1) (mjpeg) can't be carried in mpegts" in err, err
    with av.open(str(tmp_path / "out.ts")) as c:
        assert [s.type for s in c.streams] == ["video"]
    # WebM refuses it at add_stream: it was named "video stream #1"
    code, err = run(str(src), str(tmp_path / "out.webm"), "--variant", "mks")
    assert code == 0 and "warning: cover art (stream #1) (mjpeg) can't be carried in webm; dropped" in err, err


def test_stream_facts_a_container_loses_are_named(tmp_path: Path) -> None:
    """Track titles, languages and dispositions the output container has no place for (MPEG-TS: titles; AVI:
    languages; MOV: the commentary flag), and an empty track MP4 leaves out, were lost without a word; they are
    read back from the finished file and named. Matroska keeps them all: nothing said."""
    D = av.stream.Disposition
    src = tmp_path / "in.mkv"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a1 = out.add_stream("mp2", rate=48000)
        a2 = out.add_stream("mp2", rate=48000)
        a3 = out.add_stream("mp2", rate=48000)  # never gets a packet
        for a, lang, title, disp in ((a1, "eng", "Main", D.default), (a2, "fra", "Director commentary", D.comment),
                                     (a3, "deu", "Empty", 0)):
            a.layout = "stereo"
            a.metadata["language"], a.metadata["title"], a.disposition = lang, title, disp
        for i in range(10):
            f = av.VideoFrame.from_ndarray(pattern(48, 64, i), format="rgb24")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
        for a in (a1, a2):
            for k in range(10):
                af = av.AudioFrame.from_ndarray(np.zeros((1, 2304), np.int16), format="s16", layout="stereo")
                af.sample_rate, af.pts = 48000, k * 1152
                out.mux(a.encode(af))
            out.mux(a.encode(None))
    said = {}
    for ext in ("mkv", "ts", "avi", "mov", "mp4"):
        code, err = run(str(src), str(tmp_path / f"o.{ext}"), "--variant", "mks")
        assert code == 0, err
        said[ext] = [ln for ln in err.splitlines() if "lost (.mkv keeps them)" in ln or "empty track" in ln]
    assert said["mkv"] == []
    assert "note: audio stream #2: its title 'Director commentary', comment flag can't be held in mpegts; lost " \
           "(.mkv keeps them)" in said["ts"], said
    assert any("audio stream #1: its language 'eng'" in ln and "in avi" in ln for ln in said["avi"]), said
    assert "note: audio stream #2: its comment flag can't be held in mov; lost (.mkv keeps them)" in said["mov"], said
    assert "note: audio stream #3 has no packet (an empty track) and mp4 leaves empty tracks out" in said["mp4"], said
    assert not any("title" in ln or "language" in ln for ln in said["mp4"]), said  # MP4 keeps them ("name")


def test_klv_data_copied_into_ts_named_where_it_cannot_go(tmp_path: Path) -> None:
    """A drone's KLV telemetry (an MPEG-TS data stream with a codec FFmpeg knows) was dropped as "no codec" even
    into .ts, which holds it; now it is copied packet for packet, and named as dropped where it can't go."""
    src = tmp_path / "klv.ts"
    sent = []
    with av.open(str(src), "w", format="mpegts") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        d = out.add_data_stream("klv")
        out.start_encoding()
        for i in range(25):
            f = av.VideoFrame.from_ndarray(pattern(48, 64, i), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, 25)
            out.mux(v.encode(f))
            if i % 5 == 0:
                sent.append(b"\x06\x0e\x2b\x34" + bytes([i]) * 20)
                pk = av.Packet(sent[-1])
                pk.stream, pk.time_base, pk.pts, pk.dts = d, Fraction(1, 25), i, i
                out.mux(pk)
        out.mux(v.encode(None))
    code, err = run(str(src), str(tmp_path / "o.ts"), "--variant", "mks")
    assert code == 0 and "data stream" not in err, err
    with av.open(str(tmp_path / "o.ts")) as c:
        assert [bytes(p) for p in c.demux() if p.stream.type == "data" and p.size] == sent
    code, err = run(str(src), str(tmp_path / "o.mkv"), "--variant", "mks")
    assert code == 0 and "warning: data stream #1 (klv) can't be carried in matroska; dropped (use .ts to keep it)" \
        in err, err


def test_audio_file_with_cover_art_is_no_video(tmp_path: Path) -> None:
    """A song with its album picture (M4A/MP3 with an attached picture): it was upscaled as a one-frame video and
    then called truncated at 0 s (exit 1, 'damaged'). Now one line: no video, only cover art."""
    src = tmp_path / "song.m4a"
    with av.open(str(src), "w", format="mp4") as out:
        a = out.add_stream("aac", rate=48000)
        a.layout = "stereo"
        cov = out.add_stream("mjpeg", rate=1)
        cov.width, cov.height, cov.pix_fmt = 32, 32, "yuvj420p"
        cov.disposition = av.stream.Disposition.attached_pic
        out.start_encoding()
        p = av.Packet(cover_jpeg())
        p.stream, p.pts, p.dts, p.time_base = cov, 0, 0, Fraction(1, 1)
        out.mux(p)
        for k in range(40):
            af = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
            af.sample_rate, af.pts = 48000, k * 1024
            out.mux(a.encode(af))
        out.mux(a.encode(None))
    out = tmp_path / "o.mkv"
    code, err = run(str(src), str(out), "--variant", "mks")
    assert code == 1 and not out.exists(), err
    assert "no video stream in" in error_line(err) and "only cover art (an audio file's picture)" in error_line(err)


@pytest.mark.parametrize("workers", [(), ("--workers", "2")])
def test_ts_refuses_video_it_would_write_as_data(tmp_path: Path, workers: tuple[str, ...]) -> None:
    """FFmpeg's MPEG-TS muxer takes any codec and writes what it has no stream type for (FFV1, AV1, VP9) as a
    "data" stream: the run ended well with no video in OUT (scale-out too, muxing its segments at the end). Now
    one line before anything loads, naming the codecs it holds."""
    src = tmp_path / "in.ts"
    ts_segment(src, 0.0, 10, (64, 48), 0.0, 0.4)
    for codec, name in (("ffv1", "ffv1"), ("libsvtav1", "av1")):
        out = tmp_path / "o.ts"
        code, err = run(str(src), str(out), "--variant", "mks", "--codec", codec, *workers)
        assert code == 1 and not out.exists(), err
        assert f"mpegts can't hold {name} video (--codec {codec}); pick a --codec it can hold (libx264, libx265)" \
            in error_line(err)
    code, err = run(str(src), str(tmp_path / "o.webm"), "--variant", "mks", "--codec", "libx264")
    assert code == 1 and "webm can't hold h264 video (--codec libx264)" in error_line(err), err
    code, err = run(str(src), str(tmp_path / "o.ts"), "--variant", "mks", "--codec", "libx265")
    assert code == 0, err
    with av.open(str(tmp_path / "o.ts")) as c:
        assert c.streams.video[0].codec_context.name == "hevc"


def make_mov_text(path: Path) -> None:
    from psr2video.video.subtitles import ASS_HEADER

    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        s = out.add_stream("mov_text")
        s.codec_context.subtitle_header = ASS_HEADER
        s.time_base = TB
        for i in range(10):
            f = av.VideoFrame.from_ndarray(pattern(48, 64, i), format="rgb24")
            f.pts = i
            out.mux(v.encode(f))
        for t, txt in ((0, "hello"), (200, "world")):
            p = av.Packet(struct.pack(">H", len(txt)) + txt.encode())
            p.stream, p.pts, p.dts, p.duration, p.time_base = s, t, t, 150, TB
            out.mux(p)
        out.mux(v.encode(None))


def subtitle_texts(path: Path) -> tuple[str, list[bytes], list[int]]:
    with av.open(str(path)) as c:
        s = c.streams.subtitles[0]
        pk = [p for p in c.demux(s) if p.size and p.dts is not None]
        return s.codec_context.name, [bytes(p) for p in pk], [int(p.pts * p.time_base * 1000) for p in pk]


def test_subtitles_converted_between_mp4_and_mkv(tmp_path: Path) -> None:
    """MP4's mov_text goes into .mkv as SRT and SRT goes into .mp4 as mov_text, with the same text and times
    (the old run dropped mov_text with 'use .mkv to keep it' while writing .mkv)."""
    src = tmp_path / "in.mp4"
    make_mov_text(src)
    mkv = tmp_path / "o.mkv"
    code, err = run(str(src), str(mkv), "--variant", "mks")
    assert code == 0 and "written as subrip" in err and "use .mkv" not in err, err
    name, texts, times = subtitle_texts(mkv)
    assert name in ("subrip", "srt") and (texts, times) == ([b"hello", b"world"], [0, 200])
    mp4 = tmp_path / "back.mp4"
    code, err = run(str(mkv), str(mp4), "--variant", "mks")
    assert code == 0 and "written as mov_text" in err, err
    name, texts, times = subtitle_texts(mp4)
    assert name == "mov_text"
    assert [t for t in texts if len(t) > 2] == [b"\x00\x05hello", b"\x00\x05world"]
    webm = tmp_path / "o.webm"  # WebM holds WebVTT: SRT goes in as that (it was dropped)
    code, err = run(str(mkv), str(webm), "--variant", "mks", "--codec", "libvpx-vp9")
    assert code == 0 and "written as webvtt" in err and "can't be carried" not in err, err
    name, texts, times = subtitle_texts(webm)
    assert name == "webvtt" and (texts, times) == ([b"hello", b"world"], [0, 200])


# --- counts --------------------------------------------------------------------------------------------------
def test_overlapping_cues_into_mp4_keep_their_times() -> None:
    """MP4's mov_text shows one sample at a time, and FFmpeg's muxer laid overlapping cues end to end: the second
    of two overlapping lines began when the first ended, and every later cue ran late. Now the overlap is shown
    with both lines, and every cue starts and ends where it did."""
    from psr2video.video.subtitles import CueTimeline

    t = CueTimeline()
    got = t.add(1000, 3000, "Top") + t.add(2000, 4000, "Bottom") + t.add(4500, 5000, "Last") + t.flush()
    assert got == [(1000, 2000, "Top"), (2000, 3000, "Top\nBottom"), (3000, 4000, "Bottom"), (4500, 5000, "Last")]
    t = CueTimeline()  # a cue without a length lasts until the next
    assert t.add(0, math.inf, "a") + t.add(700, 900, "b") + t.flush() == [(0, 700, "a"), (700, 900, "b")]


def test_overlapping_srt_into_mp4_end_to_end(tmp_path: Path) -> None:
    srt = tmp_path / "ov.srt"
    srt.write_text("1\n00:00:01,000 --> 00:00:03,000\nTop line\n\n2\n00:00:02,000 --> 00:00:04,000\nBottom line\n\n"
                   "3\n00:00:04,500 --> 00:00:05,000\nLast\n")
    src = tmp_path / "ov.mkv"
    with av.open(str(src), "w") as out, av.open(str(srt)) as sub:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        s = out.add_stream_from_template(sub.streams[0])
        for i in range(130):
            f = av.VideoFrame.from_ndarray(pattern(48, 64, i), format="rgb24")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
        for pkt in sub.demux():
            if pkt.dts is not None:
                pkt.stream = s
                out.mux(pkt)
    code, err = run(str(src), str(tmp_path / "o.mp4"), "--variant", "mks")
    assert code == 0, err
    with av.open(str(tmp_path / "o.mp4")) as c:
        cues = [(round(float(p.pts * p.time_base), 3), round(float((p.pts + p.duration) * p.time_base), 3),
                 bytes(p)[2:].decode()) for p in c.demux(c.streams.subtitles[0]) if p.size > 2]
    assert cues == [(1.0, 2.0, "Top line"), (2.0, 3.0, "Top line\nBottom line"), (3.0, 4.0, "Bottom line"),
                    (4.5, 5.0, "Last")], cues


def test_sample_frame_count() -> None:
    """The HUD's total for the bundled sample is its real frame count (was 133: the audio's duration)."""
    from psr2video.video.reader import open_input, stream_info

    sample = SAMPLE_CLIP
    if not sample.exists():
        pytest.skip("samples/bbb_480x270.mkv not in this checkout")
    with open_input(str(sample)) as c:
        assert stream_info(c).frames == 132
    assert n_frames(sample) == 132


@pytest.mark.slow  # CI runs it (--run-slow); the default suite stays under 90 s
def test_piped_max_frames_header_has_no_input_duration(tmp_path: Path) -> None:
    """Piping with --max-frames: the Matroska header must not promise the input's duration (it used to copy
    the input tracks' DURATION tags, which a non-seekable muxer writes up front)."""
    import subprocess

    from test_video import make_clip

    src = make_clip(tmp_path / "in.mkv", pts=list(range(0, 4000, 40)), audio=("aac",), subtitle=False)
    p = subprocess.run([sys.executable, "-m", "psr2video", str(src), "-", "--variant", "mks", "-q", "--max-frames",
                        "5"], capture_output=True, timeout=120, cwd=ROOT)  # stdout: a real pipe
    assert p.returncode == 0, p.stderr.decode()

    class Pipe(io.RawIOBase):  # read as a player on the other end of the pipe would: no seeking
        def __init__(self, data: bytes) -> None:
            self.data, self.pos = data, 0

        def readable(self) -> bool:
            return True

        def readinto(self, b: bytearray) -> int:
            n = min(len(b), len(self.data) - self.pos)
            b[:n] = self.data[self.pos:self.pos + n]
            self.pos += n
            return n

    with av.open(Pipe(p.stdout), format="matroska") as c:
        assert c.duration is None or c.duration / 1e6 < 0.5, c.duration
        assert sum(1 for _ in c.decode(video=0)) == 5


def test_b_frames_muxed_without_composition_offsets(tmp_path: Path) -> None:
    """An MP4 whose B-frame packets carry decode-order times as pts (no composition offsets, as some old muxers
    wrote): decoded frames come with scrambled pts. The output takes FFmpeg's best-effort times (the packets'
    dts, which increase), so every frame keeps a time of its own; the old nudge by one input tick collapsed
    them onto each other in Matroska's 1 ms (half the frames shared a time)."""
    src = tmp_path / "in.mp4"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=30)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.time_base = v.codec_context.time_base = Fraction(1, 1_000_000)
        v.options = {"preset": "veryfast", "x264-params": "bframes=2:b-adapt=0:keyint=30"}
        pkts = []
        for i in range(20):
            f = av.VideoFrame.from_ndarray(pattern(48, 64, i), format="rgb24")
            f.pts, f.time_base = round(i * 1_000_000 / 30), Fraction(1, 1_000_000)
            pkts += v.encode(f)
        pkts += v.encode(None)
        first = pkts[0].dts
        for p in pkts:  # decode order, times of decode order: no composition offsets
            p.dts = p.dts - first
            p.pts = p.dts
            out.mux(p)
    with av.open(str(src)) as c:
        raw = [f.pts for f in c.decode(video=0)]
    assert raw != sorted(raw)  # the frames' own pts really are scrambled
    dst = tmp_path / "out.mkv"
    r = CliRunner().invoke(cli, ["upscale", str(src), str(dst), "--variant", "mks", "-q"])
    assert r.exit_code == 0, r.output
    with av.open(str(dst)) as c:
        times = [f.pts for f in c.decode(video=0)]
    assert len(times) == 20 and all(a < b for a, b in zip(times, times[1:], strict=False)), times



# --- streams without a codec, PCM into MP4, raw elementary streams, covers into Matroska -------------------
def _small_h264(out: av.container.OutputContainer):
    v = out.add_stream("libx264", rate=25)
    v.width, v.height, v.pix_fmt, v.options = 64, 48, "yuv420p", {"preset": "ultrafast"}
    return v


def _encode_frames(out: av.container.OutputContainer, v, n: int = 6) -> None:
    for i in range(n):
        f = av.VideoFrame.from_ndarray(pattern(48, 64, i), format="rgb24")
        f.pts = i
        out.mux(v.encode(f))
    out.mux(v.encode(None))


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_mp4_chapter_track_and_mov_timecode_track(tmp_path: Path, ext: str) -> None:
    """An MP4's chapter text track and a MOV's timecode (tmcd) track are codec-less data streams: they were
    refused at the header (every output container); now the chapters and the timecode travel as what they are,
    and the note says so."""
    chap = tmp_path / "chap.mp4"
    with av.open(str(chap), "w") as out:
        v = _small_h264(out)
        out.set_chapters([{"id": 1, "start": 0, "end": 100, "time_base": TB, "metadata": {"title": "one"}},
                          {"id": 2, "start": 100, "end": 240, "time_base": TB, "metadata": {"title": "two"}}])
        _encode_frames(out, v)
    tc = tmp_path / "tc.mov"
    with av.open(str(tc), "w") as out:
        v = _small_h264(out)
        v.metadata["timecode"] = "01:00:00:00"
        _encode_frames(out, v)
    with av.open(str(chap)) as c, av.open(str(tc)) as t:  # what the inputs hold: the data streams in question
        assert [s.type for s in c.streams] == ["video", "data"] and [s.type for s in t.streams] == ["video", "data"]
    dst = tmp_path / f"chap_out.{ext}"
    code, err = run(str(chap), str(dst), "--variant", "mks")
    assert code == 0 and "the chapters are carried as chapters" in err, err
    with av.open(str(dst)) as c:
        assert [ch["metadata"]["title"] for ch in c.chapters()] == ["one", "two"]
        assert sum(1 for _ in c.decode(video=0)) == 6
    for out_ext in (ext, "mov"):
        dst = tmp_path / f"tc_out.{out_ext}"
        code, err = run(str(tc), str(dst), "--variant", "mks")
        assert code == 0 and "its timecode 01:00:00:00 is carried" in err, err
        with av.open(str(dst)) as c:
            md = {k.lower(): v for k, v in c.streams.video[0].metadata.items()}
            assert md["timecode"] == "01:00:00:00" and sum(1 for _ in c.decode(video=0)) == 6


def test_pcm_into_mp4_and_raw_h264_timing(tmp_path: Path) -> None:
    """PCM stored with a channel count only (Matroska) made MP4 fail at its trailer, after all the work; a raw
    .h264 stream (no timestamps) came out at one frame per millisecond."""
    src = tmp_path / "pcm.mkv"
    with av.open(str(src), "w") as out:
        v = _small_h264(out)
        a = out.add_stream("pcm_s16le", rate=48000)
        a.layout = "stereo"
        _encode_frames(out, v)
        for k in range(6):
            af = av.AudioFrame.from_ndarray(np.full((1, 2048), 100 * k, np.int16), format="s16", layout="stereo")
            af.sample_rate, af.pts = 48000, k * 1024
            out.mux(a.encode(af))
        out.mux(a.encode(None))
    dst = tmp_path / "pcm.mp4"
    code, err = run(str(src), str(dst), "--variant", "mks")
    assert code == 0, err
    assert b"".join(packets(dst, "audio")) == b"".join(packets(src, "audio"))  # the samples, bit for bit
    with av.open(str(dst)) as c:
        assert c.streams.audio[0].codec_context.layout.name == "stereo"
    raw = tmp_path / "raw.h264"
    with av.open(str(raw), "w", format="h264") as out:
        v = _small_h264(out)
        _encode_frames(out, v, 20)
    dst = tmp_path / "raw.mkv"
    code, err = run(str(raw), str(dst), "--variant", "mks")
    assert code == 0 and "20 frame(s) had no timestamp (a raw stream?) and were timed from the frame rate" in err
    with av.open(str(dst)) as c:
        times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    assert times == pytest.approx([i / 25 for i in range(20)])


def test_cover_art_stays_an_attachment_in_matroska(tmp_path: Path) -> None:
    """Matroska keeps covers as attachments (FFmpeg shows them as attached-picture streams); copying the
    stream wrote a one-frame video track instead."""
    jpg = cover_jpeg()
    src = tmp_path / "cover.mkv"
    with av.open(str(src), "w") as out:
        v = _small_h264(out)
        out.add_attachment("cover.jpg", "image/jpeg", jpg)
        _encode_frames(out, v)
    dst = tmp_path / "out.mkv"
    code, err = run(str(src), str(dst), "--variant", "mks")
    assert code == 0, err

    def covers(path: Path) -> list[tuple]:
        with av.open(str(path)) as c:
            return [(int(s.disposition), s.metadata.get("filename"), s.metadata.get("mimetype"),
                     [bytes(p) for p in c.demux(s) if p.size])
                    for s in c.streams.video if s.disposition & av.stream.Disposition.attached_pic]

    assert covers(dst) == covers(src) and len(covers(src)) == 1 and covers(src)[0][3] == [jpg]


def test_ffmpeg_reason_is_read_from_its_log(tmp_path: Path) -> None:
    """A muxer failing at its trailer says only "Invalid argument"; the reason is in FFmpeg's log, read while
    the header/trailer run (and only then: logging goes back off)."""
    import av.logging

    from psr2video.video.writer import ffmpeg_errors, ffmpeg_reason

    src = tmp_path / "pcm.mkv"
    with av.open(str(src), "w") as out:
        a = out.add_stream("pcm_s16le", rate=48000)
        a.layout = "stereo"
        af = av.AudioFrame.from_ndarray(np.zeros((1, 2048), np.int16), format="s16", layout="stereo")
        af.sample_rate, af.pts = 48000, 0
        out.mux(a.encode(af))
        out.mux(a.encode(None))
    before = av.logging.get_level()
    with av.open(str(src)) as inp:
        out = av.open(str(tmp_path / "bad.mp4"), "w")
        o = out.add_stream_from_template(inp.streams.audio[0])  # "2 channels": no layout, as Matroska stores it
        out.start_encoding()
        for p in inp.demux(inp.streams.audio[0]):
            if p.dts is not None:
                p.stream = o
                out.mux(p)
        with pytest.raises(av.error.FFmpegError) as e, ffmpeg_errors():
            out.close()
    assert ffmpeg_reason(e.value) == "unsupported channel layout 2 channels"
    assert av.logging.get_level() == before


def test_codec_a_container_cannot_hold_names_those_it_can(tmp_path: Path) -> None:
    code, err = run(str(SAMPLE_CLIP), str(tmp_path / "o.mov"), "--codec", "ffv1", "--variant", "mks",
                    "--max-frames", "1")
    assert code == 1 and "mov can't hold ffv1 video (--codec ffv1); pick a --codec it can hold (libx264, libx265) or" \
        in error_line(err)
    assert "webm" not in err and not (tmp_path / "o.mov").exists()


def test_what_a_container_or_encoder_cannot_keep_is_named(tmp_path: Path) -> None:
    """Chapters and container tags into MPEG-TS/AVI, 10-bit into an 8-bit-only encoder: said, not silent;
    HEVC into MP4 is tagged hvc1 (Apple's players refuse FFmpeg's default hev1)."""
    src = tmp_path / "full.mkv"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx265", rate=25)
        v.width, v.height, v.pix_fmt, v.options = 64, 48, "yuv420p10le", {"x265-params": "log-level=error"}
        out.metadata["title"] = "T"
        out.set_chapters([{"id": 1, "start": 0, "end": 100, "time_base": TB, "metadata": {"title": "one"}}])
        for i in range(4):
            f = av.VideoFrame.from_ndarray(pattern(48, 64, i), format="rgb24").reformat(format="yuv420p10le")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    code, err = run(str(src), str(tmp_path / "o.ts"), "--variant", "mks")
    assert code == 0 and "1 chapter(s) can't be carried in mpegts; dropped" in err, err
    assert "container tags (title) can't be carried in mpegts" in err
    code, err = run(str(src), str(tmp_path / "o.avi"), "--variant", "mks")
    assert code == 0 and "1 chapter(s) can't be carried in avi; dropped" in err and "container tags" not in err, err
    code, err = run(str(src), str(tmp_path / "o.mp4"), "--variant", "mks", "--codec", "libx265")
    assert code == 0 and "chapter" not in err and "written 8-bit" not in err, err
    with av.open(str(tmp_path / "o.mp4")) as c:
        s = c.streams.video[0]
        assert s.codec_context.codec_tag == "hvc1" and s.codec_context.pix_fmt == "yuv420p10le"
        assert len(c.chapters()) == 1
    if "yuv420p10le" not in [f.name for f in av.codec.Codec("libvpx-vp9", "w").video_formats or []]:
        code, err = run(str(src), str(tmp_path / "o.webm"), "--variant", "mks", "--codec", "libvpx-vp9")
        assert code == 0 and "the input is 10-bit but libvpx-vp9 here encodes yuv420p: written 8-bit 4:2:0" in err, err


def test_12_bit_444_kept_where_the_encoder_has_it_else_said(tmp_path: Path) -> None:
    """A 12-bit 4:4:4 source was written 10-bit even into FFV1 (which holds 12 bits), and SVT-AV1 (4:2:0 only)
    halved its chroma without a word. Now the depth and subsampling are kept where the encoder has them, else the
    note says what was lost and which encoders keep it."""
    src = tmp_path / "d12.mkv"
    with av.open(str(src), "w") as out:
        v = out.add_stream("ffv1", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv444p12le"
        for i in range(3):
            f = av.VideoFrame(64, 48, "yuv444p12le")
            y = ((np.arange(64 * 48).reshape(48, 64) * 7 + i) % 3500 + 256).astype("<u2")
            for plane, values in zip(f.planes, (y, np.full_like(y, 2048), np.full_like(y, 1500)), strict=True):
                np.frombuffer(plane, dtype="<u2").reshape(plane.height, -1)[:, :64] = values
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))

    def luma(path: Path) -> tuple[str, np.ndarray]:
        with av.open(str(path)) as c:
            f = next(c.decode(video=0))
            return f.format.name, np.frombuffer(f.planes[0], dtype="<u2").reshape(f.height, -1)[:, :f.width]

    code, err = run(str(src), str(tmp_path / "o12.mkv"), "--variant", "mks", "--codec", "ffv1")
    assert code == 0 and "note: the input is" not in err, err
    code, err = run(str(src), str(tmp_path / "o10.mkv"), "--variant", "mks", "--codec", "ffv1", "--pix-fmt",
                    "yuv444p10le")
    assert code == 0, err
    (fmt12, y12), (_, y10) = luma(tmp_path / "o12.mkv"), luma(tmp_path / "o10.mkv")
    assert fmt12 == "yuv444p12le" and (y12 % 4 != 0).mean() > 0.5  # 12 bits of real precision, not 10 shifted
    assert np.abs(y12 / 4 - y10).max() <= 0.5
    code, err = run(str(src), str(tmp_path / "o.webm"), "--variant", "mks", "--codec", "libsvtav1")
    assert code == 0 and "note: the input is 12-bit 4:4:4 but libsvtav1 here encodes yuv420p10le: written 10-bit " \
        "4:2:0 (libx265 or ffv1 keep yuv444p12le)" in err, err


def test_a_still_listed_first_is_not_the_video(tmp_path: Path) -> None:
    """A file whose first video stream is a one-frame still (a thumbnail track): the film is upscaled, as ffmpeg
    picks it (the most pixels, not cover art), and the still copied (it was the other way round: the still
    upscaled and the film copied untouched, without a word)."""
    jpg = cover_jpeg()
    src = tmp_path / "in.mkv"
    with av.open(str(src), "w") as out:
        still = out.add_stream("mjpeg", rate=25)
        still.width = still.height = 32
        still.pix_fmt = "yuvj420p"
        v = _small_h264(out)
        p = av.Packet(jpg)
        p.stream, p.pts, p.dts, p.time_base = still, 0, 0, still.time_base
        out.mux(p)
        _encode_frames(out, v)
    with av.open(str(src)) as c:
        assert [s.codec_context.name for s in c.streams.video] == ["mjpeg", "h264"]
    dst = tmp_path / "out.mkv"
    code, err = run(str(src), str(dst), "--variant", "mks")
    assert code == 0, err
    with av.open(str(dst)) as c:
        assert [(s.codec_context.name, s.width, s.height) for s in c.streams.video] == [("h264", 128, 96),
                                                                                      ("mjpeg", 32, 32)]
        assert [bytes(p) for p in c.demux(c.streams.video[1]) if p.size] == [jpg]
    assert n_frames(dst) == 6


def test_avi_gets_the_frame_rate_as_its_time_base(tmp_path: Path) -> None:
    """AVI has one frame per tick: Matroska's 1 ms time base gave a "1000 fps" header padded with empty frames."""
    dst = tmp_path / "o.avi"
    code, err = run(str(SAMPLE_CLIP), str(dst), "--variant", "mks", "--max-frames", "6")
    assert code == 0, err
    with av.open(str(dst)) as c:
        s = c.streams.video[0]
        assert s.average_rate == 25 and s.time_base == Fraction(1, 25)
        assert sum(1 for p in c.demux(s) if p.size) == 6


def test_vfr_into_avi_keeps_time_by_leaving_frames_out(tmp_path: Path) -> None:
    """A VFR source (10 fps, then 50 fps) into AVI (one frame per 1/average-rate tick): the faster stretch was
    nudged a tick per frame and ended 0.8 s after its sound on a 2 s clip. Now a frame with no tick left is left
    out, as ffmpeg does, and said; the rest stay within a tick of their times."""
    src = tmp_path / "vfr.mkv"
    times = [i / 10 for i in range(10)] + [1 + i / 50 for i in range(50)]
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=30)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.time_base = Fraction(1, 1000)
        v.options = {"bf": "0"}
        for i, t in enumerate(times):
            f = av.VideoFrame.from_ndarray(pattern(48, 64, i), format="rgb24")
            f.pts, f.time_base = round(t * 1000), Fraction(1, 1000)
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    dst = tmp_path / "o.avi"
    code, err = run(str(src), str(dst), "--variant", "mks", "--codec", "ffv1")
    assert code == 0, err
    assert "frame(s) of the variable-rate input that came sooner than that after the one before were left out" in err
    with av.open(str(dst)) as c:
        got = [float(f.pts * f.time_base) for f in c.decode(video=0)]
        tick = float(c.streams.video[0].time_base)
    assert 30 <= len(got) < len(times) and got[-1] <= times[-1] + 2 * tick, (len(got), got[-3:])


def _level_clip(path: Path, decode_order: bool = False) -> Path:
    """48 flat frames at 24 fps, level 20 + 4 per frame, H.264 with 3 B-frames; ``decode_order``: muxed with
    pts = dts (decode-order times, no composition offsets)."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=24)
        v.width, v.height, v.pix_fmt = 32, 24, "yuv420p"
        if decode_order:
            v.time_base = Fraction(1, 12288)
        v.options = {"preset": "veryfast", "x264-params": "keyint=12:min-keyint=12:scenecut=0:bframes=3"}
        packets = []
        for i in range(48):
            f = av.VideoFrame.from_ndarray(np.full((24, 32, 3), 20 + i * 4, np.uint8), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, 24)
            packets += v.encode(f)
        packets += v.encode(None)
        d0 = packets[0].dts
        for pkt in packets:
            if decode_order:
                pkt.pts = pkt.dts = pkt.dts - d0
            out.mux(pkt)
    return path


def _levels(path: Path) -> list[tuple[Fraction, int]]:
    """Each decoded frame's time and the flat level it was made with (20 + 4 per frame)."""
    with av.open(str(path)) as c:
        return [(f.pts * f.time_base, round((f.to_ndarray(format="rgb24")[..., 1].mean() - 20) / 4))
                for f in c.decode(video=0)]


def test_avi_with_b_frames_is_timed_in_display_order(tmp_path: Path) -> None:
    """AVI keeps one time per chunk, in decode order: B-frames decode with scrambled times, and FFmpeg's best-effort
    guess (the dts of the packet fed when a frame comes out) put the first frame 1 tick late, lost the second
    frame's time and moved every later frame a reorder delay (2 ticks here; more with more decoder threads)
    behind its sound, with a 'nudged' note. Frames now take the packets' times in display order, as players time
    AVI: an XviD-era AVI, and an AVI psr2video wrote with x264's B-frames, read back frame-exact."""
    src = _level_clip(tmp_path / "b.avi")
    want = [(Fraction(i, 24), i) for i in range(48)]
    assert _levels(src) != want  # (what FFmpeg itself hands on: decode-order times)
    dst = tmp_path / "o.mkv"
    code, err = run(str(src), str(dst), "--variant", "mks", "--codec", "ffv1")
    assert code == 0 and "nudged" not in err, err
    assert [(round(t * 24), level) for t, level in _levels(dst)] == [(i, i) for i in range(48)]
    # an AVI written with B-frames (x264's defaults), read back: the source's times and frames
    avi, back = tmp_path / "x264.avi", tmp_path / "back.mkv"
    assert run(str(dst), str(avi), "--variant", "mks", "--codec", "libx264")[0] == 0
    assert [t for t, _ in _levels(avi)] != sorted(t for t, _ in _levels(avi))  # B-frames: scrambled times
    code, err = run(str(avi), str(back), "--variant", "mks", "--codec", "ffv1", "--size", "32x24")
    assert code == 0 and "nudged" not in err, err
    assert [(round(t * 24), level) for t, level in _levels(back)] == [(i, i) for i in range(48)]


@pytest.mark.parametrize("ext", ["mkv", "mp4", "ts"])
def test_a_listed_track_that_never_comes_is_left_out_said(tmp_path: Path, ext: str) -> None:
    """A DVB recording whose programme lists an audio track it never sends (an audio description, a second
    language): FFmpeg knows no sample rate for it and every muxer refused to start ('matroska can't start with
    ... (sample rate not set); use .mkv', into .mkv too), so the file could not be upscaled at all. The empty
    track is left out with a warning and the rest is written."""
    src = tmp_path / "recording.ts"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = out.add_stream("aac", rate=48000)
        a.layout = "stereo"
        silent = out.add_stream("mp2", rate=48000)  # listed, never sent
        silent.layout = "stereo"
        k = 0
        for i in range(25):
            out.mux(v.encode(av.VideoFrame.from_ndarray(pattern(48, 64, i), format="rgb24")))
            while k * 1024 < (i + 1) / 25 * 48000:
                af = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
                af.sample_rate, af.pts = 48000, k * 1024
                out.mux(a.encode(af))
                k += 1
        out.mux(v.encode(None))
        out.mux(a.encode(None))
    dst = tmp_path / f"o.{ext}"
    code, err = run(str(src), str(dst), "--variant", "mks")
    assert code == 0, err
    assert "warning: audio stream #2 (mp3) has no sound parameters" in err and "left out" in err, err
    with av.open(str(dst)) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]
        assert sum(1 for p in c.demux(c.streams.audio[0]) if p.size) > 40


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_a_copied_b_frame_video_keeps_its_times(tmp_path: Path, ext: str) -> None:
    """A second video stream with B-frames is copied: its first packets come without dts (the reorder delay), were
    given their pts as dts (80 ms, past the next packet's real dts 0), and the timestamp fix-up then moved the
    next packets: the frame at 0.04 s was shown at 0.08 s, two frames on one time, said 'as ffmpeg does'. Their
    dts now come back from the first dated packet, and every frame keeps its time."""
    src = tmp_path / "two.mkv"
    with av.open(str(src), "w") as out:
        small = out.add_stream("libx264", rate=25)
        big = out.add_stream("libx264", rate=25)
        small.width, small.height, big.width, big.height = 32, 24, 64, 48
        for i in range(12):
            for v in (small, big):
                f = av.VideoFrame.from_ndarray(pattern(v.height, v.width, i), format="rgb24")
                f.pts = i
                out.mux(v.encode(f))
        out.mux(small.encode(None))
        out.mux(big.encode(None))

    def times(path: Path) -> list[Fraction]:
        with av.open(str(path)) as c:
            s = next(s for s in c.streams.video if s.codec_context.width == 32)
            return [f.pts * f.time_base for f in c.decode(s)]

    with av.open(str(src)) as c:  # (what the case needs: the copied stream's first packets have no dts)
        assert [p.dts for p in c.demux(c.streams.video[0]) if p.size][0] is None
    dst = tmp_path / f"o.{ext}"
    code, err = run(str(src), str(dst), "--variant", "mks")
    assert code == 0 and "non-increasing" not in err, err
    assert [round(t * 25) for t in times(dst)] == list(range(12))


def test_mkvmerge_statistics_stay_with_the_streams_they_describe(tmp_path: Path) -> None:
    """mkvmerge tags every track with its bitrate and frame count (BPS, NUMBER_OF_FRAMES, ...), which MediaInfo
    and players show: they were copied onto the re-encoded video (50 frames said of 13 written). The video's are
    dropped now, a copied stream keeps its own, and a part (--duration) drops those of the copied streams too."""
    src = tmp_path / "mkvmerge.mkv"
    _clip_with_tone(src, "aac", 48000, 0.0, seconds=2.0)
    tagged = tmp_path / "tagged.mkv"
    stats = {"BPS-eng": "123456", "NUMBER_OF_FRAMES-eng": "50", "NUMBER_OF_BYTES-eng": "30000",
             "_STATISTICS_WRITING_APP-eng": "mkvmerge v80", "title": "main"}
    with av.open(str(src)) as inp, av.open(str(tagged), "w") as out:
        m = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for o in m.values():
            o.metadata.update(stats)
        for pkt in inp.demux():
            if pkt.dts is not None:
                pkt.stream = m[pkt.stream.index]
                out.mux(pkt)

    def tags(path: Path) -> list[set[str]]:
        with av.open(str(path)) as c:
            return [{k.split("-")[0] for k in s.metadata} for s in c.streams]

    assert tags(tagged)[0] >= {"BPS", "NUMBER_OF_FRAMES", "title"}
    whole, part = tmp_path / "whole.mkv", tmp_path / "part.mkv"
    assert run(str(tagged), str(whole), "--variant", "mks")[0] == 0
    assert run(str(tagged), str(part), "--variant", "mks", "--duration", "0.5")[0] == 0
    video, audio = tags(whole)
    assert "title" in video and not video & {"BPS", "NUMBER_OF_FRAMES", "NUMBER_OF_BYTES", "_STATISTICS_WRITING_APP"}
    assert {"BPS", "NUMBER_OF_FRAMES", "title"} <= audio
    video, audio = tags(part)
    assert "title" in audio and not audio & {"BPS", "NUMBER_OF_FRAMES", "NUMBER_OF_BYTES"}


@pytest.mark.parametrize("codec, ext, loc", [("mjpeg", "avi", C.LOC_CENTER), ("libx264", "mkv", C.LOC_TOPLEFT)])
def test_chroma_siting_is_tagged_as_subsampled(tmp_path: Path, codec: str, ext: str, loc: int) -> None:
    """The device stage subsamples the output's chroma at the input's siting (a camera's centre-sited MJPEG, a
    top-left-sited UHD clip), but the output carried no siting tag: players took it as left-sited and the chroma
    sat half an output pixel off. The output is tagged with the siting it was made at."""
    src = tmp_path / f"in.{ext}"
    with av.open(str(src), "w") as out:
        v = out.add_stream(codec, rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuvj420p" if codec == "mjpeg" else "yuv420p"
        v.codec_context.chroma_sample_location = loc
        for i in range(3):
            f = av.VideoFrame.from_ndarray(pattern(48, 64, i), format="rgb24").reformat(format=v.pix_fmt)
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    with av.open(str(src)) as c:
        assert next(c.decode(video=0)).chroma_location == loc
    dst = tmp_path / "o.mkv"
    code, err = run(str(src), str(dst), "--variant", "mks")
    assert code == 0, err
    with av.open(str(dst)) as c:
        assert next(c.decode(video=0)).chroma_location == loc


def test_x265_into_mov_prints_no_banner(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The header check for MOV opened x265 without its log level: its 20-line banner went to stderr on every
    .mov run with --codec libx265 (and on a refused codec's suggestion list). And a 1-2 frame clip: FFmpeg's x265
    wrapper can give it a dts of about -2**46, which MOV refused after the work ('Not yet implemented in FFmpeg')."""
    code, err = run(str(SAMPLE_CLIP), str(tmp_path / "o.mov"), "--variant", "mks", "--codec", "libx265",
                    "--max-frames", "2")
    assert code == 0, err
    printed = capfd.readouterr().err
    assert "x265 [info]" not in printed and "HEVC encoder version" not in printed, printed
    with av.open(str(tmp_path / "o.mov")) as c:
        times = [(p.pts, p.dts) for p in c.demux(c.streams.video[0]) if p.size]
    assert len(times) == 2 and all(abs(p - d) < 1000 for p, d in times), times


def test_an_mp4_with_its_index_at_the_end_from_a_pipe_is_one_line(tmp_path: Path) -> None:
    """An MP4 whose moov comes after its media (FFmpeg's default), piped in: the demuxer finds the index at the
    end and can't go back for the media, and the run said only 'FFmpeg: [Errno 1094995529] Invalid data found
    when processing input'. One line now, with what to do."""
    import subprocess

    src = tmp_path / "late.mp4"
    with av.open(str(SAMPLE_CLIP)) as inp, av.open(str(src), "w") as out:
        v = out.add_stream_from_template(inp.streams.video[0])
        for pkt in inp.demux(inp.streams.video[0]):
            if pkt.dts is not None:
                pkt.stream = v
                out.mux(pkt)
    r = subprocess.run([sys.executable, "-m", "psr2video", "-", str(tmp_path / "o.mkv"), "--variant", "mks"],
                       input=src.read_bytes(), capture_output=True, timeout=120)
    err = r.stderr.decode()
    assert r.returncode == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("Error: can't read stdin: ") and "+faststart" in err, err


def test_an_mp4_with_decode_order_times_is_timed_in_display_order(tmp_path: Path) -> None:
    """An MP4 muxed without composition offsets (pts = dts, in decode order; the shared data's box_640x480.mp4 is
    one): FFmpeg's best-effort guess timed its frames by the dts of the packet fed when each came out, two
    frames late, and the frames between the first and third lost their times. Decided at the first frame (the
    codec reorders, the packets' pts are their dts), the frames take the packets' times in display order."""
    src = _level_clip(tmp_path / "decode-order.mp4", decode_order=True)
    assert [round(t * 24) for t, _ in _levels(src)] != list(range(48))  # (FFmpeg's own view: scrambled)
    dst = tmp_path / "o.mkv"
    code, err = run(str(src), str(dst), "--variant", "mks", "--codec", "ffv1")
    assert code == 0 and "nudged" not in err, err
    assert [(round(t * 24), level) for t, level in _levels(dst)] == [(i, i) for i in range(48)]


def test_closed_captions_in_the_video_are_said_lost(tmp_path: Path) -> None:
    """US broadcast captures and DVDs carry EIA-608/708 captions inside the video stream (H.264 SEI, MPEG-2 user
    data), which FFmpeg hands on as frame side data: the re-encoded output lost them without a word. Said now,
    with what to do (PyAV can't give side data to the frames it encodes), once in scale-out (the join says it)."""
    from psr2video.scaleout.tasks import about_the_cut

    src = tmp_path / "cc.h264"
    cc = bytes([0xFC, 0x94, 0x20, 0xFC, 0x94, 0x2C])  # two CEA-608 byte pairs
    payload = bytes([0xB5, 0x00, 0x31]) + b"GA94" + bytes([0x03, 0x40 | 2, 0xFF]) + cc + bytes([0xFF])
    sei = b"\x00\x00\x00\x01\x06" + bytes([4, len(payload)]) + payload + b"\x80"  # user data registered (T.35)
    with av.open(str(src), "w", format="h264") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.options = {"bf": "0"}
        packets = [p for i in range(6) for p in v.encode(av.VideoFrame.from_ndarray(pattern(48, 64, i),
                                                                                  format="rgb24"))]
        for pkt in packets + v.encode(None):
            q = av.Packet(sei + bytes(pkt))
            q.pts, q.dts, q.stream = pkt.pts, pkt.dts, v
            out.mux(q)
    with av.open(str(src)) as c:  # (what the case needs: FFmpeg finds the captions)
        assert "A53_CC" in [k.name for k in next(c.decode(video=0)).side_data.keys()]
    code, err = run(str(src), str(tmp_path / "o.mkv"), "--variant", "mks")
    line = next((ln for ln in err.splitlines() if "closed captions" in ln), "")
    assert code == 0 and line.startswith("warning: the input's closed captions (EIA-608/708) can't be carried"), err
    assert "ccextractor" in line and about_the_cut(line)


@pytest.mark.parametrize("start, shown", [("3", [(0, b"first")]), ("7", [(0, b"second")]), ("0.2", []),
                                          ("0.5", [(Fraction(1, 2), b"first")]), ("20", [(0, b"third")])])
def test_a_bitmap_subtitle_on_screen_when_a_part_starts_is_kept(tmp_path: Path, start: str, shown: list) -> None:
    """Bitmap subtitles (PGS, DVB, DVD) carry no duration: each is shown until the stream's next packet. A part
    (--start) beginning while one was on screen left it out, and the screen stayed empty until the next one. The
    last one before the part is now kept, from the part's start (none when the part starts before the first), where
    the part is read from the file's start and where it is sought (20 s)."""
    src = tmp_path / "bitmap.mkv"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 32, 24, "yuv420p"
        v.options = {"x264-params": "keyint=25:min-keyint=25:scenecut=0"}
        sub = out.add_stream("dvdsub")
        sub.time_base = Fraction(1, 1000)
        for t, data in ((1000, b"first"), (6000, b"second"), (15000, b"third")):
            pkt = av.Packet(data)
            pkt.pts = pkt.dts = t
            pkt.time_base, pkt.stream = Fraction(1, 1000), sub
            out.mux(pkt)
        for i in range(750):
            out.mux(v.encode(av.VideoFrame.from_ndarray(pattern(24, 32, i), format="rgb24")))
        out.mux(v.encode(None))
    dst = tmp_path / "part.mkv"
    code, err = run(str(src), str(dst), "--variant", "mks", "--start", start, "--duration", "0.5" if start == "0.2"
                    else "1.5")
    assert code == 0, err
    with av.open(str(dst)) as c:
        got = [(p.pts * p.time_base, bytes(p)) for p in c.demux(c.streams.subtitles[0]) if p.size]
    assert got == shown, got


def _reader_times(path: Path, threads: int = 0) -> list[int | None]:
    """The reader's frame times (in the stream's ticks) for ``path``, decoded with ``threads`` threads."""
    from psr2video.video.reader import EndItem, Reader, VideoItem, open_input, stream_info

    c = open_input(str(path))
    r = Reader(c, stream_info(c).color, threads=threads)
    r.prime()
    r.start()
    out = []
    while not isinstance(item := r.queue.get(), EndItem):
        if isinstance(item, VideoItem):
            out.append(item.pts)
    c.close()
    return out


def test_display_order_forgets_packets_that_give_no_frame(tmp_path: Path) -> None:
    """Frames timed in display order (AVI, decode-order MP4) took the k-th earliest time of every packet fed: a
    damaged AVI chunk, or the packets before the first keyframe of an MP4 cut mid-GOP, left a time behind, and
    every later frame took the time of the frame before it (7 frames early to the end of a cut file). A packet
    that fails to decode, one that later packets' frames overtake, and those before the first keyframe drop out."""
    clean, bad = tmp_path / "clean.avi", tmp_path / "bad.avi"
    with av.open(str(clean), "w") as out:
        v = out.add_stream("mjpeg", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuvj420p"
        for i in range(30):
            out.mux(v.encode(av.VideoFrame.from_ndarray(pattern(48, 64, i), format="rgb24")))
        out.mux(v.encode(None))
    with av.open(str(clean)) as inp, av.open(str(bad), "w") as out:
        vo = out.add_stream_from_template(inp.streams.video[0])
        for n, pkt in enumerate(p for p in inp.demux(video=0) if p.size):
            if n == 10:  # a chunk whose data is garbage
                q = av.Packet(b"\x00\x01garbage" * 4)
                q.pts, q.dts, q.is_keyframe, q.time_base = pkt.pts, pkt.dts, pkt.is_keyframe, pkt.time_base
                pkt = q
            pkt.stream = vo
            out.mux(pkt)
    assert _reader_times(bad) == [i for i in range(30) if i != 10]
    whole, cut = _level_clip(tmp_path / "whole.mp4", decode_order=True), tmp_path / "cut.mp4"
    with av.open(str(whole)) as inp, av.open(str(cut), "w") as out:
        vo = out.add_stream_from_template(inp.streams.video[0])
        for n, pkt in enumerate(p for p in inp.demux(video=0) if p.size):
            if n >= 5:  # cut mid-GOP: the first packets' references are gone
                pkt.stream = vo
                out.mux(pkt)
    with av.open(str(cut)) as c:
        s = c.streams.video[0]
        shown = sorted(p.pts for p in c.demux(s) if p.size and p.pts >= 12 * 512)  # from the keyframe (frame 12)
    assert _reader_times(cut)[:10] == shown[:10]


@pytest.mark.parametrize("threads", [1, 2, 0])
def test_the_display_order_decision_does_not_follow_the_threads(tmp_path: Path, threads: int) -> None:
    """Whether a file has decode-order times was decided from the packets fed before the first frame came out,
    which the decoder's threads decide: an ordinary MP4 (composition offsets) whose first GOP starts I P P P was
    taken for one with one or two threads, and every frame was timed two frames early (the first before 0). Only
    packets whose pts are their dts count as decode-order times now."""
    src = tmp_path / "pfirst.mp4"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.options = {"preset": "veryfast", "x264-params": "keyint=50:scenecut=0:bframes=3:b-adapt=0"}
        for i in range(30):
            f = av.VideoFrame.from_ndarray(pattern(48, 64, i), format="rgb24")
            f.pts = i
            if 0 < i < 4:
                f.pict_type = av.video.frame.PictureType.P
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    with av.open(str(src)) as c:
        want = sorted(p.pts for p in c.demux(c.streams.video[0]) if p.size)
    assert _reader_times(src, threads) == want


def _late_track_ts(late: Path) -> Path:
    """12 s of MPEG-TS whose sound track (MP2) begins 8 s in, past FFmpeg's first 5 s look."""
    with av.open(str(late), "w", format="mpegts") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 32, 24, "yuv420p"
        v.options = {"bf": "0"}
        a = out.add_stream("mp2", rate=48000)
        a.layout = "stereo"
        k = 0
        for i in range(300):
            out.mux(v.encode(av.VideoFrame.from_ndarray(pattern(24, 32, i), format="rgb24")))
            while i >= 200 and k * 1152 < (i + 1 - 200) / 25 * 48000:
                af = av.AudioFrame.from_ndarray(np.zeros((2, 1152), np.float32), format="fltp", layout="stereo")
                af.sample_rate, af.pts = 48000, 8 * 48000 + k * 1152
                out.mux(a.encode(af))
                k += 1
        out.mux(v.encode(None))
        out.mux(a.encode(None))
    return late


def test_a_track_that_begins_late_is_looked_for_further(tmp_path: Path) -> None:
    """A recording whose second sound track begins 8 s in, past the 5 s FFmpeg looks at for parameters: it was
    taken for a track that never comes and left out, with its 4 s of sound. A file is looked at further (60 s)
    when a track has no parameters; the sound is carried."""
    src = _late_track_ts(tmp_path / "late.ts")
    with av.open(str(src)) as c:  # (what the case needs: FFmpeg's first look finds no sample rate)
        assert c.streams.audio[0].codec_context.sample_rate == 0
    dst = tmp_path / "o.mkv"
    code, err = run(str(src), str(dst), "--variant", "mks")
    assert code == 0 and "no sound parameters" not in err, err
    with av.open(str(dst)) as c:
        audio = [p for p in c.demux(c.streams.audio[0]) if p.size]
        assert len(audio) > 150 and abs(float(audio[0].pts * audio[0].time_base) - 8) < 0.2


def test_a_frame_lost_without_an_error_shifts_only_a_window() -> None:
    """A decoder that drops a frame without an error (MPEG-4 part 2 with a damaged B-frame, leading B-frames after
    a seek to an open GOP): its time was handed out to the next frame, and every later frame took its
    predecessor's time to the end of the file. Once ``WINDOW`` packets have overtaken it, one time is skipped."""
    from psr2video.video.display_order import DisplayOrder

    order = DisplayOrder(True)
    got = []
    for n in range(60):  # no reordering, to keep it plain: packet n is shown n-th; packet 10 gives no frame
        order.fed(n, n, n == 0)
        if n != 10:
            got.append(order(n))
    want = [n for n in range(60) if n != 10]
    wrong = [i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b]
    assert wrong and len(wrong) <= DisplayOrder.WINDOW + 1 and got[max(wrong) + 1:] == want[max(wrong) + 1:], wrong


@pytest.mark.parametrize("threads", [1, 2, 0])
def test_a_decoding_error_is_put_on_the_packet_that_failed(tmp_path: Path, threads: int) -> None:
    """With frame threading FFmpeg reports a packet's decoding error when a later packet is fed (thread_count - 1
    later): the packet fed then was taken for the failed one, so a frame's time and the damage's place followed
    the machine's core count. They are the single-thread ones at every thread count."""
    clean = _level_clip(tmp_path / "clean.avi")
    bad = tmp_path / "bad.avi"
    with av.open(str(clean)) as inp, av.open(str(bad), "w") as out:
        vo = out.add_stream_from_template(inp.streams.video[0])
        for n, pkt in enumerate(p for p in inp.demux(video=0) if p.size):
            if n == 20:
                q = av.Packet(b"\x00\x00\x00\x01garbage" * 4)
                q.pts, q.dts, q.is_keyframe, q.time_base = pkt.pts, pkt.dts, pkt.is_keyframe, pkt.time_base
                pkt = q
            pkt.stream = vo
            out.mux(pkt)
    assert _reader_times(bad, threads) == _reader_times(bad, 1)


def test_a_late_track_from_a_pipe_is_said_as_such(tmp_path: Path) -> None:
    """A pipe can't be opened twice, and looking a minute into it at once would hold a live pipe's start: a track
    that begins past FFmpeg's first 5 s is left out from stdin, said so (it was said as 'not in the first 60 s'),
    with the way to keep it."""
    import subprocess

    late = _late_track_ts(tmp_path / "late.ts")
    dst = tmp_path / "o.mkv"
    r = subprocess.run([sys.executable, "-m", "psr2video", "-", str(dst), "--variant", "mks", "-q"],
                       input=late.read_bytes(), capture_output=True, timeout=300)
    err = r.stderr.decode()
    assert r.returncode == 0 and "in the part of the pipe it looked at (5 s; give the file's name" in err, err
    with av.open(str(dst)) as c:
        assert sum(1 for p in c.demux(c.streams.video[0]) if p.size) == 300


def _clip_with_tone(path: Path, acodec: str, rate: int, start: float, seconds: float = 1.0,
                    layout: str = "stereo", gap: float = 0.0) -> Path:
    """25 frames of video and a 440 Hz tone in ``acodec`` at ``rate`` Hz that starts ``start`` s in; with ``gap``,
    a quiet first half, then no sound for ``gap`` s, then a loud second half."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.options = {"preset": "ultrafast"}
        a = out.add_stream(acodec, rate=rate)
        a.layout = layout
        for i in range(25):
            f = av.VideoFrame.from_ndarray(pattern(48, 64, i), format="rgb24").reformat(format="yuv420p")
            f.pts, f.time_base = i, Fraction(1, 25)
            out.mux(v.encode(f))
        out.mux(v.encode(None))
        fmt, n, channels = a.codec_context.format.name, 1024, a.codec_context.layout.nb_channels
        frames = int(seconds * rate) // n
        for k in range(frames):
            loud = not gap or k >= frames // 2
            x = (0.3 if loud else 0.05) * np.sin(2 * np.pi * 440 * (np.arange(n) + k * n) / rate)
            arr = np.stack([x] * channels).astype(np.float32)
            if fmt.startswith("s16"):
                arr = (arr * 32767).astype(np.int16)
            if not a.codec_context.format.is_planar:
                arr = arr.T.reshape(1, -1)
            af = av.AudioFrame.from_ndarray(arr, format=fmt, layout=layout)
            shift = int(gap * rate) if gap and k >= frames // 2 else 0
            af.sample_rate, af.pts, af.time_base = rate, int(start * rate) + k * n + shift, Fraction(1, rate)
            out.mux(a.encode(af))
        out.mux(a.encode(None))
    return path


def _loud_onset(path: Path, level: float = 0.2) -> float:
    """When the first sample louder than ``level`` of full scale plays (s), from the decoded frames' own times."""
    with av.open(str(path)) as c:
        for f in c.decode(audio=0):
            x = f.to_ndarray().astype(np.float64)
            x = x / 32768 if f.format.name.startswith("s16") else x
            x = x[0] if f.format.is_planar else x[0][:: f.layout.nb_channels]
            hit = np.flatnonzero(np.abs(x) > level)
            if hit.size:
                return float(f.pts * f.time_base) + hit[0] / f.sample_rate
    return -1.0


def _audio(path: Path) -> tuple[str, float, float, float]:
    """(codec, first sample time, seconds of sound, dominant frequency in Hz) of the first audio stream."""
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        frames = list(c.decode(s))
        x = np.concatenate([f.to_ndarray()[0] if f.format.is_planar else f.to_ndarray()[0][::2] for f in frames])
        spectrum = np.abs(np.fft.rfft(x.astype(np.float64)))
        return (s.codec_context.name, float(frames[0].pts * frames[0].time_base), len(x) / s.rate,
                float(np.argmax(spectrum) * s.rate / len(x)))


@pytest.mark.parametrize(("acodec", "rate", "start"), [("aac", 44100, 0.3), ("ac3", 48000, 0.5),
                                                       ("pcm_s16le", 48000, 0.0)])
def test_audio_webm_cannot_hold_is_reencoded_not_dropped(tmp_path: Path, acodec: str, rate: int,
                                                         start: float) -> None:
    """WebM holds only Opus/Vorbis audio: an AAC, AC-3 or PCM track was dropped (with a warning) from every
    `.webm`; it is now re-encoded as Opus, said in one note, with its start and length kept."""
    src = _clip_with_tone(tmp_path / "in.mkv", acodec, rate, start)
    out = tmp_path / "o.webm"
    code, err = run(str(src), str(out), "--variant", "mks")
    assert code == 0, err
    assert f"note: audio stream #1 ({acodec}) can't be carried in webm as it is: re-encoded as libopus" in err, err
    assert "dropped" not in err, err
    name, first, length, tone = _audio(out)
    _, src_first, src_length, _ = _audio(src)
    assert name == "opus" and abs(first - src_first) <= 0.002, (first, src_first)
    assert abs(length - src_length) <= 0.025 and abs(tone - 440) < 3, (length, src_length, tone)
    code, err = run(str(src), str(tmp_path / "o.mkv"), "--variant", "mks")  # Matroska: copied, untouched
    assert code == 0 and "re-encoded" not in err and _audio(tmp_path / "o.mkv")[0] == _audio(src)[0], err


@pytest.mark.parametrize(("acodec", "target"), [("libopus", "aac"), ("flac", "alac")])
def test_audio_mov_refuses_at_its_header_is_reencoded(tmp_path: Path, acodec: str, target: str) -> None:
    """MOV takes Opus and FLAC when the stream is added and refuses them only at its header ("only supported in
    MP4"): the whole run was refused. The track is now re-encoded: FLAC (lossless) into ALAC, bit for bit at the
    source's depth; Opus into AAC. MP4 holds both and still copies them untouched."""
    src = _clip_with_tone(tmp_path / "in.mkv", acodec, 48000, 0.0)
    code, err = run(str(src), str(tmp_path / "o.mov"), "--variant", "mks")
    assert code == 0, err
    assert f"note: audio stream #1 ({acodec.removeprefix('lib')}) can't be carried in mov as it is: re-encoded as " \
           f"{target}" in err, err
    name, first, length, tone = _audio(tmp_path / "o.mov")
    _, src_first, src_length, _ = _audio(src)
    assert name == target and abs(first - src_first) <= 0.002 and abs(length - src_length) <= 0.025, (first, length)
    assert abs(tone - 440) < 3
    if target == "alac":
        def samples(p: Path) -> np.ndarray:
            with av.open(str(p)) as c:
                return np.concatenate([f.to_ndarray()[0] if f.format.is_planar else f.to_ndarray()[0][::2]
                                       for f in c.decode(audio=0)])
        assert np.array_equal(samples(src), samples(tmp_path / "o.mov"))
    code, err = run(str(src), str(tmp_path / "o.mp4"), "--variant", "mks")
    assert code == 0 and "re-encoded" not in err, err
    assert _audio(tmp_path / "o.mp4")[0] == acodec.removeprefix("lib")


def test_reencoded_audio_keeps_gaps_layouts_and_ts_readable(tmp_path: Path) -> None:
    """What the re-encoding first got wrong (found in review): 5.1(side) AC-3 (DVD/Blu-ray rips) into WebM crashed
    the process (libopus can't open that layout): it is now written as Opus 5.1, said; the sound after a gap in
    the source came 0.5 s early (PyAV's encoder counts samples): the gap is now filled with silence, said; PCM
    into MPEG-TS was written as an unreadable "vvc" video stream, in silence: it is now AAC."""
    src = _clip_with_tone(tmp_path / "side.mkv", "ac3", 48000, 0.0, layout="5.1(side)")
    code, err = run(str(src), str(tmp_path / "side.webm"), "--variant", "mks")
    assert code == 0 and "re-encoded as libopus 288 kb/s, 5.1 (was 5.1(side))" in err, err
    with av.open(str(tmp_path / "side.webm")) as c:
        assert c.streams.audio[0].codec_context.layout.name == "5.1"

    src = _clip_with_tone(tmp_path / "gap.mkv", "aac", 48000, 0.0, seconds=2.0, gap=0.5)
    assert abs(_loud_onset(src) - 1.5) < 0.03
    code, err = run(str(src), str(tmp_path / "gap.webm"), "--variant", "mks")
    assert code == 0 and "1 gap(s) in the sound were filled with silence" in err, err
    assert abs(_loud_onset(tmp_path / "gap.webm") - _loud_onset(src)) < 0.01, _loud_onset(tmp_path / "gap.webm")

    src = _clip_with_tone(tmp_path / "pcm.mkv", "pcm_s16le", 8000, 0.0)
    code, err = run(str(src), str(tmp_path / "pcm.ts"), "--variant", "mks")
    assert code == 0 and "audio stream #1 (pcm_s16le) can't be carried in mpegts as it is: re-encoded as aac" in err
    with av.open(str(tmp_path / "pcm.ts")) as c:
        assert [(s.type, s.codec_context.name) for s in c.streams] == [("video", "h264"), ("audio", "aac")]
    assert abs(_audio(tmp_path / "pcm.ts")[3] - 440) < 3

    def sync(p: Path) -> float:  # the tone's onset against the first video frame (MPEG-TS shifts both alike)
        with av.open(str(p)) as c:
            v0 = next(c.decode(video=0))
        return _loud_onset(p, 0.05) - float(v0.pts * v0.time_base)
    assert abs(sync(tmp_path / "pcm.ts") - sync(src)) < 0.005, (sync(tmp_path / "pcm.ts"), sync(src))


def test_extra_stream_a_container_refuses_at_its_header_is_dropped_not_the_run(tmp_path: Path) -> None:
    """An extra AV1 video track into MOV ("av1 only supported in MP4"): the whole run was refused after set-up; the
    track is now named as dropped and the film is written (MOV refuses it only when its header is written, so
    the track is tried on a probe in memory first)."""
    src = tmp_path / "two.mkv"
    with av.open(str(src), "w") as out:
        streams = []
        for codec in ("libx264", "libsvtav1"):
            v = out.add_stream(codec, rate=25)
            v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
            streams.append(v)
        for i in range(10):
            for v in streams:
                f = av.VideoFrame.from_ndarray(pattern(48, 64, i), format="rgb24").reformat(format="yuv420p")
                f.pts, f.time_base = i, Fraction(1, 25)
                out.mux(v.encode(f))
        for v in streams:
            out.mux(v.encode(None))
    code, err = run(str(src), str(tmp_path / "o.mov"), "--variant", "mks")
    assert code == 0 and "warning: video stream #1 (av1) can't be carried in mov; dropped (use .mkv to keep it)" in err
    with av.open(str(tmp_path / "o.mov")) as c:
        assert [s.codec_context.name for s in c.streams] == ["h264"] and sum(1 for _ in c.decode(video=0)) == 10


def test_sparse_subtitles_are_no_timestamp_jump() -> None:
    """A subtitle stream in MPEG-TS can go 40 s without a line: only sound and picture are checked for jumps
    (as ffmpeg does); the subtitles move with whatever jump the file had."""
    from psr2video.video.continuity import Continuity

    class Stream:
        def __init__(self, index: int, type_: str) -> None:
            self.index, self.type = index, type_

    class Packet:
        def __init__(self, stream: Stream, t: float) -> None:
            self.stream, self.time_base = stream, Fraction(1, 90000)
            self.pts = self.dts = round(t * 90000)
            self.duration = 3600

    class TS:
        class format:
            flags = av.format.Flags.ts_discont.value

    c = Continuity(TS())
    video, sub = Stream(0, "video"), Stream(1, "subtitle")
    times = []
    for t, s in [(3, video), (4, sub), (3.04, video), (43, sub), (3.08, video)]:
        p = Packet(s, t)
        c(p)
        times.append(p.pts / 90000)
    assert c.jumps == [] and times == [3, 4, 3.04, 43, 3.08]
    p = Packet(video, 0.0)  # the video starts again: a join, and the subtitles after it move with it
    c(p)
    q = Packet(sub, 0.5)
    c(q)
    assert len(c.jumps) == 1 and p.pts / 90000 == pytest.approx(3.12) and q.pts / 90000 == pytest.approx(3.62)


# --- fixer J: VFR MPEG-TS, raw streams' stop time and progress, a 1 ms tick's average rate ----------------------
def vfr_ts(path: Path, steps: list[int], drop: range | None = None) -> Path:
    """An MPEG-TS of frames ``steps`` (90 kHz ticks) apart; ``drop``: frames whose packets are cut out whole (the
    TS packets of their PES), as a lossy capture loses them."""
    with av.open(str(path), "w", format="mpegts") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.time_base = Fraction(1, 90000)
        v.options = {"preset": "ultrafast", "bf": "0", "g": "12"}
        t = 0
        for i, step in enumerate(steps):
            f = av.VideoFrame.from_ndarray(pattern(48, 64, i), format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 90000)
            out.mux(v.encode(f))
            t += step
        out.mux(v.encode(None))
    if drop is not None:
        data = path.read_bytes()
        pk = [data[i:i + 188] for i in range(0, len(data), 188)]
        pid = {k: ((p[1] & 0x1F) << 8) | p[2] for k, p in enumerate(pk)}
        starts = [k for k, p in enumerate(pk) if pid[k] == 0x100 and p[1] & 0x40]
        cut = set(range(starts[drop.start], starts[drop.stop]))
        path.write_bytes(b"".join(p for k, p in enumerate(pk) if not (k in cut and pid[k] == 0x100)))
    return path


def test_a_vfr_ts_changing_pace_is_not_damage(tmp_path: Path) -> None:
    """25 fps and 5 fps stretches in turn: a longer step after regular ones read as '~4 frames missing' (exit 1)
    though every frame decoded. Frames lost from a capture break the packets' continuity counter too, and are still
    damage."""
    steps = [3600 if (i // 12) % 2 == 0 else 18000 for i in range(48)]
    src = vfr_ts(tmp_path / "vfr.ts", steps)
    code, err = run(str(src), str(tmp_path / "o.mkv"), "--variant", "mks")
    assert code == 0 and "damaged" not in err, err
    assert n_frames(tmp_path / "o.mkv") == 48
    lossy = vfr_ts(tmp_path / "lossy.ts", [3600] * 48, drop=range(20, 25))
    code, err = run(str(lossy), str(tmp_path / "o2.mkv"), "--variant", "mks")
    assert code == 1 and "frames missing" in error_line(err), err


def raw_h264(path: Path, n: int) -> Path:
    with av.open(str(path), "w", format="h264") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.options = {"preset": "ultrafast", "bf": "0"}
        for i in range(n):
            f = av.VideoFrame.from_ndarray(pattern(48, 64, i), format="rgb24")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    return path


@pytest.mark.parametrize("start", [None, 1.0])
def test_a_stopped_raw_stream_names_its_last_frames_time(tmp_path: Path, start: float | None) -> None:
    """A raw .h264's frames have no timestamps: a stop said 'the last at 0.00 s' (with --start 1: '1.00 s') for a
    frame further on, the time a user resumes from with --start. It is the time the output gives the frame."""
    import threading

    from psr2video import Upscaler
    from psr2video.video.hud import Stats
    from psr2video.video.pipeline import Options
    from psr2video.video.pipeline import run as run_pipeline
    from psr2video.video.trim import Trim

    src = raw_h264(tmp_path / "in.h264", 60)
    stop = threading.Event()

    class Stopping(Stats):
        def frame_done(self, n: int, media_time: float) -> None:
            super().frame_done(n, media_time)
            if self.done >= 12:
                stop.set()

    out = tmp_path / "o.mkv"
    trim = None if start is None else Trim(start=Fraction(1), end=None)
    res = run_pipeline(Options(input=str(src), output=str(out), trim=trim), Upscaler("mks", 2, device="cpu"),
                       stop=stop, stats=Stopping(), warn=lambda m: None)
    assert res.stopped and res.frames >= 12
    with av.open(str(out)) as c:
        last = [float(f.pts * f.time_base) for f in c.decode(video=0)][-1]
    assert res.stop_time == pytest.approx(last + (start or 0.0), abs=0.005)
    assert res.stop_time == pytest.approx((res.frames - 1) / 25 + (start or 0.0), abs=0.005)


@pytest.mark.parametrize("args", [{"max_frames": 1000}, {"trim": (1, 60)}])
def test_a_cap_on_a_stream_of_unknown_length_is_no_total(tmp_path: Path, args: dict) -> None:
    """A raw stream's length is unknown: --max-frames 1000 was shown as its total ('frame 70/1000', an ETA for
    1000 frames of a 60-frame stream), and --start 1 --end 60 made a total of 1475 from --end. The cap is a bound
    now, and a part of unknown end has no total."""
    from psr2video import Upscaler
    from psr2video.video.hud import Stats
    from psr2video.video.pipeline import Options
    from psr2video.video.pipeline import run as run_pipeline
    from psr2video.video.trim import Trim

    src = raw_h264(tmp_path / "in.h264", 60)
    seen = {}

    def started(st: Stats, res) -> None:
        seen.update(total=st.total, length=getattr(st, "length", 0), cap=getattr(st, "cap", 0), expected=res.expected)

    trim = Trim(start=Fraction(args["trim"][0]), end=Fraction(args["trim"][1])) if "trim" in args else None
    res = run_pipeline(Options(input=str(src), output=str(tmp_path / "o.mkv"), trim=trim,
                               max_frames=args.get("max_frames", 0)), Upscaler("mks", 2, device="cpu"),
                       warn=lambda m: None, on_start=started)
    assert res.frames == (60 if "max_frames" in args else 35)
    assert seen["total"] == 0 and seen["length"] == 0 and seen["expected"] == 0, seen
    assert seen["cap"] == args.get("max_frames", 0)


def test_an_average_rate_of_one_tick_is_not_the_frame_rate(tmp_path: Path) -> None:
    """A VFR MP4 remuxed into Matroska averages its 1 ms tick: FFmpeg reports avg_frame_rate 1000/1 (its own guess,
    av_guess_frame_rate, takes r_frame_rate, 25/1). The '> 1000' guard let exactly 1000 through: 9600 frames
    expected of 80, 0.01x realtime. A VFR stream's length x rate is no frame count either."""
    from psr2video.video.continuity import video_rate
    from psr2video.video.reader import open_input, stream_info

    mp4 = tmp_path / "vfr.mp4"
    with av.open(str(mp4), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.time_base = Fraction(1, 1000)
        v.codec_context.time_base = Fraction(1, 1000)
        v.options = {"preset": "ultrafast", "bf": "0"}
        t = 0
        for i in range(40):
            f = av.VideoFrame.from_ndarray(pattern(48, 64, i), format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 1000)
            out.mux(v.encode(f))
            t += 40 if (i // 10) % 2 == 0 else 200
        out.mux(v.encode(None))
    mkv = tmp_path / "vfr.mkv"
    with av.open(str(mp4)) as i, av.open(str(mkv), "w") as o:
        s = o.add_stream_from_template(i.streams.video[0])
        for p in i.demux(i.streams.video[0]):
            if p.dts is not None:
                p.stream = s
                o.mux(p)
    with open_input(str(mkv)) as c:
        s = c.streams.video[0]
        assert s.average_rate == 1000 and s.guessed_rate == 25  # what FFmpeg reports for such a file
        assert video_rate(s) == 25
        info = stream_info(c)
    assert info.rate == 25 and info.frames == 0  # not 9600, nor 240: the count is unknown
    with open_input(str(mp4)) as c:
        assert stream_info(c).frames == 40  # MP4 keeps a count

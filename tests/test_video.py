"""Video pipeline: real files made with PyAV in the test, run through `psr2video IN OUT --variant mks`."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from psr2video.cli import cli
from psr2video.video import color as C

TB = Fraction(1, 1000)
VFR_PTS = [0, 40, 80, 150, 160, 240, 300, 420, 440, 520]


def pattern(h: int, w: int, i: int) -> np.ndarray:
    """Smooth, saturated RGB test picture (moves with i)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 0.5 + 0.45 * np.sin(xx / w * 2 * math.pi + i * 0.3)
    g = 0.5 + 0.45 * np.cos(yy / h * 2 * math.pi - i * 0.2)
    b = 0.5 + 0.45 * np.sin((xx + yy) / (w + h) * 3 * math.pi)
    return (np.stack([r, g, b], -1) * 255).round().astype(np.uint8)


def raw_h264(path: Path, rate: int, n: int, w: int, h: int, step: int) -> Path:
    """An H.264 elementary stream (no timestamps): ``n`` flat grey frames of level ``step * i`` at ``rate`` fps."""
    with av.open(str(path), "w", format="h264") as out:
        v = out.add_stream("libx264", rate=rate)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.options = {"preset": "ultrafast"}
        for i in range(n):
            f = av.VideoFrame.from_ndarray(np.full((h, w, 3), step * i, np.uint8), format="rgb24")
            f = f.reformat(format="yuv420p")
            f.pts, f.time_base = i, Fraction(1, rate)
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    return path


def make_clip(path: Path, w: int = 48, h: int = 32, pts: list[int] | None = None, codec: str = "libx264",
              pix_fmt: str = "yuv420p", space: int | None = C.SPACE_BT709, full_range: bool = False,
              audio: tuple[str, ...] = ("aac",), subtitle: bool = True, font: bool = False,
              chapters: bool = False) -> Path:
    """A real clip: video (VFR pts in 1/1000), optional AAC/Opus audio, an SRT subtitle, a font attachment."""
    pts = VFR_PTS if pts is None else pts
    out = av.open(str(path), "w")
    v = out.add_stream(codec, rate=25)
    v.width, v.height, v.pix_fmt = w, h, pix_fmt
    v.time_base = TB
    v.codec_context.time_base = TB
    if codec == "libx264":
        v.options = {"crf": "12", "preset": "ultrafast", "bf": "0"}
    cc = v.codec_context
    if space is not None:
        cc.colorspace = space
        cc.color_primaries = C.PRIM_BT709 if space == C.SPACE_BT709 else C.PRIM_SMPTE170M
        cc.color_trc = C.TRC_BT709 if space == C.SPACE_BT709 else C.TRC_SMPTE170M
    cc.color_range = C.RANGE_FULL if full_range else C.RANGE_LIMITED
    astreams = []
    for name in audio:
        a = out.add_stream(name, rate=48000)
        a.layout = "stereo"
        astreams.append(a)
    srt = None
    if subtitle:
        sp = path.with_suffix(".srt")
        sp.write_text("1\n00:00:00,000 --> 00:00:00,200\nhello\n\n2\n00:00:00,300 --> 00:00:00,500\nworld\n")
        srt = av.open(str(sp))
        s = out.add_stream_from_template(srt.streams[0])
        s.metadata["language"] = "eng"
    if font:
        out.add_attachment("font.ttf", "font/ttf", b"\x00\x01\x00\x00not-a-real-font")
    out.metadata["title"] = "psr2video test clip"
    if chapters:
        out.set_chapters([{"id": 1, "start": 0, "end": 200, "time_base": TB, "metadata": {"title": "one"}},
                          {"id": 2, "start": 200, "end": 500, "time_base": TB, "metadata": {"title": "two"}}])
    src_space = {C.SPACE_BT709: "ITU709", C.SPACE_SMPTE170M: "ITU601"}.get(space or 0, "ITU601")
    for i, p in enumerate(pts):
        rgb = av.VideoFrame.from_ndarray(pattern(h, w, i), format="rgb24")
        f = rgb.reformat(format=pix_fmt, dst_colorspace=src_space if space is not None else "ITU601",
                         dst_color_range="JPEG" if full_range else "MPEG")
        f.pts, f.time_base = p, TB
        out.mux(v.encode(f))
    out.mux(v.encode(None))
    rng = np.random.default_rng(0)
    for a in astreams:
        n = a.codec_context.frame_size or 960
        for k in range(int(0.5 * 48000 / n)):
            af = av.AudioFrame.from_ndarray((rng.standard_normal((2, n)) * 0.05).astype(np.float32), format="fltp",
                                            layout="stereo")
            af.sample_rate, af.pts = 48000, k * n
            out.mux(a.encode(af))
        out.mux(a.encode(None))
    if srt is not None:
        mux_subtitles(out, srt, s)
    out.close()
    return path


def mux_subtitles(out: av.container.OutputContainer, srt: av.container.InputContainer, s: Any) -> None:
    """Every packet of the subtitle file ``srt`` into ``out``'s stream ``s``; ``srt`` is closed."""
    for pkt in srt.demux():
        if pkt.dts is not None:
            pkt.stream = s
            out.mux(pkt)
    srt.close()


def anamorphic_clip(path: Path, n: int = 3) -> Path:
    """``n`` 64x48 H.264 frames with 4:3 pixels (shown 16:9), a keyframe every 6, no other stream."""
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.options = {"x264-params": "keyint=6:min-keyint=6:scenecut=0"}
        v.codec_context.sample_aspect_ratio = Fraction(4, 3)
        write_frames(c, v, (np.full((48, 64, 3), 10 * i, np.uint8) for i in range(n)))
    return path


def write_frames(out: av.container.OutputContainer, v: av.video.stream.VideoStream, pictures, fmt: str = "rgb24"
                 ) -> None:
    """Encode the HxWxC ``pictures`` (in ``fmt``) into ``v`` as frames 0, 1, 2... in its pixel format, and flush."""
    for i, a in enumerate(pictures):
        f = av.VideoFrame.from_ndarray(a, format=fmt).reformat(format=v.pix_fmt)
        f.pts = i
        for p in v.encode(f):
            out.mux(p)
    for p in v.encode():
        out.mux(p)


def upscale(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, ["upscale", *args, "--variant", "mks", "-q"], catch_exceptions=False)
    return r.exit_code, r.stderr if r.stderr_bytes is not None else r.output  # (click 8.1: mixed, no stderr)


def frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        return [float(f.pts * f.time_base) for f in c.decode(video=0)]


def packets(path: Path, kind: str) -> list[bytes]:
    with av.open(str(path)) as c:
        s = [x for x in c.streams if x.type == kind]
        if not s:
            return []
        return [bytes(p) for p in c.demux(s[0]) if p.dts is not None and p.size]


def test_color_rules() -> None:
    assert C.decide_color(None, None, None, None, 720).space == C.SPACE_BT709
    assert C.decide_color(C.SPACE_UNSPECIFIED, None, None, None, 576).space == C.SPACE_SMPTE170M
    assert C.decide_color(C.SPACE_BT470BG, None, None, None, 1080).space == C.SPACE_BT470BG
    assert C.decide_color(None, None, None, None, 480, "yuvj420p").full_range
    tags = C.decide_color(None, None, None, None, 480).output_tags()
    assert tags["colorspace"] == C.SPACE_SMPTE170M and tags["color_range"] == C.RANGE_LIMITED


@pytest.mark.parametrize("bits,full,space", [(8, False, C.SPACE_BT709), (10, False, C.SPACE_BT2020_NCL),
                                             (8, True, C.SPACE_SMPTE170M)])
def test_yuv_rgb_inverse(bits: int, full: bool, space: int) -> None:
    """Codes -> RGB -> codes is the identity for 4:4:4 (within rounding) and odd 4:2:0 sizes work."""
    info = C.ColorInfo(space=space, full_range=full)
    rgb = torch.from_numpy(pattern(33, 47, 1)).permute(2, 0, 1)[None].float() / 255
    p444 = C.rgb_to_yuv(rgb, bits, info, 0, 0)
    back = C.rgb_to_yuv(C.yuv_to_rgb(*p444, bits, info), bits, info, 0, 0)
    for a, b in zip(p444, back, strict=True):
        assert (a.int() - b.int()).abs().max() <= 1
    p420 = C.rgb_to_yuv(rgb, bits, info)
    assert p420[1].shape[-2:] == (17, 24)
    rt = C.yuv_to_rgb(*p420, bits, info)
    psnr = -10 * torch.log10(((rt - rgb) ** 2).mean())
    assert psnr > 35, psnr


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))


def _planes(f: av.VideoFrame) -> list[np.ndarray]:
    dt = np.uint16 if "10le" in f.format.name else np.uint8
    return [np.frombuffer(p, dt).reshape(p.height, -1)[:, : p.width].astype(np.float64) for p in f.planes[:3]]


@pytest.mark.parametrize("pix_fmt,space", [("yuv444p", C.SPACE_BT709), ("yuv444p10le", C.SPACE_BT709),
                                           ("yuv444p", None), ("yuv420p", C.SPACE_BT709), ("yuv420p10le", None),
                                           ("yuv422p", C.SPACE_BT709), ("gray", None)])
def test_colour_round_trip_psnr(tmp_path: Path, pix_fmt: str, space: int | None) -> None:
    """Upscale x2 with mks, downscale back (2x2 mean), compare with the input: >= 35 dB.

    4:4:4 clips are compared in RGB through swscale (an independent YUV->RGB) against the picture the clip
    was made from, so a wrong matrix (601 vs 709) or range fails; 4:2:0 clips are compared plane by plane.
    """
    src = make_clip(tmp_path / "in.mkv", 64, 32, pts=[0, 40, 80], codec="ffv1", pix_fmt=pix_fmt, space=space,
                    audio=(), subtitle=False)
    out = tmp_path / "out.mkv"
    code, err = upscale(str(src), str(out), "--codec", "ffv1")
    assert code == 0, err
    sws = "ITU709" if space == C.SPACE_BT709 else "ITU601"  # untagged SD must have been read as BT.601
    with av.open(str(src)) as a, av.open(str(out)) as b:
        vs = b.streams.video[0].codec_context
        assert vs.colorspace == (space or C.SPACE_SMPTE170M)
        assert vs.color_range == C.RANGE_LIMITED
        assert vs.pix_fmt == pix_fmt  # 10-bit in -> 10-bit out, 4:4:4 stays 4:4:4
        fa, fb = list(a.decode(video=0)), list(b.decode(video=0))
    assert len(fa) == len(fb) == 3
    for i, (x, y) in enumerate(zip(fa, fb, strict=True)):
        assert (y.width, y.height) == (2 * x.width, 2 * x.height)
        if pix_fmt.startswith("yuv444"):
            rgb = y.to_ndarray(format="rgb24", src_colorspace=sws, src_color_range="MPEG").astype(np.float64)
            down = rgb.reshape(x.height, 2, x.width, 2, 3).mean((1, 3))
            assert _psnr(pattern(32, 64, i), down) >= 35.0
            wrong = y.to_ndarray(format="rgb24", src_colorspace="ITU601" if sws == "ITU709" else "ITU709",
                                 src_color_range="MPEG").astype(np.float64)
            assert _psnr(pattern(32, 64, i), wrong.reshape(x.height, 2, x.width, 2, 3).mean((1, 3))) < 35.0
        else:
            peak = 1023.0 if "10le" in pix_fmt else 255.0
            for pa, pb in zip(_planes(x), _planes(y), strict=True):
                down = pb.reshape(pa.shape[0], 2, pa.shape[1], 2).mean((1, 3))
                assert 10 * math.log10(peak**2 / np.mean((pa - down) ** 2)) >= 35.0


def test_pix_fmt_yuvj_writes_full_range_codes(tmp_path: Path) -> None:
    """--pix-fmt yuvj444p: the encoder flags the stream full range, so the codes must be full range too (they
    were the limited-range input's codes, which a player then stretched)."""
    src = make_clip(tmp_path / "in.mkv", 64, 32, pts=[0, 40, 80], codec="ffv1", pix_fmt="yuv444p",
                    space=C.SPACE_BT709, audio=(), subtitle=False)
    out = tmp_path / "out.mkv"
    code, err = upscale(str(src), str(out), "--pix-fmt", "yuvj444p", "--crf", "0")
    assert code == 0, err
    with av.open(str(out)) as b:
        assert b.streams.video[0].codec_context.color_range == C.RANGE_FULL
        frames = list(b.decode(video=0))
    for i, y in enumerate(frames):  # read back as the file says (full range), through swscale
        rgb = y.to_ndarray(format="rgb24", src_colorspace="ITU709", src_color_range="JPEG").astype(np.float64)
        assert _psnr(pattern(32, 64, i), rgb.reshape(32, 2, 64, 2, 3).mean((1, 3))) >= 35.0


def test_streams_timestamps_and_tags(tmp_path: Path) -> None:
    """VFR 8-bit clip with AAC + Opus + SRT + a font: same frames and times, audio byte-identical, subs kept."""
    src = make_clip(tmp_path / "in.mkv", audio=("aac", "libopus"), font=True, chapters=True)
    out = tmp_path / "out.mkv"
    code, err = upscale(str(src), str(out))
    assert code == 0, err
    assert frame_times(out) == pytest.approx(frame_times(src), abs=1e-3)
    assert [t * 1000 for t in frame_times(out)] == pytest.approx(VFR_PTS, abs=1)
    with av.open(str(src)) as a, av.open(str(out)) as b:
        assert [s.type for s in b.streams] == [s.type for s in a.streams]
        ka = [s.codec_context.name for s in a.streams if s.type == "audio"]
        kb = [s.codec_context.name for s in b.streams if s.type == "audio"]
        assert ka == kb
        assert b.streams.video[0].codec_context.width == 96
        assert b.streams.video[0].codec_context.colorspace == C.SPACE_BT709
        assert b.streams.video[0].codec_context.color_primaries == C.PRIM_BT709
        att = [s for s in b.streams if s.type == "attachment"]
        assert att and att[0].name == "font.ttf"
        assert b.metadata.get("title") == "psr2video test clip"
        assert [c["metadata"].get("title") for c in b.chapters()] == ["one", "two"]
        sub = [s for s in b.streams if s.type == "subtitle"]
        assert sub and sub[0].metadata.get("language") == "eng"
    assert packets(out, "audio") == packets(src, "audio")
    assert len(packets(out, "subtitle")) == 2
    assert not list(tmp_path.glob(".*partial*"))


def test_ten_bit_odd_size_and_stdout(tmp_path: Path) -> None:
    """Odd-sized 10-bit 4:2:0 input, x3 (odd output is cropped to even), written to stdout as Matroska."""
    src = make_clip(tmp_path / "in.mkv", 35, 27, pts=[0, 33, 67, 100], codec="ffv1", pix_fmt="yuv420p10le",
                    audio=(), subtitle=False)
    r = CliRunner().invoke(cli, ["upscale", str(src), "-", "--variant", "mks", "--scale", "3", "-q", "--format",
                                 "matroska", "--batch", "2"], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    out = tmp_path / "out.mkv"
    out.write_bytes(r.stdout_bytes)
    with av.open(str(out)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.width, cc.height, cc.pix_fmt) == (104, 80, "yuv420p10le")
    assert frame_times(out) == pytest.approx(frame_times(src), abs=1e-3)


def test_mp4_drops_what_it_cannot_hold(tmp_path: Path) -> None:
    """MP4 can't hold a font attachment (dropped with a warning); SRT goes in as mov_text."""
    src = make_clip(tmp_path / "in.mkv", audio=("aac",), subtitle=True, font=True)
    out = tmp_path / "out.mp4"
    code, err = upscale(str(src), str(out), "--max-frames", "4")
    assert code == 0, err
    assert "attachment stream #3 (font.ttf) can't be carried in mp4; dropped (use .mkv)" in err
    assert "subtitle stream #2 (subrip) is written as mov_text" in err
    with av.open(str(out)) as c:
        assert [s.type for s in c.streams] == ["video", "audio", "subtitle"]
        assert c.streams.video[0].codec_context.colorspace == C.SPACE_BT709
    assert len(frame_times(out)) == 4


def test_mpegts_keeps_h264_and_aac(tmp_path: Path) -> None:
    """MPEG-TS holds H.264 and AAC although PyAV's supported_codecs lists only its defaults (MPEG-2, MP2): the
    muxer's own answer decides (this used to refuse with "mpegts can't hold h264 video"). Its subtitles hold only
    DVB: an SRT is named as dropped, not written as an unreadable data stream."""
    src = make_clip(tmp_path / "in.mkv", audio=("aac",), subtitle=True)
    out = tmp_path / "out.ts"
    code, err = upscale(str(src), str(out), "--max-frames", "4")
    assert code == 0, err
    assert "subtitle stream #2 (subrip) can't be carried in mpegts" in err
    with av.open(str(out)) as c:
        assert [(s.type, s.codec_context.name) for s in c.streams] == [("video", "h264"), ("audio", "aac")]
    assert len(frame_times(out)) == 4


@pytest.mark.parametrize("name, words", [
    ("out.ogg", ("ogg can't hold h264 video (--codec libx264)", "use .mkv")),  # asked before anything loads
    ("out.y4m", ("yuv4mpegpipe can't hold h264 video (--codec libx264)", "use .mkv")),  # (its default: rawvideo)
])
def test_container_refusing_streams_at_its_header(tmp_path: Path, name: str, words: tuple) -> None:
    """Muxers without a codec table take any stream and refuse it only when the header is written: that happens
    at set-up, and the one line names the streams (it was FFmpeg's "Invalid argument" about the partial file).
    (MPEG-PS refused only the AAC: it is now re-encoded as AC-3, see test_mpeg_ps_gets_its_audio_reencoded.)"""
    src = make_clip(tmp_path / "in.mkv", audio=("aac",))
    out = tmp_path / name
    code, err = upscale(str(src), str(out), "--max-frames", "2", "--codec", "libx264")
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("Error")]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert all(w in lines[0] for w in words), lines[0]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(("out", ".out"))]  # no partial file left


def test_mpeg_ps_gets_its_audio_reencoded(tmp_path: Path) -> None:
    """MPEG-PS holds H.264 but not AAC, and said so only at its header: the run was refused ("mpeg can't start
    with video libx264, audio aac"). The AAC is now re-encoded as AC-3, which MPEG-PS holds."""
    src = make_clip(tmp_path / "in.mkv", audio=("aac",))
    out = tmp_path / "out.mpg"
    code, err = upscale(str(src), str(out), "--max-frames", "4")
    assert code == 0 and "audio stream #1 (aac) can't be carried in mpeg as it is: re-encoded as ac3" in err, err
    # and its SRT, which FFmpeg would write as a DVD subpicture stream (read back as garbage), is named as dropped
    assert "subtitle stream #2 (subrip) can't be carried in mpeg (it holds only DVD subtitles); dropped" in err, err
    with av.open(str(out)) as c:
        assert [(s.type, s.codec_context.name) for s in c.streams] == [("video", "h264"), ("audio", "ac3")]
        assert sum(1 for _ in c.decode(video=0)) == 4  # (MPEG-PS times only some packets: frames counted)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc (a folder no file can be made in)")
def test_unwritable_output_named_as_the_user_wrote_it(tmp_path: Path) -> None:
    """A folder that exists but takes no new file: the one line names OUT (not our .OUT.partial name) and
    says why, not 'folder does not exist' nor a container/codec mismatch."""
    src = make_clip(tmp_path / "in.mkv", audio=("aac",))
    code, err = upscale(str(src), "/proc/psr2video-test.mkv", "--max-frames", "2")
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("Error")]
    assert code == 1 and lines == ["Error: can't write /proc/psr2video-test.mkv: no file can be created there"], err


@pytest.mark.parametrize("ext, codec, kept", [("mkv", "libx264", True), ("mp4", "libx264", True),
                                              ("mkv", "libx265", True), ("mp4", "libsvtav1", True),
                                              ("mkv", "ffv1", False), ("mkv", "libsvtav1", False)])
def test_sample_aspect_ratio_carried(tmp_path: Path, ext: str, codec: str, kept: bool) -> None:
    """Non-square pixels (a 4:3-SAR anamorphic clip shown 16:9) keep their shape: both axes are scaled alike, so
    the output carries the same SAR (it used to come out 0/1, shown 4:3, silently). Where PyAV can't write it
    (no SAR in the bitstream, a muxer that reads only the stream-level value) a warning says so."""
    src = anamorphic_clip(tmp_path / "sar.mkv")
    out = tmp_path / f"out.{ext}"
    code, err = upscale(str(src), str(out), "--codec", codec)
    assert code == 0, err
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert (s.codec_context.width, s.codec_context.height) == (128, 96)
        if kept:
            assert s.sample_aspect_ratio == Fraction(4, 3) and s.display_aspect_ratio == Fraction(16, 9)
    assert ("non-square pixels (sample aspect ratio 4:3)" in err) != kept, err


@pytest.mark.parametrize("ext, codec, said", [("avi", "ffv1", True), ("nut", "libvpx-vp9", True),
                                              ("avi", "libx264", False), ("mkv", "ffv1", False)])
def test_colour_tags_a_container_loses_are_named(tmp_path: Path, ext: str, codec: str, said: bool) -> None:
    """FFV1 in AVI came back untagged (read as BT.601, 36.5 dB off the .mkv) without a word: now a warning says
    so; where the bitstream keeps the tags (H.264) or the container does (Matroska) nothing is said."""
    src = make_clip(tmp_path / "in.mkv", audio=(), subtitle=False)
    out = tmp_path / f"out.{ext}"
    code, err = upscale(str(src), str(out), "--codec", codec)
    assert code == 0, err
    assert (f"warning: {ext} has no colour tags and {codec}" in err) == said, err


def test_container_named_before_work(tmp_path: Path) -> None:
    """An extension no FFmpeg muxer claims, or an unknown --format: one line naming the user's file (not the
    partial file's name), before anything loads, and nothing written."""
    src = make_clip(tmp_path / "in.mkv", audio=(), subtitle=False)
    for out, extra, words in ((tmp_path / "o.xyz", (), "extension '.xyz'"),
                              (tmp_path / "o", (), "without an extension"),
                              (tmp_path / "o.mkv", ("--format", "nonsense"), "unknown --format 'nonsense'")):
        code, err = upscale(str(src), str(out), *extra)
        assert code == 1 and words in err and "partial" not in err, err
        assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_overlay_fps(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mkv", 64, 64, pts=[0, 40], codec="ffv1", audio=(), subtitle=False)
    out = tmp_path / "out.mkv"
    code, err = upscale(str(src), str(out), "--overlay-fps", "--codec", "ffv1")
    assert code == 0, err
    with av.open(str(out)) as c:
        f = next(c.decode(video=0))
        y = np.frombuffer(f.planes[0], np.uint8).reshape(f.planes[0].height, -1)
    assert (y[0, :20] == 16).all() and (y[:8, :30] == 235).any()


def test_stdin_to_file(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mkv", pts=[0, 40, 80, 120], audio=("aac",), subtitle=False)
    out = tmp_path / "out.mkv"
    r = CliRunner().invoke(cli, ["upscale", "-", str(out), "--variant", "mks", "-q"], input=src.read_bytes(),
                           catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    assert frame_times(out) == pytest.approx(frame_times(src), abs=1e-3)
    assert packets(out, "audio") == packets(src, "audio")


@pytest.mark.gpu
def test_hwaccel_and_input_format_mistakes(tmp_path: Path) -> None:
    """An unknown --hwaccel or --input-format is one line naming what exists (a typo used to be 'can't open IN:
    Operation not permitted' and a software decode; --input-format bogus was a ValueError traceback); a known
    hardware decoder that can't start here falls back to software, saying why in the decoder's terms."""
    src = make_clip(tmp_path / "in.mkv")
    code, err = upscale(str(src), str(tmp_path / "a.mkv"), "--hwaccel", "bogus")
    assert code == 1 and "unknown --hwaccel 'bogus'; this FFmpeg has" in err and "Traceback" not in err, err
    code, err = upscale(str(src), str(tmp_path / "b.mkv"), "--input-format", "bogus")
    assert code == 1 and "unknown --input-format 'bogus'" in err and "Traceback" not in err, err
    import torch

    if not torch.cuda.is_available():
        code, err = upscale(str(src), str(tmp_path / "c.mkv"), "--hwaccel", "cuda", "--max-frames", "2")
        assert code == 0 and "--hwaccel cuda can't start here" in err and "Operation not permitted" not in err, err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (pinned buffers, copy streams, NVDEC)")
@pytest.mark.parametrize("hwaccel", [None, "cuda"])
def test_cuda_pipeline(tmp_path: Path, hwaccel: str | None, request: pytest.FixtureRequest) -> None:
    """CUDA path: upload N+1 / compute N / download N-1 overlap; NVDEC frames handed over by DLPack."""
    if hwaccel:
        request.getfixturevalue("nvdec")  # (else it would pass on software decoding)
    src = make_clip(tmp_path / "in.mkv", 64, 48, pts=list(range(0, 400, 40)), audio=("aac",), subtitle=False)
    out = tmp_path / "out.mkv"
    args = ["--device", "cuda", "--batch", "3", "--backend", "torch"] + (["--hwaccel", hwaccel] if hwaccel else [])
    code, err = upscale(str(src), str(out), *args)
    assert code == 0, err
    assert frame_times(out) == pytest.approx(frame_times(src), abs=1e-3)
    with av.open(str(src)) as a, av.open(str(out)) as b:
        xa = [f.to_ndarray(format="rgb24", src_colorspace="ITU709") for f in a.decode(video=0)]
        xb = [f.to_ndarray(format="rgb24", src_colorspace="ITU709") for f in b.decode(video=0)]
    for x, y in zip(xa, xb, strict=True):
        down = y.reshape(x.shape[0], 2, x.shape[1], 2, 3).astype(np.float64).mean((1, 3))
        assert _psnr(x, down) >= 28.0


def test_stop_before_the_first_frame_writes_nothing(tmp_path: Path) -> None:
    """Ctrl-C after set-up but before any frame was encoded: PyAV has not created the file yet. The run ends
    stopped with 0 frames, no partial file, and an existing OUT (overwritten with -y) is left as it was."""
    import threading

    from psr2video import Upscaler
    from psr2video.video.pipeline import Options, partial_path, run

    src = make_clip(tmp_path / "in.mkv", pts=list(range(0, 400, 40)), audio=(), subtitle=False)
    out = tmp_path / "o.mkv"
    out.write_bytes(b"the user's old file")
    stop = threading.Event()
    res = run(Options(input=str(src), output=str(out)), Upscaler("mks", 2, device="cpu"), stop=stop,
              warn=lambda m: None, on_start=lambda st, r: stop.set())
    assert res.stopped and res.frames == 0
    assert out.read_bytes() == b"the user's old file" and not Path(partial_path(str(out))).exists()


def test_a_stopped_run_keeps_every_frame_up_to_its_end(tmp_path: Path) -> None:
    """A stop (Ctrl-C, SIGTERM) with the reader's queue full (the model is the slow stage): the reader made room
    for its end marker by dropping the oldest queued frame, and the output lacked a frame 8 before its end. Now
    the frames written are the first N, none missing."""
    import threading
    import time

    from psr2video import Upscaler
    from psr2video.video.hud import Stats
    from psr2video.video.pipeline import Options, run

    class SlowStats(Stats):  # the model's pace, slower than the reader's: the queue fills, then Ctrl-C
        def frame_done(self, n: int, media_time: float) -> None:
            super().frame_done(n, media_time)
            time.sleep(0.05 if self.done < 10 else 0.3)
            if self.done >= 10:
                stop.set()

    src = make_clip(tmp_path / "in.mkv", pts=list(range(0, 2400, 40)), audio=(), subtitle=False)
    out = tmp_path / "o.mkv"
    stop = threading.Event()
    res = run(Options(input=str(src), output=str(out)), Upscaler("mks", 2, device="cpu"), stop=stop,
              stats=SlowStats(), warn=lambda m: None)
    assert res.stopped and 10 <= res.frames < 60
    with av.open(str(out)) as c:
        times = [f.pts for f in c.decode(video=0)]
    assert times == list(range(0, 40 * res.frames, 40))


@pytest.mark.parametrize("ext, codec", [("mp4", "libvpx-vp9"), ("mkv", "ffv1")])
def test_the_join_carries_the_pixel_shape(tmp_path: Path, ext: str, codec: str) -> None:
    """An anamorphic source (SAR 4:3) joined from segments whose codec keeps no SAR in its bitstream (VP9, FFV1):
    the join's video stream was made from the NUT segments without the source's pixel shape, so an .mp4 came out
    squashed to 4:3 (a single run keeps 16:9). The join carries it as a single run does, and says once what the
    container can't hold (FFV1 in Matroska), naming OUT's container."""
    src = anamorphic_clip(tmp_path / "sar.mkv", n=18)
    out = tmp_path / f"out.{ext}"
    said: list[str] = []
    from psr2video.scaleout import split
    from psr2video.scaleout.join import join
    from psr2video.scaleout.tasks import Placement, Settings, upscale_segment

    packets, tb = split.scan(str(src))
    segs = split.plan(packets, tb, 0.2, min_segments=2)
    st = Settings("mks", 2, None, "auto", None, 0, 1, codec, None, None, None)
    files = []
    for seg, data in split.cut(str(src), segs, {s.index for s in segs}):
        r = upscale_segment(st, Placement(), seg, data, None, 0, None, split.source_color(str(src)))
        files.append(tmp_path / f"segment{seg.index}.nut")
        files[-1].write_bytes(r.data)
    assert len(files) >= 2
    join(str(src), files, str(out), codec, None, warn=said.append)
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        shape = (s.sample_aspect_ratio, s.display_aspect_ratio)
    if ext == "mp4":
        assert shape == (Fraction(4, 3), Fraction(16, 9)) and not said, (shape, said)
    else:
        assert [ln for ln in said if "non-square pixels" in ln and "ffv1 in matroska" in ln], said


def test_pix_fmt_gray_says_the_colour_is_dropped(tmp_path: Path) -> None:
    """--pix-fmt gray on a colour source wrote brightness only without a word; said now (a grey source is not)."""
    src = make_clip(tmp_path / "in.mkv", 64, 32, pts=[0, 40], codec="ffv1", audio=(), subtitle=False)
    code, err = upscale(str(src), str(tmp_path / "out.mkv"), "--codec", "ffv1", "--pix-fmt", "gray")
    assert code == 0 and "note: --pix-fmt gray holds brightness only: the input's colour is dropped" in err, err
    grey = make_clip(tmp_path / "grey.mkv", 64, 32, pts=[0, 40], codec="ffv1", pix_fmt="gray", audio=(),
                     subtitle=False)
    code, err = upscale(str(grey), str(tmp_path / "g.mkv"), "--codec", "ffv1", "--pix-fmt", "gray")
    assert code == 0 and "colour is dropped" not in err, err

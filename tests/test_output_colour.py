"""What the output records of the input's colour and tags, and the encoders' own rules: full range where the output
can't record it, colour tags a codec + container lose, a phone's place/make/model into MOV/MP4, 4:1:1 DV, DNxHR,
interlaced ProRes/FFV1, VP9's alpha mode, and the small wordings (--pix-fmt, YCgCo, PAL, rotation, 10-bit H.264).
Small clips made here with PyAV; real runs through the CLI (--variant mks)."""

from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_video_input import error_line, run  # noqa: E402

from psr2video.video import color as C  # noqa: E402

LEVELS = (60, 200)  # two flat patches (full-range luma codes): full-range codes read as limited move them by ~9


def clip(path: Path, codec: str = "libx264", pix_fmt: str = "yuv420p", w: int = 64, h: int = 48, n: int = 3,
         tags: dict[str, int] | None = None, options: dict[str, str] | None = None, meta: dict[str, str] | None = None,
         container_options: dict[str, str] | None = None, rotation: int | None = None,
         prepare=None) -> Path:
    """A clip of two flat grey patches (left dark, right light) in ``pix_fmt`` with the colour ``tags`` given."""
    with av.open(str(path), "w", options=container_options or {}) as out:
        if meta:
            out.metadata.update(meta)
        v = out.add_stream(codec, rate=25)
        v.width, v.height, v.pix_fmt = w, h, pix_fmt
        v.options = options or ({"preset": "ultrafast"} if codec == "libx264" else {})
        for k, val in (tags or {}).items():
            setattr(v.codec_context, k, val)
        if prepare is not None:
            prepare(v)
        if rotation is not None:
            v.set_display_rotation(rotation)
        for i in range(n):
            f = av.VideoFrame(w, h, pix_fmt)
            fmt = av.VideoFormat(pix_fmt)
            for p, comp in zip(f.planes, range(3), strict=False):
                dtype = np.uint16 if fmt.components[0].bits > 8 else np.uint8
                a = np.frombuffer(p, dtype).reshape(p.height, p.line_size // dtype().itemsize)
                shift = fmt.components[0].bits - 8
                if comp == 0:
                    a[:, :] = LEVELS[0] << shift
                    a[:, p.width // 2:] = LEVELS[1] << shift
                else:
                    a[:, :] = 128 << shift
            for k, val in (tags or {}).items():
                if k != "chroma_sample_location":
                    setattr(f, k, val)
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    return path


def patch_rgb(path: Path) -> tuple[float, float]:
    """The dark and light patches' mean grey, as a player reads the file (the frame's own tags)."""
    with av.open(str(path)) as c:
        f = next(c.decode(video=0))
        rgb = f.to_ndarray(format="rgb24", src_color_range=f.color_range or 1).astype(float)
    w = rgb.shape[1]
    return rgb[4:-4, 4:w // 2 - 8].mean(), rgb[4:-4, w // 2 + 8:-4].mean()


FULL = {"color_range": 2, "colorspace": 1, "color_primaries": 1, "color_trc": 1}


@pytest.mark.parametrize(("codec", "ext", "folded"), [("prores_ks", "mov", True), ("mpeg4", "avi", True),
                                                      ("utvideo", "avi", True), ("mpeg2video", "mkv", True),
                                                      ("libx264", "mov", False), ("ffv1", "mkv", False)])
def test_full_range_where_the_output_cant_record_it(tmp_path: Path, codec: str, ext: str, folded: bool) -> None:
    """A full-range source (a phone's or webcam's MJPEG) into ProRes, AVI, MPEG-2...: the full-range codes were
    written, read back as limited (9 levels off, contrast stretched) without a word. The levels are now folded into
    the conversion (limited-range codes) and a note says so; where the range is recorded it is kept."""
    src = clip(tmp_path / "in.mkv", pix_fmt="yuvj420p", tags=FULL)
    want = patch_rgb(src)
    out = tmp_path / f"o.{ext}"
    code, err = run(str(src), str(out), "--variant", "mks", "--codec", codec)
    assert code == 0, err
    assert ("can't record full range" in err) == folded, err
    got = patch_rgb(out)
    assert got == pytest.approx(want, abs=3), (got, want)
    with av.open(str(out)) as c:
        f = next(c.decode(video=0))
        assert (f.color_range == 2) != folded


def test_colour_tags_a_codec_loses_are_named(tmp_path: Path) -> None:
    """HDR10 (BT.2020, PQ) as utvideo in AVI came back untagged without a word (only FFV1 and VP9 were named); the
    measured table names it, and nothing is said where the bitstream or the container keeps them."""
    src = clip(tmp_path / "in.mkv", codec="libx265", pix_fmt="yuv420p10le",
               tags={"color_range": 1, "colorspace": 9, "color_primaries": 9, "color_trc": 16},
               options={"x265-params": "log-level=error"})
    for codec, ext, said in (("utvideo", "avi", True), ("libx264", "avi", False), ("prores_ks", "mov", False)):
        code, err = run(str(src), str(tmp_path / f"o_{codec}.{ext}"), "--variant", "mks", "--codec", codec,
                        "--max-frames", "1")
        assert code == 0, err
        assert ("players will guess" in err) == said, (codec, err)
    from psr2video.video.writer import colour_kept

    assert colour_kept("libx264", "avi") == {"range", "matrix", "primaries", "transfer"}
    assert "range" not in colour_kept("prores_ks", "mov") and "matrix" in colour_kept("prores_ks", "mov")


APPLE = {"com.apple.quicktime.location.ISO6709": "+37.7749-122.4194+010.000/", "com.apple.quicktime.make": "Apple",
         "com.apple.quicktime.model": "iPhone 15"}


def test_a_phones_place_make_and_model_into_mov_and_mp4(tmp_path: Path) -> None:
    """An iPhone clip's place, make and model were named as lost into .mov/.mp4, though FFmpeg's muxer writes
    them under its own keys: carried (MOV all three, MP4 the place), and only what is lost is named."""
    src = clip(tmp_path / "in.mov", meta=APPLE, container_options={"movflags": "use_metadata_tags"})
    code, err = run(str(src), str(tmp_path / "o.mov"), "--variant", "mks")
    assert code == 0 and "container tag" not in err, err
    with av.open(str(tmp_path / "o.mov")) as c:
        md = dict(c.metadata)
    assert (md.get("location"), md.get("make"), md.get("model")) == ("+37.7749-122.4194+010.000/", "Apple",
                                                                      "iPhone 15"), md
    code, err = run(str(src), str(tmp_path / "o.mp4"), "--variant", "mks")
    assert code == 0, err
    with av.open(str(tmp_path / "o.mp4")) as c:
        assert c.metadata.get("location", "").startswith("+37.7749-122.4194+10"), dict(c.metadata)
    lost = [ln for ln in err.splitlines() if "container tag" in ln]
    assert len(lost) == 1 and "ISO6709" not in lost[0] and "com.apple.quicktime.make" in lost[0], err


@pytest.mark.parametrize("pix_fmt", ["yuv411p", "yuv410p"])
def test_quarter_chroma_is_written_420(tmp_path: Path, pix_fmt: str) -> None:
    """NTSC DV's 4:1:1 came out as H.264 High 4:4:4 Predictive (every layout but 4:2:0/4:2:2 went to 4:4:4),
    which few players decode: 4:2:0 now, without a note; --pix-fmt yuv422p still gives 4:2:2."""
    src = clip(tmp_path / "in.mkv", codec="ffv1", pix_fmt=pix_fmt)
    code, err = run(str(src), str(tmp_path / "o.mkv"), "--variant", "mks")
    assert code == 0 and "note: the input is" not in err, err
    with av.open(str(tmp_path / "o.mkv")) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    code, err = run(str(src), str(tmp_path / "o2.mkv"), "--variant", "mks", "--pix-fmt", "yuv422p")
    assert code == 0, err
    with av.open(str(tmp_path / "o2.mkv")) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv422p"


@pytest.mark.parametrize(("pix_fmt", "written"), [("yuv420p", "yuv422p"), ("yuv420p10le", "yuv422p10le")])
def test_dnxhd_runs_as_dnxhr(tmp_path: Path, pix_fmt: str, written: str) -> None:
    """--codec dnxhd could not run ("refused its settings"): FFmpeg's default profile takes only some 1080/720
    sizes and bitrates. A DNxHR profile from the pixel format now (HQ 8-bit, HQX 10-bit 4:2:2)."""
    src = clip(tmp_path / "in.mkv", pix_fmt=pix_fmt, w=128, h=64, n=2,
               options={"preset": "ultrafast"} if pix_fmt == "yuv420p" else {})
    code, err = run(str(src), str(tmp_path / "o.mov"), "--variant", "mks", "--codec", "dnxhd")
    assert code == 0, err
    with av.open(str(tmp_path / "o.mov")) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "dnxhd" and s.codec_context.pix_fmt == written
        assert sum(1 for _ in c.decode(s)) == 2


def test_dnxhr_too_small_is_one_line(tmp_path: Path) -> None:
    src = clip(tmp_path / "in.mkv", w=48, h=32, n=2)
    code, err = run(str(src), str(tmp_path / "o.mov"), "--variant", "mks", "--codec", "dnxhd")
    assert code == 1 and "at least 256x120" in error_line(err), err


def _interlaced(v) -> None:
    v.codec_context.flags |= av.codec.context.Flags.interlaced_dct
    v.codec_context.field_order = 3  # bottom field first


@pytest.mark.parametrize(("codec", "ext"), [("prores_ks", "mov"), ("prores_aw", "mov"), ("ffv1", "mkv"),
                                            ("mpeg4", "mkv")])
def test_interlaced_input_is_coded_interlaced(tmp_path: Path, codec: str, ext: str) -> None:
    """Interlaced input into ProRes was coded progressive while its MOV said bottom field first (only x264 and
    MPEG-2 were given the field flags): ProRes, FFV1 and MPEG-4 code fields now."""
    src = clip(tmp_path / "in.mkv", w=64, h=48, n=2, options={"preset": "ultrafast", "x264-params": "bff=1"},
               prepare=_interlaced)
    out = tmp_path / f"o.{ext}"
    code, err = run(str(src), str(out), "--variant", "mks", "--codec", codec)
    assert code == 0 and "interlaced input (bottom field first)" in err, err
    with av.open(str(out)) as c:
        assert all(f.interlaced_frame for f in c.decode(video=0))


def test_vp9_alpha_mode_is_not_carried(tmp_path: Path) -> None:
    """A VP9-with-alpha WebM's AlphaMode (ALPHA_MODE tag) was carried into an output without alpha."""
    src = tmp_path / "in.webm"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libvpx-vp9", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuva420p"
        v.options = {"deadline": "realtime", "cpu-used": "8"}
        for i in range(2):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 4), 120, np.uint8), format="rgba")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    with av.open(str(src)) as c:
        assert "ALPHA_MODE" in {k.upper() for k in c.streams.video[0].metadata}  # (the premise)
    out = tmp_path / "o.webm"
    code, err = run(str(src), str(out), "--variant", "mks", "--codec", "libvpx-vp9")
    assert code == 0, err
    with av.open(str(out)) as c:
        assert "ALPHA_MODE" not in {k.upper() for k in c.streams.video[0].metadata}
    assert bytes.fromhex("53c081") not in out.read_bytes()  # Matroska's AlphaMode element, set


def test_pix_fmt_refusal_lists_only_what_can_be_written(tmp_path: Path) -> None:
    src = clip(tmp_path / "in.mkv", n=1)
    for fmt in ("yuv420p12le", "nv12"):
        code, err = run(str(src), str(tmp_path / "o.mkv"), "--variant", "mks", "--pix-fmt", fmt)
        line = error_line(err)
        assert code == 1 and "yuv420p" in line and "nv12," not in line and "nv16" not in line, line


def test_colour_wordings_and_sd_primaries() -> None:
    """A YCgCo-tagged stream was called "untagged, guessed"; untagged 576-line SD got NTSC's primaries."""
    ycgco = C.decide_color(8, 1, 1, 1, 90, "yuv444p")
    assert "tagged YCgCo, read as BT.601" in ycgco.describe() and "untagged" not in ycgco.describe()
    assert "untagged, guessed" in C.decide_color(None, None, None, None, 90, "yuv420p").describe()
    assert C.decide_color(None, None, None, None, 576, "yuv420p").output_tags()["color_primaries"] == C.PRIM_BT470BG
    for h in (480, 486):
        assert C.decide_color(None, None, None, None, h, "yuv420p").output_tags()["color_primaries"] == \
            C.PRIM_SMPTE170M
    assert C.decide_color(None, None, None, None, 720, "yuv420p").output_tags()["color_primaries"] == C.PRIM_BT709


def test_rotation_said_as_a_turn(tmp_path: Path) -> None:
    """A phone's portrait clip (display matrix -90: shown turned a quarter clockwise) was said "rotated by -90"."""
    src = clip(tmp_path / "in.mp4", n=2, rotation=-90)
    code, err = run(str(src), str(tmp_path / "o.mp4"), "--variant", "mks")
    assert code == 0 and "rotated by 270 degrees (display matrix), a quarter turn clockwise" in err, err
    assert "-90" not in err


def test_ten_bit_h264_by_default_is_noted(tmp_path: Path) -> None:
    """A 10-bit source without --codec became 10-bit H.264, which few devices play, without a word."""
    from psr2video import Upscaler
    from psr2video.video.pipeline import Options
    from psr2video.video.pipeline import run as run_pipeline

    src = clip(tmp_path / "in.mkv", pix_fmt="yuv420p10le", n=1, options={})
    said: list[str] = []
    up = Upscaler("mks", 2, device="cpu")
    run_pipeline(Options(input=str(src), output=str(tmp_path / "o.mkv"), codec_default=True), up, warn=said.append)
    assert any("few devices" in s and "libx265" in s for s in said), said
    said.clear()
    run_pipeline(Options(input=str(src), output=str(tmp_path / "o2.mkv")), up, warn=said.append)
    assert not any("few devices" in s for s in said), said
    # the command line: said for its default encoder, not for a --codec the user chose
    code, err = run(str(src), str(tmp_path / "o3.mkv"), "--variant", "mks")
    assert code == 0 and "few devices" in err, err
    code, err = run(str(src), str(tmp_path / "o4.mkv"), "--variant", "mks", "--codec", "libx264")
    assert code == 0 and "few devices" not in err, err


def _read_back_tags(tmp_path: Path, codec: str, fmt: str, ext: str) -> set[str]:
    """Which colour tags ``codec`` in ``fmt`` records, measured as writer.COLOUR_KEPT was: written at full range
    (BT.709) and at limited range (BT.2020, PQ), read back from the decoded frame."""
    from psr2video.video.writer import dnxhr_profile, pick_pix_fmt

    got: set[str] = set()
    for full in (True, False):
        tags = FULL if full else {"color_range": 1, "colorspace": 9, "color_primaries": 9, "color_trc": 16}
        pix = pick_pix_fmt(codec, 8 if full else 10, 1, 1, False, None)
        path = tmp_path / f"m_{codec}_{int(full)}.{ext}"
        with av.open(str(path), "w", format=fmt) as out:
            v = out.add_stream(codec, rate=25)
            v.width, v.height, v.pix_fmt = 256, 144, pix
            if codec == "dnxhd":
                v.options = {"profile": dnxhr_profile(pix)}
            for k, val in tags.items():
                setattr(v.codec_context, k, val)
            grey = av.VideoFrame.from_ndarray(np.full((144, 256, 3), 100, np.uint8), format="rgb24")
            for i in range(2):
                f = grey.reformat(format=pix)
                for k, val in tags.items():
                    setattr(f, k, val)
                f.pts = i
                out.mux(v.encode(f))
            out.mux(v.encode(None))
        with av.open(str(path)) as c:
            f = next(c.decode(video=0))
        if full:
            got |= {"range"} if f.color_range == 2 else set()
        else:
            got |= {name for name, value, want in (("matrix", f.colorspace, 9), ("primaries", f.color_primaries, 9),
                                                   ("transfer", f.color_trc, 16)) if value == want}
    return got


@pytest.mark.parametrize(("codec", "fmt", "ext"), [
    ("prores_ks", "mov", "mov"), ("mpeg4", "avi", "avi"), ("mpeg4", "mov", "mov"), ("mpeg4", "matroska", "mkv"),
    ("utvideo", "avi", "avi"), ("v210", "mov", "mov"), ("mpeg2video", "matroska", "mkv"), ("ffv1", "nut", "nut"),
    ("ffv1", "matroska", "mkv"), ("libvpx-vp9", "avi", "avi"), ("libx264", "avi", "avi"), ("dnxhd", "mov", "mov")])
def test_colour_table_matches_what_is_read_back(tmp_path: Path, codec: str, fmt: str, ext: str) -> None:
    """writer.COLOUR_KEPT is a measurement: this FFmpeg build still records what it says (DNxHR's matrix is read
    back as BT.709 whatever was written: the table leaves it out, and DECODER_READS names it)."""
    from psr2video.video.writer import colour_kept

    assert _read_back_tags(tmp_path, codec, fmt, ext) == set(colour_kept(codec, fmt))

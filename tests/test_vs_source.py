"""The PyAV VapourSynth source (psr2video.vs.source): frame numbering, elementary streams, formats, timing, props;
and the small VapourSynth wording/installer fixes that went with it. Clips are made here, small and fast."""

from __future__ import annotations

import random
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner

vs = pytest.importorskip("vapoursynth", reason="vapoursynth is not installed (pip install 'psr2video[vapoursynth]')")

from psr2video.vs.source import SourceError, open_clip  # noqa: E402


@pytest.fixture(scope="module")
def core():
    c = vs.core
    c.num_threads = 2
    return c


def _pictures(n: int, w: int, h: int, pix: str = "yuv420p"):
    """Distinct frames: a moving gradient, a level per frame and a bright line that walks down."""
    for i in range(n):
        rgb = np.zeros((h, w, 3), np.uint8)
        rgb[..., 0] = (np.arange(w) * 7 + i * 11) % 256
        rgb[..., 1] = (i * 37) % 256
        rgb[(i * 3) % h, :, :] = 255
        yield av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix)


def _encode(path: Path, codec: str, n: int, w: int = 32, h: int = 24, options: dict | None = None,
            fmt: str | None = None, pix: str = "yuv420p", pts_is_dts: bool = False,
            junk: dict[int, bytes] | None = None) -> Path:
    """``pts_is_dts``: every packet's pts set to its dts (an MP4 muxed without composition offsets); ``junk``:
    packets (by position, ``len`` for one more at the end) replaced by these bytes."""
    junk = junk or {}
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = w, h, pix
        s.options = options or {}
        packets = []
        for i, fr in enumerate(_pictures(n, w, h, pix)):
            fr.pts = i
            packets += s.encode(fr)
        packets += s.encode()
        times = [(p.pts, p.dts) for p in packets]  # (muxing rescales packets in place)
        times.append((times[-1][1] + times[1][1] - times[0][1],) * 2)
        d0, tb = times[0][1], packets[0].time_base
        for k, (pts, dts) in enumerate(times):
            p = packets[k] if k < len(packets) else None
            if k in junk:
                p = av.Packet(junk[k])
                p.stream = s  # (first: it sets the stream's time base)
                p.pts, p.dts, p.time_base = pts, dts, tb
            elif p is None:
                break
            if pts_is_dts:
                p.dts = dts - d0
                p.pts = p.dts
            c.mux(p)
    return path


def _luma_reference(path: Path) -> list[np.ndarray]:
    """The luma of every frame a decoder gives from the start: frame n of the clip is the n-th (threaded as the
    source's: frames in flight when a packet fails are lost with it)."""
    out = []
    with av.open(str(path)) as c:
        c.streams.video[0].thread_type = "AUTO"
        for pkt in c.demux(video=0):
            try:
                frames = pkt.decode()
            except av.error.InvalidDataError:  # a damaged packet: no frame
                continue
            for fr in frames:
                p = fr.planes[0]
                out.append(np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :p.width].copy())
    return out


X264_B = {"bf": "3", "x264-params": "keyint=10:min-keyint=10:scenecut=0:b-adapt=0:open-gop=1"}


@pytest.mark.parametrize("kind", ["x264-avi", "mpeg4-asp-avi", "decode-order-mp4", "x264-mkv", "mpeg2-ps"])
def test_frames_in_decoder_order_any_request_order(core, tmp_path, kind):
    """B-frame AVIs and an MP4 muxed without composition offsets carry decode-order times: the source placed frames
    by them (box_640x480.mp4 gave frames 0,1,1,1,3,5,5,5...), seeked by pts where AVI seeks by dts, and served the
    last decoded frame for one it never placed; an MPEG-PS demuxer guesses some pts twice. Sequential and random
    access now both give the decoder's frames."""
    path = {"x264-avi": lambda p: _encode(p / "a.avi", "libx264", 90, options=X264_B),
            "mpeg4-asp-avi": lambda p: _encode(p / "b.avi", "mpeg4", 90, options={"bf": "2", "g": "10"}),
            "decode-order-mp4": lambda p: _encode(p / "c.mp4", "libx264", 90, options=X264_B, fmt="mp4",
                                                  pts_is_dts=True),
            "x264-mkv": lambda p: _encode(p / "d.mkv", "libx264", 90, options=X264_B),
            "mpeg2-ps": lambda p: _encode(p / "e.mpg", "mpeg2video", 90, options={"bf": "2", "g": "12"}, fmt="vob"),
            }[kind](tmp_path)
    ref = _luma_reference(path)
    clip = open_clip(path, core)
    assert clip.num_frames == len(ref) == 90
    for n, f in enumerate(clip.frames()):
        np.testing.assert_array_equal(np.asarray(f[0]), ref[n], err_msg=f"sequential frame {n}")
    clip = open_clip(path, core)
    order = list(range(90))
    random.Random(1).shuffle(order)
    for n in order + [89, 60, 30, 0]:
        np.testing.assert_array_equal(np.asarray(clip.get_frame(n)[0]), ref[n], err_msg=f"frame {n}")


MPEG2_PS = {"closed-gop-mpg": ("mpeg", {"g": "12", "bf": "2", "flags": "+cgop", "sc_threshold": "1000000000"}),
            "open-gop-mpg": ("mpeg", {"g": "12", "bf": "3", "sc_threshold": "1000000000"}),
            "open-gop-dense-keys-mpg": ("mpeg", {"g": "12", "bf": "2"}),
            "closed-gop-vob": ("vob", {"g": "9", "bf": "2", "flags": "+cgop", "sc_threshold": "1000000000"})}


@pytest.mark.parametrize("kind", list(MPEG2_PS))
def test_mpeg_ps_seeks_give_the_frames_asked_for(core, tmp_path, kind):
    """An MPEG-PS (.mpg/.vob) demuxer can land a seek inside a frame: it gives a partial packet, then stamps the
    packets after it with their neighbours' times, so the frames decoded there were numbered, cached and served as
    their neighbours (14-19 of 120 wrong in reverse order, some "cannot be decoded"). A seek is now followed only
    where the packets read are the index's (else it seeks further back), so any order gives the sequential frames."""
    from psr2video.vs.source import PyAVIndex

    fmt, options = MPEG2_PS[kind]
    path = _encode(tmp_path / f"ps.{'vob' if fmt == 'vob' else 'mpg'}", "mpeg2video", 120, options=options, fmt=fmt)
    assert PyAVIndex(path).seekable  # (else it is read from the start: no seek to check)
    ref = _luma_reference(path)
    assert len(ref) == 120
    for order in (list(range(119, -1, -1)), random.Random(3).sample(range(120), 120)):
        clip = open_clip(path, core)
        assert clip.num_frames == 120
        for n in order:
            np.testing.assert_array_equal(np.asarray(clip.get_frame(n)[0]), ref[n], err_msg=f"frame {n}")


def test_packets_that_stop_being_the_index_s_are_read_from_the_start(tmp_path):
    """Where the packets read after a seek stop being the index's (a demuxer that stamps them differently after a
    seek than from the start), the frames after are not numbered by those stamps: that frame is read from the start."""
    from psr2video.vs.source import PyAVDecoder, PyAVIndex

    path = _encode(tmp_path / "k.mkv", "libx264", 40, options=X264_B)
    ref = _luma_reference(path)
    idx = PyAVIndex(path)
    dec = PyAVDecoder(path, idx)
    k = idx.keys[2][0]
    idx.packets[k + 3] = (-1, 1, False)  # as if the demuxer read that packet otherwise from the start
    starts = []
    real = dec.container_at
    dec.container_at = lambda key: starts.append(key) or real(key)
    planes, _ = dec.get(k + 6)
    np.testing.assert_array_equal(planes[0], ref[k + 6])
    assert starts[-1] is None and idx.keys[2] in starts  # (the seek to its keyframe, then the start)


def test_a_cut_tail_is_not_served_as_other_frames(core, tmp_path):
    """A last packet that gives no frame (box_640x480.mp4's) was a frame of the clip showing the one before it; the
    clip now ends where the decoder does."""
    path = _encode(tmp_path / "t.mp4", "libx264", 30, options=X264_B, fmt="mp4", pts_is_dts=True,
                   junk={30: b"\x00\x00\x00\x02\x09\xf0"})  # an access unit delimiter only
    ref = _luma_reference(path)
    clip = open_clip(path, core)
    assert len(ref) == clip.num_frames == 30
    for n in (29, 0, 28):
        np.testing.assert_array_equal(np.asarray(clip.get_frame(n)[0]), ref[n])


@pytest.mark.parametrize("codec, ext, options", [("libx264", "mkv", X264_B),
                                                  ("mpeg2video", "ts", {"bf": "2", "g": "10"})])
def test_a_recording_cut_mid_gop(core, tmp_path, codec, ext, options):
    """A stream cut inside a group of pictures (a broadcast capture) starts with frames the decoder can't give (they
    lack their references): they counted as the clip's first frames, so every frame came late and some never."""
    whole = _encode(tmp_path / f"whole.{ext}", codec, 60, options=options)
    path = tmp_path / f"cut.{ext}"
    with av.open(str(whole)) as c, av.open(str(path), "w") as out:
        s = out.add_stream_from_template(c.streams.video[0])
        for k, p in enumerate(p for p in c.demux(video=0) if p.size):
            if k >= 7:
                p.stream = s
                out.mux(p)
    ref = _luma_reference(path)
    clip = open_clip(path, core)
    assert clip.num_frames == len(ref)
    order = list(range(len(ref)))
    random.Random(2).shuffle(order)
    for n in [0, *order]:
        np.testing.assert_array_equal(np.asarray(clip.get_frame(n)[0]), ref[n], err_msg=f"frame {n}")


@pytest.mark.parametrize("codec, ext", [("libx264", "h264"), ("libx265", "hevc")])
def test_elementary_streams_read(core, tmp_path, codec, ext):
    """Raw .h264/.hevc (no timestamps) could not be read at all: the first read seeked to 0, which those demuxers
    refuse. They are read from the start (reopened to go back), frames in decoder order."""
    opts = {"bf": "2"} if codec == "libx264" else {"x265-params": "bframes=2:log-level=error"}
    path = _encode(tmp_path / f"raw.{ext}", codec, 20, options=opts, fmt=ext)
    ref = _luma_reference(path)
    clip = open_clip(path, core)
    assert clip.num_frames == len(ref) == 20
    for n in (0, 19, 1, 7, 6, 19, 0):
        np.testing.assert_array_equal(np.asarray(clip.get_frame(n)[0]), ref[n])


@pytest.mark.parametrize("pix, expected", [("yuv420p", vs.YUV444P8), ("yuv422p", vs.YUV444P8),
                                           ("yuv420p10le", vs.YUV444P10)])
def test_odd_sized_subsampled_video_is_444(core, tmp_path, pix, expected):
    """A 33x17 4:2:0/4:2:2 video failed with "BlankClip: invalid width" (VapourSynth can't subsample odd sizes):
    it becomes 4:4:4 of its depth, its luma untouched."""
    path = _encode(tmp_path / "odd.mkv", "ffv1", 3, w=33, h=17, pix=pix)
    clip = open_clip(path, core)
    assert (clip.format.id, clip.width, clip.height, clip.num_frames) == (expected, 33, 17, 3)
    with av.open(str(path)) as c:
        first = next(c.decode(video=0))
    dtype = np.uint16 if first.format.components[0].bits > 8 else np.uint8
    p = first.planes[0]
    luma = np.frombuffer(p, dtype).reshape(p.height, -1)[:, :p.width]
    np.testing.assert_array_equal(np.asarray(clip.get_frame(0)[0]), luma)


@pytest.mark.parametrize("pix, expected, plane", [("gray10le", vs.GRAY10, 0), ("gray16le", vs.GRAY16, 0),
                                                  ("yuv420p16le", vs.YUV420P16, 0),
                                                  ("yuv422p12le", vs.YUV422P12, 0), ("gbrp16le", vs.RGB48, 1),
                                                  ("gray", vs.GRAY8, 0), ("yuva420p", vs.YUV420P8, 0)])
def test_formats_keep_their_depth(core, tmp_path, pix, expected, plane):
    """Formats outside a short table became 8-bit RGB24 (a 16-bit grey source lost its low byte); each now keeps its
    family, depth and subsampling (alpha dropped). ``plane``: the VS plane of the source's first (G of gbrp)."""
    path = tmp_path / "deep.mkv"
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 40, 8, pix
        for i in range(2):
            fr = av.VideoFrame(40, 8, pix)
            for k, p in enumerate(fr.planes):
                dt = np.uint16 if fr.format.components[0].bits > 8 else np.uint8
                a = np.frombuffer(p, dt).reshape(p.height, -1)
                a[:] = (np.arange(a.shape[1]) * 997 + k * 50 + i) % (1 << fr.format.components[0].bits)
            fr.pts = i
            for pkt in s.encode(fr):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    with av.open(str(path)) as c:
        first = next(c.decode(video=0))
    bits = first.format.components[0].bits
    p = first.planes[0]
    src = np.frombuffer(p, np.uint16 if bits > 8 else np.uint8).reshape(p.height, -1)[:, :p.width]
    clip = open_clip(path, core)
    assert clip.format.id == expected
    np.testing.assert_array_equal(np.asarray(clip.get_frame(0)[plane]), src)


def test_variable_frame_rate_durations(core, tmp_path):
    """Every frame said 1/fps: each now lasts to the next frame's time (the last: the stream's rate)."""
    path = tmp_path / "vfr.mkv"
    times = [0, 40, 120, 160, 240, 280]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 32, 24, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        for t, fr in zip(times, _pictures(len(times), 32, 24), strict=True):
            fr.pts, fr.time_base = t, Fraction(1, 1000)
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    clip = open_clip(path, core)
    got = [Fraction(f.props["_DurationNum"], f.props["_DurationDen"]) for f in clip.frames()]
    want = [Fraction(b - a, 1000) for a, b in zip(times, times[1:], strict=False)]
    assert got[:-1] == want and got[-1] == 1 / Fraction(clip.fps_num, clip.fps_den)


def test_field_order_and_chroma_location(core, tmp_path):
    """_FieldBased and _ChromaLocation were never set: an interlaced top-field-first H.264 with top-left chroma."""
    path = _encode(tmp_path / "i.mkv", "libx264", 3, options={"x264-params": "interlaced=1:tff=1:chromaloc=2"})
    props = open_clip(path, core).get_frame(0).props
    assert props["_FieldBased"] == 2 and props["_ChromaLocation"] == 2
    props = open_clip(_encode(tmp_path / "p.mkv", "libx264", 3), core).get_frame(0).props
    assert props["_FieldBased"] == 0


def test_a_missing_frame_is_an_error_not_another_frame(core, tmp_path):
    """A frame the decoder never gives (a damaged packet mid-stream) is an error naming it, not a neighbour."""
    path = _encode(tmp_path / "bad.mkv", "rawvideo", 6, junk={3: bytes(16)})  # (rawvideo: no frame threads)
    ref = _luma_reference(path)
    assert len(ref) == 5  # the damaged packet gives no frame
    clip = open_clip(path, core)
    np.testing.assert_array_equal(np.asarray(clip.get_frame(4)[0]), ref[3])  # the frame of time 4
    with pytest.raises(vs.Error, match="frame 3 cannot be decoded"):
        clip.get_frame(3)


def test_open_errors_are_source_errors(tmp_path):
    (tmp_path / "x.mkv").write_bytes(b"not a video")
    with pytest.raises(SourceError):
        open_clip(tmp_path / "x.mkv")
    with pytest.raises(SourceError):
        open_clip(tmp_path / "none.mkv")


def test_fixed_size_tile_hint_in_script_words() -> None:
    """A fixed-size ONNX too small for the clip said "run it tiled with tile=16 (tile=... in Python/VapourSynth;
    tiles plus 0 px ...)" in a script."""
    from psr2video.vs.filter import script_words

    msg = ("x2_fixed16 only takes inputs up to 16x16, not 24x20: run it tiled with --tile 16 (tile=... in "
           "Python/VapourSynth; tiles plus 0 px of context are padded to 16x16)")
    assert script_words(msg) == ("x2_fixed16 only takes inputs up to 16x16, not 24x20: run it tiled with tile=16 "
                                 "(tiles plus 0 px of context are padded to 16x16)")


def test_uninstall_twice_and_info_finds_a_plugin_dir(tmp_path, monkeypatch):
    """`vs install --uninstall` said "removed" when there was nothing to remove; `info` looked for the plugin in
    site-packages only, not where `vs install --plugin-dir` puts it (VAPOURSYNTH_EXTRA_PLUGIN_PATH)."""
    from psr2video.cli import cli
    from psr2video.commands.info import _plugin_state
    from psr2video.vs import install as inst

    (tmp_path / inst.LIB_NAME).write_bytes(b"\x7fELF")
    monkeypatch.setattr(inst, "installed_path",
                        lambda plugin_dir=None: (plugin_dir or tmp_path / "site") / inst.LIB_NAME)
    monkeypatch.setenv("VAPOURSYNTH_EXTRA_PLUGIN_PATH", str(tmp_path))
    assert str(tmp_path / inst.LIB_NAME) in _plugin_state() and "not installed" not in _plugin_state()
    said = [CliRunner().invoke(cli, ["vs", "install", "--plugin-dir", str(tmp_path), "--uninstall"]).output
            for _ in range(2)]
    assert said[0].startswith("removed") and "nothing to remove" in said[1], said
    assert _plugin_state().startswith("not installed")

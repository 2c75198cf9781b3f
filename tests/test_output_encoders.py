"""The output side as an encoder uses it: FFmpeg's encoder names, encoders other than x264/x265/SVT-AV1 (ProRes,
MPEG-2, rawvideo into Y4M), what they take, AVI's timing and MOV's languages; and the folder and eval refusals a
README walk-through found. Real files through the real CLI."""

from __future__ import annotations

import os
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_image_upscale import one_line_error  # noqa: E402
from test_image_upscale import run as cli  # noqa: E402
from test_video import make_clip, raw_h264  # noqa: E402
from test_video_input import (  # noqa: E402
    _clip_with_tone,
    _loud_onset,
    error_line,
    hdr_clip,  # noqa: F401 - a fixture
    hdr_side_data,
    run,
)

from psr2video.video import color as C  # noqa: E402


def test_ffmpegs_plain_codec_names_are_its_encoders(hdr_clip: Path, tmp_path: Path) -> None:  # noqa: F811
    """`--codec hevc` (or h264, av1) is what ffmpeg runs as libx265: the CRF range, the defaults and HDR10 keyed
    by encoder saw "hevc" as some other encoder (HDR10 metadata "can't be given to hevc" and dropped, --crf 99
    clamped by x264 without a word)."""
    code, err = run(str(hdr_clip), str(tmp_path / "o.mkv"), "--variant", "mks", "--codec", "hevc")
    assert code == 0, err
    assert "can't be given" not in err and "encoded 0 frames" not in err, err
    with av.open(str(tmp_path / "o.mkv")) as c:
        assert c.streams.video[0].codec_context.name == "hevc"
    (md, cll), (md2, cll2) = hdr_side_data(hdr_clip), hdr_side_data(tmp_path / "o.mkv")
    assert md and cll2 == cll and md2 == pytest.approx(md, rel=2e-3, abs=2e-4)
    clip = make_clip(tmp_path / "in.mkv")
    code, err = run(str(clip), str(tmp_path / "o2.mkv"), "--variant", "mks", "--codec", "h264", "--crf", "99")
    assert code == 1 and "libx264 refused --crf 99" in error_line(err), err


@pytest.mark.parametrize("codec", ["aac", "srt"])
def test_a_codec_that_is_not_a_video_encoder_is_one_line(tmp_path: Path, codec: str) -> None:
    clip = make_clip(tmp_path / "in.mkv")
    code, err = run(str(clip), str(tmp_path / "o.mkv"), "--variant", "mks", "--codec", codec)
    assert code == 1 and "give a video one" in error_line(err), err
    assert not (tmp_path / "o.mkv").exists()


def test_prores_into_mov(tmp_path: Path) -> None:
    """ProRes (4:2:2 10-bit only) was refused before the run: the encoder and the container were probed at
    yuv420p, which it can't take ("refused its settings", then "mov can't hold prores")."""
    clip = make_clip(tmp_path / "in.mkv")
    code, err = run(str(clip), str(tmp_path / "o.mov"), "--variant", "mks", "--codec", "prores_ks")
    assert code == 0, err
    with av.open(str(tmp_path / "o.mov")) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "prores" and s.format.name == "yuv422p10le"
        assert sum(1 for _ in c.decode(s)) == 10


@pytest.mark.parametrize(("codec", "args", "words"), [
    ("mjpeg", (), "mjpeg stores JPEG's own colours"),
    ("mpeg4", ("--crf", "3"), "mpeg4 takes no --crf"),
    ("prores_ks", ("--preset", "slow"), "prores_ks takes no --preset"),
])
def test_settings_an_encoder_would_ignore_are_refused(tmp_path: Path, codec: str, args: tuple[str, ...],
                                                      words: str) -> None:
    """mpeg4 with --crf 2 and --crf 30 gave files of the same size: refused, as for libvpx-vp9's --preset."""
    clip = make_clip(tmp_path / "in.mkv")
    code, err = run(str(clip), str(tmp_path / "o.mkv"), "--variant", "mks", "--codec", codec, *args)
    assert code == 1 and words in error_line(err), err


@pytest.mark.parametrize("ext", [".mpg", ".mkv"])
def test_mpeg2_video_from_a_millisecond_time_base(tmp_path: Path, ext: str) -> None:
    """MPEG-2 video opens only at one frame per tick: from a Matroska source (1 ms) it failed after the model
    loaded ("can't start with these settings"); its frames are now numbered at the frame rate, as AVI's."""
    clip = make_clip(tmp_path / "in.mkv", pts=[i * 40 for i in range(10)])
    out = tmp_path / f"o{ext}"
    code, err = run(str(clip), str(out), "--variant", "mks", "--codec", "mpeg2video")
    assert code == 0, err
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        times = [float(f.time) for f in c.decode(s)]
    # (MPEG-PS starts its clock half a second in, as ffmpeg's muxer does)
    assert s.codec_context.name == "mpeg2video" and [round(t - times[0], 3) for t in times] == [
        round(0.04 * i, 3) for i in range(10)]


def test_y4m_has_the_frame_rate_and_picks_rawvideo(tmp_path: Path) -> None:
    """`out.y4m` asked for libx264, which Y4M can't hold, naming no way out; to stdout its header said F1000:1
    (the tick of a Matroska source), so a 25 fps clip piped into x264 played 40 times too fast. 10-bit Y4M,
    which x264/x265 read, needs FFmpeg's "unofficial" flag."""
    clip = make_clip(tmp_path / "in.mkv", pts=[i * 40 for i in range(10)])
    out = tmp_path / "o.y4m"
    code, err = run(str(clip), str(out), "--variant", "mks")
    assert code == 0 and "encoding with rawvideo" in err, err
    assert out.read_bytes().startswith(b"YUV4MPEG2 W96 H64 F25:1 ")
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 10
    deep = make_clip(tmp_path / "deep.mkv", codec="ffv1", pix_fmt="yuv420p10le", space=C.SPACE_SMPTE170M,
                     pts=[i * 40 for i in range(10)])
    code, err = run(str(deep), str(tmp_path / "d.y4m"), "--variant", "mks")
    assert code == 0 and "Y4M holds no colour matrix" in err, err
    assert (tmp_path / "d.y4m").read_bytes().startswith(b"YUV4MPEG2 W96 H64 F25:1 Ip A0:0 C420p10 ")


def _opus_late(path: Path, start: float) -> Path:
    """Video from 0 and an Opus track (which AVI can't hold) whose 440 Hz tone starts ``start`` s in."""
    return _clip_with_tone(path, "libopus", 48000, start)


def test_avi_keeps_a_late_sound_in_time(tmp_path: Path) -> None:
    """AVI's audio has no start time: a track that starts 0.5 s after the video played 0.5 s early, without a
    word. Re-encoded audio now gets the silence in front; copied audio (no re-encoding) is said."""
    src = _opus_late(tmp_path / "late.mkv", 0.5)
    code, err = run(str(src), str(tmp_path / "o.avi"), "--variant", "mks")
    assert code == 0 and "re-encoded" in err, err
    assert abs(_loud_onset(tmp_path / "o.avi") - _loud_onset(src)) < 0.03, err
    aac = _clip_with_tone(tmp_path / "aac.mkv", "aac", 48000, 0.5)
    code, err = run(str(aac), str(tmp_path / "a.avi"), "--variant", "mks")
    assert code == 0 and "audio stream #1 starts 0.4" in err and "which AVI can't hold" in err, err  # (AAC primes)


def test_a_hole_in_copied_audio_stays_where_the_container_times_by_samples(tmp_path: Path) -> None:
    """AVI (any audio) and MOV/MP4 (PCM) time a copied track by its samples: a 0.5 s hole closed up, and the
    sound after it played 0.5 s early, without a word. PCM gets its silence back (a late start in AVI too);
    other audio in AVI is said."""
    src = _clip_with_tone(tmp_path / "gap.mkv", "pcm_s16le", 48000, 0.0, gap=0.5)
    for ext in ("mov", "mp4", "avi"):
        code, err = run(str(src), str(tmp_path / f"o.{ext}"), "--variant", "mks")
        assert code == 0 and "1 gap(s) in the sound were filled with silence" in err, err
        assert abs(_loud_onset(tmp_path / f"o.{ext}") - _loud_onset(src)) < 0.03, ext
    late = _clip_with_tone(tmp_path / "late.mkv", "pcm_s16le", 48000, 0.5)
    code, err = run(str(late), str(tmp_path / "late.avi"), "--variant", "mks")
    assert code == 0 and "filled with silence" in err and "it plays" not in err, err
    assert abs(_loud_onset(tmp_path / "late.avi") - _loud_onset(late)) < 0.03
    broken = _clip_with_tone(tmp_path / "broken.mkv", "pcm_s16le", 48000, 0.0, gap=61)  # a broken timestamp
    code, err = run(str(broken), str(tmp_path / "broken.mov"), "--variant", "mks")
    assert code == 0 and "has 1 gap(s) in its sound (the first: 61.0" in err, err  # said, not 61 s of silence
    assert (tmp_path / "broken.mov").stat().st_size < 2_000_000
    aac = _clip_with_tone(tmp_path / "aac.mkv", "aac", 48000, 0.0, gap=0.5)
    code, err = run(str(aac), str(tmp_path / "a.avi"), "--variant", "mks")
    assert code == 0 and "audio stream #1 has 1 gap(s) in its sound (the first: 0.49 s at 0.49 s)" in err, err
    assert "which avi can't hold in a copied track (it times audio by its samples)" in err, err


@pytest.mark.parametrize(("layout", "loud"), [("2.1", [0, 1, 3]), ("5.0(side)", [0, 1, 2, 4, 5])])
def test_a_layout_opus_cant_open_is_remixed_not_dropped(tmp_path: Path, layout: str, loud: list[int]) -> None:
    """libopus opens none of 2.1, 4.0 and DVD's 5.0(side): such AC-3 tracks were dropped from a .webm. They are
    remixed into 5.1, said, every channel's sound where 5.1 has it (LFE to LFE, sides to backs)."""
    src = _clip_with_tone(tmp_path / "in.mkv", "ac3", 48000, 0.0, layout=layout)
    code, err = run(str(src), str(tmp_path / "o.webm"), "--variant", "mks")
    assert code == 0 and "re-encoded as libopus" in err and f"5.1 (was {layout})" in err, err
    with av.open(str(tmp_path / "o.webm")) as c:
        s = c.streams.audio[0]
        x = np.concatenate([f.to_ndarray() for f in c.decode(s)], axis=1)
    assert s.layout.name == "5.1"
    assert [i for i, ch in enumerate(x) if np.sqrt(np.mean(ch.astype(float) ** 2)) > 0.05] == loud


def test_a_joined_avi_keeps_the_frames_ticks_beside_primed_aac(tmp_path: Path) -> None:
    """AAC's priming starts the sound 21 ms before the picture: FFmpeg's shift of every stream by it put the
    joined AVI's frames a tick late after the first (an empty chunk at tick 1; the picture a frame behind the
    sound); the single-process run kept them, the join (a Writer with a video template) did not. Now alike."""
    from test_scaleout import scaleout_without_ray

    src = tmp_path / "aac.mkv"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=24)
        v.width, v.height, v.pix_fmt = 32, 24, "yuv420p"
        v.options = {"preset": "veryfast", "x264-params": "keyint=12:min-keyint=12:scenecut=0:bframes=2"}
        a = out.add_stream("aac", rate=48000)
        a.layout = "stereo"
        for i in range(36):
            f = av.VideoFrame.from_ndarray(np.full((24, 32, 3), i * 7 % 256, np.uint8), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, 24)
            out.mux(v.encode(f))
        for k in range(72):
            af = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
            af.sample_rate, af.pts = 48000, k * 1024
            out.mux(a.encode(af))
        out.mux(v.encode(None))
        out.mux(a.encode(None))
    with av.open(str(src)) as c:
        assert next(p.pts for p in c.demux(audio=0)) < 0  # the priming
    multi, single = tmp_path / "multi.avi", tmp_path / "single.avi"
    scaleout_without_ray(src, multi, "ffv1")
    code, err = run(str(src), str(single), "--variant", "mks", "--codec", "ffv1")
    assert code == 0, err
    ticks = []
    for f in (multi, single):
        with av.open(str(f)) as c:
            ticks.append([(p.pts, p.dts) for p in c.demux(c.streams.video[0]) if p.size])
    assert ticks[0] == ticks[1] and ticks[1][:2] == [(0, 0), (1, 1)]


def test_flac_into_avi_is_re_encoded_as_pcm(tmp_path: Path) -> None:
    """AVI's muxer takes FLAC and writes it so that it reads back mistimed (96 kHz 5.1: 2 s of sound timed 0 to
    0.26 s), in silence. Re-encoded instead, losslessly, into PCM (AVI takes neither FLAC nor ALAC in time)."""
    src = _clip_with_tone(tmp_path / "flac.mkv", "flac", 96000, 0.0, layout="5.1")
    code, err = run(str(src), str(tmp_path / "o.avi"), "--variant", "mks")
    assert code == 0 and "audio stream #1 (flac) can't be carried in avi as it is: re-encoded as pcm_s16le" in err
    with av.open(str(tmp_path / "o.avi")) as c:
        frames = list(c.decode(audio=0))
    end = float(frames[-1].pts * frames[-1].time_base) + frames[-1].samples / 96000
    assert abs(end - sum(f.samples for f in frames) / 96000) < 0.01 and end > 0.9, end


def _vfr_pts() -> list[int]:
    gaps = [40, 80, 120, 40, 40, 80, 40, 120, 80, 40] * 3
    return [int(x) for x in np.cumsum([0, *gaps])]


def _chunk_ticks(path: Path) -> list[int]:
    with av.open(str(path)) as c:
        return sorted(p.dts for p in c.demux(c.streams.video[0]) if p.size)


def test_vfr_into_avi_with_b_frames_keeps_the_frames_times(tmp_path: Path) -> None:
    """AVI times a chunk by its place (its dts): libx264's dts are its pts shifted by the reorder delay in
    frames, which from a variable-rate source are other ticks than the frames' own (63 of 68 frames of the
    shared tree clip landed up to 0.4 s late). The ticks are now the frames' own, as with FFV1 (no B-frames)."""
    src = make_clip(tmp_path / "vfr.mkv", pts=_vfr_pts())
    for codec in ("libx264", "ffv1"):
        code, err = run(str(src), str(tmp_path / f"{codec}.avi"), "--variant", "mks", "--codec", codec)
        assert code == 0, err
    assert _chunk_ticks(tmp_path / "libx264.avi") == _chunk_ticks(tmp_path / "ffv1.avi")


def _retagged(src: Path, dst: Path, edit: Any) -> Path:
    """``src``'s packets remuxed into ``dst``, ``edit(out, streams)`` first (streams by input index): the tags and
    dispositions a test gives its input."""
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        streams = {s.index: o.add_stream_from_template(s) for s in i.streams}
        edit(o, streams)
        for p in i.demux():
            if p.dts is not None:
                p.stream = streams[p.stream.index]
                o.mux(p)
    return dst


def test_mov_keeps_matroskas_language_codes(tmp_path: Path) -> None:
    """mkvmerge writes ISO 639-2/B codes (fre, cze); MOV's table knows those languages by their other code
    (fra, ces), and the track lost its language ("can't be held in mov")."""
    src = tmp_path / "in.mkv"
    make_clip(src, audio=("aac", "aac"), subtitle=False)
    _retagged(src, tmp_path / "lang.mkv", lambda o, streams: [streams[k].metadata.update(language=lang)
                                                              for k, lang in enumerate(("eng", "fre", "cze"))])
    code, err = run(str(tmp_path / "lang.mkv"), str(tmp_path / "o.mov"), "--variant", "mks")
    assert code == 0 and "can't be held in mov" not in err, err
    with av.open(str(tmp_path / "o.mov")) as c:
        assert [s.metadata.get("language") for s in c.streams.audio] == ["fra", "ces"]


def test_the_upscaled_videos_lost_language_and_title_are_named(tmp_path: Path) -> None:
    """The copied streams' lost languages and titles were named, the upscaled video's not: its Klingon
    language left a .mov, and its language and title a .ts, without a word."""
    src = tmp_path / "in.mkv"
    make_clip(src, audio=(), subtitle=False)
    _retagged(src, tmp_path / "tagged.mkv",
              lambda o, streams: streams[0].metadata.update({"language": "tlh", "title": "Main feature"}))
    want = {"mov": "its language 'tlh' can't", "ts": "its language 'tlh', title 'Main feature' can't", "mkv": None}
    for ext, note in want.items():
        code, err = run(str(tmp_path / "tagged.mkv"), str(tmp_path / f"o.{ext}"), "--variant", "mks")
        assert code == 0, err
        if note is None:
            assert "can't be held" not in err, err
        else:
            assert f"note: video stream #0: {note} be held in" in err, err


def test_the_upscaled_video_keeps_its_dispositions(tmp_path: Path) -> None:
    """The upscaled video's own dispositions were dropped, .mkv to .mkv too (default|original came out 0); now
    carried, and what a container can't hold named (not "default": the one video there is)."""
    src = tmp_path / "in.mkv"
    make_clip(src, audio=(), subtitle=False)
    d = av.stream.Disposition
    _retagged(src, tmp_path / "flagged.mkv", lambda o, streams: setattr(streams[0], "disposition",
                                                                         d.default | d.original))
    code, err = run(str(tmp_path / "flagged.mkv"), str(tmp_path / "o.mkv"), "--variant", "mks")
    assert code == 0 and "can't be held" not in err, err
    with av.open(str(tmp_path / "o.mkv")) as c:
        assert c.streams.video[0].disposition == d.default | d.original
    code, err = run(str(tmp_path / "flagged.mkv"), str(tmp_path / "o.mp4"), "--variant", "mks")
    assert code == 0 and "note: video stream #0: its original flag can't be held in mp4" in err, err
    assert "default flag" not in err, err


def test_low_rate_mp3_into_mp4_is_re_encoded(tmp_path: Path) -> None:
    """MP3 at 11025 Hz (an old FLV's or AVI's) stopped an .mp4 run at its header ("muxing mp3 at 11025hz is not
    standard"), after the model loaded; it is re-encoded to AAC, said, as MOV's refusals are."""
    src = tmp_path / "in.mkv"
    make_clip(src, audio=(), subtitle=False)
    with av.open(str(src)) as i, av.open(str(tmp_path / "mp3.mkv"), "w") as o:
        v = o.add_stream_from_template(i.streams.video[0])
        a = o.add_stream("libmp3lame", rate=11025)
        a.layout = "mono"
        for p in i.demux():
            if p.dts is not None:
                p.stream = v
                o.mux(p)
        for k in range(10):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1152), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 11025, k * 1152
            o.mux(a.encode(f))
        o.mux(a.encode(None))
    code, err = run(str(tmp_path / "mp3.mkv"), str(tmp_path / "o.mp4"), "--variant", "mks")
    assert code == 0 and "note: audio stream #1 (mp3) can't be carried in mp4 as it is: re-encoded as aac" in err, err
    with av.open(str(tmp_path / "o.mp4")) as c:
        assert c.streams.audio[0].codec_context.name == "aac"


def test_tags_a_container_cant_hold_are_named(tmp_path: Path) -> None:
    """MP4/MOV/AVI have no place for some tags (a film's DIRECTOR, LICENSE; an audio track's COMMENT): they were
    lost without a word. Now named; Matroska keeps them all, and nothing is said."""
    src = tmp_path / "in.mkv"
    make_clip(src, subtitle=False)
    def edit(o: Any, streams: dict[int, Any]) -> None:
        streams[1].metadata.update({"COMMENT": "remastered 2019"})
        o.metadata.update({"title": "My Film", "DIRECTOR": "Jane Doe", "GENRE": "Drama"})

    _retagged(src, tmp_path / "tags.mkv", edit)
    code, err = run(str(tmp_path / "tags.mkv"), str(tmp_path / "o.mp4"), "--variant", "mks")
    assert code == 0, err
    assert "note: the input's container tag(s) DIRECTOR: FFmpeg's mp4 muxer writes no atom for them; lost" in err, err
    assert "note: audio stream #1: its tag(s) COMMENT can't be held in mp4" in err, err
    code, err = run(str(tmp_path / "tags.mkv"), str(tmp_path / "o.mkv"), "--variant", "mks")
    assert code == 0 and "can't be held" not in err, err


def test_a_subtitle_mp4_makes_default_is_named(tmp_path: Path) -> None:
    """FFmpeg's MOV/MP4 muxer enables the first subtitle track when none is default (Apple players show it): a
    track that was off came out on, without a word. It can't be helped there; it is said."""
    src = make_clip(tmp_path / "in.mkv")
    with av.open(str(src)) as c:
        assert not c.streams.subtitles[0].disposition & av.stream.Disposition.default
    code, err = run(str(src), str(tmp_path / "o.mp4"), "--variant", "mks")
    assert code == 0 and "subtitle stream #2 is not a default track, but mp4 marks it default" in err, err
    code, err = run(str(src), str(tmp_path / "o.mkv"), "--variant", "mks")
    assert code == 0 and "marks it default" not in err, err


def test_an_mp4_tracks_title_is_carried(tmp_path: Path) -> None:
    """FFmpeg reads an MP4 track's title back as "name" and writes one only from "title": an .mp4's titled video
    and audio tracks lost their titles in an .mp4 or .mov, without a word. Carried now, into .mkv as titles."""
    src = tmp_path / "in.mkv"
    make_clip(src, subtitle=False)
    _retagged(src, tmp_path / "titled.mp4", lambda o, streams: [streams[k].metadata.update(title=t)
                                                                for k, t in enumerate(("Main feature", "Stereo"))])
    for ext, key in (("mp4", "name"), ("mov", "name"), ("mkv", "title")):
        code, err = run(str(tmp_path / "titled.mp4"), str(tmp_path / f"o.{ext}"), "--variant", "mks")
        assert code == 0 and "can't be held" not in err, err
        with av.open(str(tmp_path / f"o.{ext}")) as c:
            assert [s.metadata.get(key) for s in c.streams] == ["Main feature", "Stereo"], ext


def test_a_folder_video_with_a_long_name_does_not_stop_the_others(tmp_path: Path) -> None:
    """After each video the folder run looked for NAME.stopped.EXT of an earlier run: 8 bytes longer than a
    255-byte name, the look raised "file name too long" and ended the run; the files after it were never
    written."""
    root = tmp_path / "in"
    root.mkdir()
    long = "b" * (255 - len(".mkv")) + ".mkv"
    make_clip(root / long, subtitle=False)
    make_clip(root / "z.mkv", subtitle=False)
    code, err = cli("upscale", str(root), str(tmp_path / "out"), "--variant", "mks", "-q")
    assert code == 0 and "done: 2 of 2 videos" in err, err
    assert (tmp_path / "out" / long).exists() and (tmp_path / "out" / "z.mkv").exists()


def test_a_folder_counts_existing_pictures_with_the_videos(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    make_clip(root / "a.mkv", subtitle=False)
    from PIL import Image

    Image.fromarray(np.full((8, 8, 3), 9, np.uint8)).save(root / "p.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.mkv").write_bytes(b"old")
    (out / "p.png").write_bytes(b"old")
    one_line_error(*cli("upscale", str(root), str(out), "--variant", "mks"), "exists (and 1 more)", "-y")
    one_line_error(*cli("upscale", str(root), str(tmp_path / "o2"), "--variant", "mks", "--workers", "2"),
                   "--workers is for one file", "scale-out cuts one video")


def test_eval_stress_without_models_is_refused(tmp_path: Path) -> None:
    """`eval --stress` alone printed the baselines' table, ran no stress suite and exited 0."""
    one_line_error(*cli("eval", "--stress", "--dataset", str(tmp_path)), "--stress tests models", "--shipped")


def test_avi_frames_keep_their_ticks_when_the_sound_starts_before_0(tmp_path: Path) -> None:
    """AAC starts 21 ms before 0 (its priming): FFmpeg's shift of every stream by it put frame 1 on tick 2 of
    the AVI (an empty chunk after the first frame, every later frame a tick late), with FFV1 always and with
    libx264 once its packets were retimed."""
    src = make_clip(tmp_path / "in.mkv", pts=[i * 40 for i in range(10)])  # (AAC audio)
    for codec in ("ffv1", "libx264"):
        out = tmp_path / f"{codec}.avi"
        code, err = run(str(src), str(out), "--variant", "mks", "--codec", codec)
        assert code == 0, err
        with av.open(str(out)) as c:
            chunks = [(p.dts, p.size > 0) for p in c.demux(c.streams.video[0]) if p.dts is not None]
        assert chunks == [(i, True) for i in range(10)], (codec, chunks)


def test_duplicate_times_into_avi_are_left_out_not_drifted(tmp_path: Path) -> None:
    pts = [0, 40, 40, 80, 120, 120, 160, 200, 240, 280]
    src = make_clip(tmp_path / "dup.mkv", pts=pts, codec="ffv1", pix_fmt="yuv420p", audio=())
    code, err = run(str(src), str(tmp_path / "o.avi"), "--variant", "mks", "--codec", "ffv1")
    assert code == 0 and "2 frame(s) of the variable-rate input" in err and "left out" in err, err
    with av.open(str(tmp_path / "o.avi")) as c:
        assert sorted(p.dts for p in c.demux(c.streams.video[0]) if p.size) == [0, 1, 2, 3, 4, 5, 6, 7]


def test_vfr_into_y4m_repeats_frames_across_gaps(tmp_path: Path) -> None:
    """Y4M has no times: a 1 s hold was squeezed out and a 12.5 fps stretch played twice as fast; the frame
    before a gap is now repeated on every tick, as ffmpeg's constant-rate output does (said)."""
    pts = [0, 40, 80, 160, 240, 1240, 1280]  # a 12.5 fps stretch, then a 1 s hold
    src = make_clip(tmp_path / "vfr.mkv", pts=pts, audio=(), subtitle=False)
    code, err = run(str(src), str(tmp_path / "o.y4m"), "--variant", "mks")
    assert code == 0 and "repeated where frames are further apart" in err, err
    with av.open(str(tmp_path / "o.y4m")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 33  # 1.28 s at 25 fps, and the last frame


def test_mpeg2_with_workers_is_refused_before_the_work(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mkv")
    code, err = run(str(src), str(tmp_path / "o.mkv"), "--variant", "mks", "--codec", "mpeg2video", "--workers", "2")
    assert code == 1 and "run it without --workers" in error_line(err), err


def test_avi_keeps_a_sound_that_starts_before_the_picture(tmp_path: Path) -> None:
    """Sound from 0.5 s before the first frame: AVI holds that as the video's delay (FFmpeg's shift of every
    stream); with the shift off (for AAC's 21 ms of priming) the sound played 0.5 s late."""
    src = tmp_path / "lead.mkv"
    with av.open(str(src), "w", options={"avoid_negative_ts": "disabled"}) as out:  # (kept before 0)
        v = out.add_stream("ffv1", rate=25)
        v.width, v.height, v.pix_fmt = 32, 24, "yuv420p"
        a = out.add_stream("pcm_s16le", rate=48000)
        a.layout = "mono"
        for k in range(-24000, 48000, 1200):
            af = av.AudioFrame.from_ndarray(np.zeros((1, 1200), np.int16), format="s16", layout="mono")
            af.sample_rate, af.pts, af.time_base = 48000, k, Fraction(1, 48000)
            out.mux(a.encode(af))
        for i in range(25):
            f = av.VideoFrame.from_ndarray(np.full((24, 32, 3), 9 * i, np.uint8), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, 25)
            out.mux(v.encode(f.reformat(format="yuv420p")))
        out.mux(v.encode(None))
    with av.open(str(src)) as c:
        assert c.streams.audio[0].start_time * c.streams.audio[0].time_base < -0.4  # the lead is there
    code, err = run(str(src), str(tmp_path / "o.avi"), "--variant", "mks", "--codec", "ffv1")
    assert code == 0, err
    with av.open(str(tmp_path / "o.avi")) as c:  # the sound plays from the file's start; each frame at its
        s = c.streams.video[0]  # chunk's place (a tick each) in the index; the first can't be moved from 0 (AVI
        second = [p.dts for p in c.demux(s) if p.size][1] / s.average_rate  # pads only between chunks)
    assert abs(second - 0.54) < 0.03, second


def test_a_raw_h264_stream_is_timed_at_its_own_rate(tmp_path: Path) -> None:
    """An elementary stream has no times: its frames were timed at the raw demuxer's default 25 fps, not the 30
    the stream says (20% slow); DV's "average rate" was its 60000 tick (MP4 refused it after the work). A part of
    it is cut on exact times (30 x 1/30 s as floats fell short of 1 s: 31 frames), and an animation made of it
    has its rate."""
    raw = raw_h264(tmp_path / "in.h264", 30, 30, 64, 48, 8)
    code, err = run(str(raw), str(tmp_path / "o.mkv"), "--variant", "mks")
    assert code == 0, err
    with av.open(str(tmp_path / "o.mkv")) as c:
        times = [float(f.time) for f in c.decode(video=0)]
    assert len(times) == 30 and times[-1] == pytest.approx(29 / 30, abs=0.002)
    code, err = run(str(raw), str(tmp_path / "part.mkv"), "--variant", "mks", "--start", "0.5", "--duration", "0.5")
    assert code == 0, err
    with av.open(str(tmp_path / "part.mkv")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 15
    code, err = run(str(raw), str(tmp_path / "a.gif"), "--variant", "mks")
    assert code == 0, err
    from PIL import Image

    with Image.open(tmp_path / "a.gif") as im:
        total = 0
        for i in range(im.n_frames):
            im.seek(i)
            total += im.info["duration"]
    assert im.n_frames == 30 and abs(total - 1000) <= 30


def _dv(path: Path, n: int = 4) -> Path:
    """PAL DV (bottom field first, always; the container says no field order)."""
    with av.open(str(path), "w", format="dv") as out:
        s = out.add_stream("dvvideo", rate=25)
        s.width, s.height, s.pix_fmt = 720, 576, "yuv420p"
        for i in range(n):
            y = np.zeros((576, 720, 3), np.uint8)
            y[1::2, :, :] = 40 * (i + 1)  # the fields differ: which comes first can be told
            y[:, (i * 40) % 700:(i * 40) % 700 + 20] = 255
            f = av.VideoFrame.from_ndarray(y, format="rgb24").reformat(format="yuv420p")
            f.pts, f.time_base = i, Fraction(1, 25)
            out.mux(s.encode(f))
        out.mux(s.encode(None))
    return path


def test_dv_is_bottom_field_first_and_25_fps(tmp_path: Path) -> None:
    src = _dv(tmp_path / "in.dv")
    code, err = run(str(src), str(tmp_path / "o.mp4"), "--variant", "mks")
    assert code == 0 and "interlaced input (bottom field first)" in err, err
    from psr2video.video.reader import top_field_first

    with av.open(str(tmp_path / "o.mp4")) as c:
        s = c.streams.video[0]
        assert s.average_rate == 25 and top_field_first(next(c.decode(s))) is False  # (the frames' own flag)


def test_untagged_grey_is_full_range(tmp_path: Path) -> None:
    """FFmpeg reads untagged grey as full range; read as limited, a 16-bit FFV1 archive lost every code below
    limited-range black, even into FFV1."""
    src = tmp_path / "grey.mkv"
    with av.open(str(src), "w") as out:
        s = out.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 32, 24, "gray16le"
        for i in range(3):
            a = np.tile(np.linspace(0, 65535, 32, dtype=np.uint16), (24, 1))
            f = av.VideoFrame.from_ndarray(a, format="gray16le")
            f.pts, f.time_base = i, Fraction(1, 25)
            out.mux(s.encode(f))
        out.mux(s.encode(None))
    code, err = run(str(src), str(tmp_path / "o.mkv"), "--variant", "mks", "--codec", "ffv1")
    assert code == 0 and "full range" in err, err
    with av.open(str(tmp_path / "o.mkv")) as c:
        a = next(c.decode(video=0)).to_ndarray()
    assert a.min() == 0 and a.max() == 65535


def test_grey_written_where_no_range_is_held_reads_back_the_same(tmp_path: Path) -> None:
    """Grey output is written full range (as untagged grey is read): into AVI, which holds no range tag, its
    limited-range codes were read back as full, washed out."""
    src = make_clip(tmp_path / "in.mkv", pts=[i * 40 for i in range(5)], audio=(), subtitle=False)
    code, err = run(str(src), str(tmp_path / "g.avi"), "--variant", "mks", "--pix-fmt", "gray", "--codec", "ffv1")
    assert code == 0, err
    code, err = run(str(tmp_path / "g.avi"), str(tmp_path / "g2.mkv"), "--variant", "mks", "--codec", "ffv1")
    assert code == 0, err

    def codes(p: Path) -> np.ndarray:  # the stored luma codes, as they are: lowest, highest
        with av.open(str(p)) as c:
            f = next(c.decode(video=0))
            y = np.frombuffer(f.planes[0], np.uint8).reshape(-1, f.planes[0].line_size)[:, :f.width]
            return np.array([y.min(), y.max()], float)

    full = (codes(src) - 16) * 255 / 219  # the source's limited range, stretched
    assert np.abs(codes(tmp_path / "g.avi") - full).max() < 3  # written full range
    assert np.abs(codes(tmp_path / "g2.mkv") - codes(tmp_path / "g.avi")).max() <= 1  # and read back as that


def test_interlaced_into_mpeg2_keeps_its_field_order(tmp_path: Path) -> None:
    """MPEG-2 takes the field order from each frame's flags, which only x264 was given: a DVD's fields were
    written as progressive frames (shown combed)."""
    src = _dv(tmp_path / "in.dv")
    code, err = run(str(src), str(tmp_path / "o.mkv"), "--variant", "mks", "--codec", "mpeg2video")
    assert code == 0, err
    with av.open(str(tmp_path / "o.mkv")) as c:
        f = next(c.decode(video=0))
        assert f.interlaced_frame
    code, err = run(str(src), str(tmp_path / "o.webm"), "--variant", "mks")
    assert code == 0 and "webm can't say the field order" in err, err


def test_vp9_alpha_in_its_container_is_said(tmp_path: Path) -> None:
    """VP9's alpha rides in Matroska side data, which FFmpeg's vp9 decoder skips: it was lost without a word."""
    src = tmp_path / "a.webm"
    with av.open(str(src), "w") as out:
        s = out.add_stream("libvpx-vp9", rate=25)
        s.width, s.height, s.pix_fmt = 32, 24, "yuva420p"
        for i in range(3):
            f = av.VideoFrame.from_ndarray(np.full((24, 32, 4), 100, np.uint8), format="rgba")
            f = f.reformat(format="yuva420p")
            f.pts, f.time_base = i, Fraction(1, 25)
            out.mux(s.encode(f))
        out.mux(s.encode(None))
    code, err = run(str(src), str(tmp_path / "o.mkv"), "--variant", "mks")
    assert code == 0 and "alpha channel (vp9 alpha in its container) is not carried" in err, err
    # an animation keeps it: libvpx's decoder reads it (the animation was opaque)
    code, err = run(str(src), str(tmp_path / "o.webp"), "--variant", "mks")
    assert code == 0, err
    from PIL import Image

    with Image.open(tmp_path / "o.webp") as im:
        assert im.mode == "RGBA" and abs(int(np.asarray(im)[..., 3].mean()) - 100) <= 3


def test_aside_names_keep_their_bytes(tmp_path: Path) -> None:
    from psr2video.commands.folder import _aside

    odd = Path(os.fsdecode(b"caf\xe9.mkv"))
    assert os.fsencode(_aside(odd, "stopped").name) == b"caf\xe9.stopped.mkv"
    long = _aside(Path("é" * 126 + ".mkv"), "damaged")
    assert len(os.fsencode(long.name)) <= 255 and long.name.endswith(".damaged.mkv")


def test_mp4_keeps_the_last_frames_hold_with_b_frames(tmp_path: Path) -> None:
    """MP4/MOV end a track at its last packet in decode order: with B-frames that is not the last frame shown,
    and a GIF's 2 s final hold came out as an MP4 of 1.0 s (the MKV kept 3.0 s)."""
    from PIL import Image

    frames = [Image.new("RGB", (32, 24), (40 * i, 90, 200 - 30 * i)) for i in range(5)]
    frames[0].save(tmp_path / "h.gif", save_all=True, append_images=frames[1:], duration=[100, 200, 300, 400, 2000],
                   loop=0)
    for ext in (".mp4", ".mov"):
        code, err = run(str(tmp_path / "h.gif"), str(tmp_path / f"o{ext}"), "--variant", "mks")
        assert code == 0, err
        with av.open(str(tmp_path / f"o{ext}")) as c:
            s = c.streams.video[0]
            assert float(s.duration * s.time_base) == pytest.approx(3.0, abs=0.02), ext
            assert [round(float(f.time), 3) for f in c.decode(s)] == [0.0, 0.1, 0.3, 0.6, 1.0]

"""Text subtitles converted between forms keep what they say and when: markup removed, never text; WebVTT escaped;
ASS drawings and hard spaces taken as ASS means them; mov_text timed right in a fragmented MP4 (stdout); no cue
written where it can't be timed (NUT).

Inputs are real files made with PyAV; outputs are read back with PyAV."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).parent))
from test_video import pattern  # noqa: E402
from test_video_input import run  # noqa: E402

from psr2video.video.subtitles import ASS_HEADER, CueTimeline, convert_text_sub, pack_sub_text, sub_text  # noqa: E402

TB = Fraction(1, 1000)
ASS = "0,0,Default,,0,0,0,,"  # Matroska's ASS packet: ReadOrder,Layer,Style,Name,MarginL,MarginR,MarginV,Effect,
DRAWING = ASS + "{\\p1}m 0 0 l 100 0 100 100 0 100{\\p0}"


# --- the text of a cue --------------------------------------------------------------------------------------------
def test_ass_text_keeps_angle_brackets_and_drops_drawings() -> None:
    """ASS has no <tags>: 'a < b & c > d' was cut to 'a  d'; a vector drawing was shown as its commands
    ('m 0 0 l 100 0 ...'); \\h (a hard space) was left as the two characters."""
    assert sub_text((ASS + "a < b & c > d\\hend").encode(), "ass") == "a < b & c > d\u00a0end"
    assert sub_text(DRAWING.encode(), "ass") == ""
    assert convert_text_sub(DRAWING.encode(), "ass", "mov_text") is None  # nothing to show: no sample
    assert sub_text((ASS + "{\\an8\\p2}m 0 0 b 1 1 2 2{\\p0}Sign\\Nunder").encode(), "ssa") == "Sign\nunder"
    assert sub_text((ASS + "{\\pos(10,20)\\pbo4}Top").encode(), "ass") == "Top"  # \pos, \pbo: no drawing


def test_srt_and_webvtt_lose_only_their_markup() -> None:
    """SRT: only the tags SRT readers act on (<i> <b> <u> <s> <font>, any case; {\\an8}) go; WebVTT: its tags and
    timestamps go and its character references are read (the text '&lt;' is '<'); plain text is literal."""
    srt = b'Tom & Jerry: a < b > c <I>it</I> <font color="red">red</font> <b>x</b>{\\an8}'
    assert sub_text(srt, "subrip") == "Tom & Jerry: a < b > c it red x"
    vtt = b"<v Bob>&lt;hi&gt;</v> <c.yellow>A &amp; B</c> <00:00:01.000>now&nbsp;!"
    assert sub_text(vtt, "webvtt") == "<hi> A & B now\u00a0!"
    assert sub_text(b"<i>as typed</i>", "text") == "<i>as typed</i>"
    assert sub_text(struct.pack(">H", 12) + b"<i> & --> x", "mov_text") == "<i> & --> x"


def test_webvtt_cue_text_is_escaped() -> None:
    """Into WebVTT '&' '<' '>' are written as references (a reader took '<' as a tag and '&' as one's start), so
    a cue never holds '-->' (a new cue's times), nor a blank line (a cue's end in a .vtt file)."""
    assert pack_sub_text("Tom & Jerry <3\n\nuse the --> arrow", "webvtt") == \
        b"Tom &amp; Jerry &lt;3\nuse the --&gt; arrow"
    assert convert_text_sub(struct.pack(">H", 5) + b"a<b>c", "mov_text", "webvtt") == b"a&lt;b&gt;c"
    assert convert_text_sub((ASS + "x\\hy & z").encode(), "ass", "webvtt") == "x\u00a0y &amp; z".encode()
    assert pack_sub_text("a < b", "mov_text") == struct.pack(">H", 5) + b"a < b"  # mov_text holds text as is


# --- mov_text samples ---------------------------------------------------------------------------------------------
def test_cue_timeline_fills_gaps_and_splits_long_samples() -> None:
    """For mov_text the time between cues is an empty sample of ours (FFmpeg's own were of no length and moved
    the cues after them in a fragmented MP4); a sample longer than an hour is split (32 bits of microseconds)."""
    t = CueTimeline(fill=True)
    got = t.add(1000, 3000, "Top") + t.add(2000, 4000, "Bottom") + t.add(6000, 7000, "Last") + t.flush()
    assert got == [(1000, 2000, "Top"), (2000, 3000, "Top\nBottom"), (3000, 4000, "Bottom"), (4000, 6000, ""),
                   (6000, 7000, "Last")]
    t = CueTimeline.for_mov_text(TB)
    assert t.time_base == TB and t.longest == 3_600_000
    got = t.add(0, 500, "a") + t.add(8_000_000, 8_000_100, "b") + t.flush()
    assert got == [(0, 500, "a"), (500, 3_600_500, ""), (3_600_500, 7_200_500, ""), (7_200_500, 8_000_000, ""),
                   (8_000_000, 8_000_100, "b")]
    t = CueTimeline(fill=True)  # a cue that ended before what was given out adds no sample of no length
    assert t.add(1000, 2000, "a") + t.add(500, 800, "b") + t.add(3000, 3100, "c") + t.flush() == \
        [(1000, 2000, "a"), (2000, 3000, ""), (3000, 3100, "c")]


def fragmented_mp4_cues(sub_tb: Fraction, samples: list[tuple[int, int, str]]) -> list[tuple[float, float, str]]:
    """``samples`` (ms) muxed in time order with 2 s of 25 fps video (a keyframe each second) into a fragmented
    MP4 as FFmpeg writes one to a pipe; the texts shown and when, read back."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4", options={"movflags": "frag_keyframe+delay_moov+default_base_moof"}) as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.options = {"preset": "ultrafast", "g": "25", "bf": "0"}
        s = out.add_stream("mov_text")
        s.codec_context.subtitle_header = ASS_HEADER
        s.time_base = sub_tb
        pk = []
        for i in range(50):
            f = av.VideoFrame.from_ndarray(pattern(48, 64, i), format="rgb24").reformat(format="yuv420p")
            f.pts = i
            pk += [(float(p.dts * p.time_base), p) for p in v.encode(f)]
        pk += [(float(p.dts * p.time_base), p) for p in v.encode(None)]
        for a, b, text in samples:
            p = av.Packet(pack_sub_text(text, "mov_text"))
            p.pts = p.dts = int(a * TB / sub_tb)
            p.duration, p.time_base, p.stream = int((b - a) * TB / sub_tb), sub_tb, s
            pk.append((a / 1000, p))
        for _, p in sorted(pk, key=lambda x: x[0]):
            out.mux(p)
    buf.seek(0)
    with av.open(buf) as c:
        return [(round(float(p.pts * p.time_base), 3), round(float((p.pts + p.duration) * p.time_base), 3),
                 bytes(p)[2:].decode()) for p in c.demux(c.streams.subtitles[0]) if p.size > 2]


def test_mov_text_in_fragmented_mp4_keeps_its_times() -> None:
    """FFmpeg's mov muxer ends a cue with an empty sample of no length whenever another stream's dts is larger as
    a raw number; last in a fragment, that sample was given the length of the one before (0.6 s), and the cue
    after it moved: 'SIGN' 1.1-1.5 s came out at 1.701-2.101 s. In MOV_TEXT_TIME_BASE, with the gaps filled, the
    muxer writes none and every cue keeps its time."""
    from psr2video.video.subtitles import MOV_TEXT_TIME_BASE

    t = CueTimeline.for_mov_text(TB)
    samples = t.add(0, 1500, "SIGN") + t.add(500, 1100, "dialog") + t.add(1600, 1900, "late") + t.flush()
    want = [(0.0, 0.5, "SIGN"), (0.5, 1.1, "SIGN\ndialog"), (1.1, 1.5, "SIGN"), (1.6, 1.9, "late")]
    assert fragmented_mp4_cues(MOV_TEXT_TIME_BASE, samples) == want


# --- end to end ---------------------------------------------------------------------------------------------------
def make_subs(path: Path, ass: list[tuple[str, int, int]], srt: list[tuple[str, int, int]] | None = None,
              frames: int = 50) -> Path:
    """``frames`` of 64x48 25 fps H.264 with an ASS stream (and an SRT one) of the cues (text, start ms, ms)."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.options = {"preset": "ultrafast", "bf": "0"}
        subs = []
        for codec, cues in (("ass", ass), ("subrip", srt)):
            if cues is None:
                continue
            s = out.add_stream(codec)
            s.codec_context.subtitle_header = ASS_HEADER
            s.time_base = TB
            subs.append((s, cues))
        pk = []
        for i in range(frames):  # a new scene at 1 s: the output's keyframe, where a fragment of an MP4 begins
            f = av.VideoFrame.from_ndarray(pattern(48, 64, i) if i < 25 else 255 - pattern(48, 64, i), format="rgb24")
            f.pts = i
            pk += [(float(p.pts * p.time_base), p) for p in v.encode(f)]
        pk += [(float(p.pts * p.time_base), p) for p in v.encode(None)]
        for s, cues in subs:
            for text, start, length in cues:
                p = av.Packet(text.encode())
                p.pts = p.dts = start
                p.duration, p.time_base, p.stream = length, TB, s
                pk.append((start / 1000, p))
        for _, p in sorted(pk, key=lambda x: x[0]):
            out.mux(p)
    return path


def shown(path: Path | bytes) -> list[list[tuple[float, float, bytes]]]:
    """Per subtitle stream: (start, end, payload) of its packets with text (mov_text: without its length)."""
    with av.open(io.BytesIO(path) if isinstance(path, bytes) else str(path)) as c:
        out: dict[int, list[tuple[float, float, bytes]]] = {s.index: [] for s in c.streams.subtitles}
        for p in c.demux(*c.streams.subtitles):
            data = bytes(p)[2:] if p.stream.codec_context.name == "mov_text" else bytes(p)
            if p.dts is not None and data:
                out[p.stream.index].append((round(float(p.pts * p.time_base), 3),
                                            round(float((p.pts + (p.duration or 0)) * p.time_base), 3), data))
        return list(out.values())


ASS_CUES = [(DRAWING, 500, 1000), (ASS + "a < b & c > d\\hend", 700, 1000)]
SRT_CUES = [("Tom & Jerry", 200, 300), ("use the --> arrow", 1200, 300)]


def test_ass_and_srt_text_into_mp4_and_webm(tmp_path: Path) -> None:
    """The reviewer's clip: into .mp4 (mov_text) and .webm (WebVTT) the ASS line keeps 'a < b & c > d' and its hard
    space and the drawing shows nothing; WebVTT holds every '&' '<' '>' escaped."""
    src = make_subs(tmp_path / "in.mkv", ASS_CUES, SRT_CUES)
    code, err = run(str(src), str(tmp_path / "o.mp4"), "--variant", "mks")
    assert code == 0 and "(ass) is written as mov_text" in err, err
    assert shown(tmp_path / "o.mp4") == [[(0.7, 1.7, "a < b & c > d\u00a0end".encode())],
                                         [(0.2, 0.5, b"Tom & Jerry"), (1.2, 1.5, b"use the --> arrow")]]
    code, err = run(str(src), str(tmp_path / "o.webm"), "--variant", "mks", "--codec", "libvpx-vp9")
    assert code == 0 and "(ass) is written as webvtt" in err, err
    assert shown(tmp_path / "o.webm") == [[(0.7, 1.7, "a &lt; b &amp; c &gt; d\u00a0end".encode())],
                                          [(0.2, 0.5, b"Tom &amp; Jerry"), (1.2, 1.5, b"use the --&gt; arrow")]]


def piped(*args: str) -> tuple[int, bytes, str]:
    """psr2video in a process of its own, its output to stdout (FFmpeg's muxer aborted a run: SIGABRT)."""
    r = subprocess.run([sys.executable, "-m", "psr2video", "upscale", *args, "-", "--variant", "mks", "-q"],
                       capture_output=True, timeout=300)
    return r.returncode, r.stdout, r.stderr.decode(errors="replace")


def test_converted_ass_in_piped_mp4_keeps_its_times(tmp_path: Path) -> None:
    """To stdout an MP4 is fragmented: the ASS sign shown 1.1-1.5 s (after a line over it) came out at
    1.701-2.101 s, in a file it was right."""
    src = make_subs(tmp_path / "in.mkv", [(ASS + "{\\an8}SIGN", 0, 1500), (ASS + "dialog", 500, 600)])
    code, data, err = piped(str(src), "--format", "mp4")
    assert code == 0, err
    assert shown(data) == [[(0.0, 0.5, b"SIGN"), (0.5, 1.1, b"SIGN\ndialog"), (1.1, 1.5, b"SIGN")]]


def test_piped_mp4_part_ends_with_its_picture(tmp_path: Path) -> None:
    """A part to stdout as MP4 with a cue on screen at its end: FFmpeg's muxer ended the last cue with an empty
    sample of no length, which the fragment gave the length of the one before: the file claimed 0.6 s for 0.45 s of
    picture (1.9 s for 1.2 s in the reviewer's clip; written to a file it was right)."""
    from test_video import make_clip

    src = make_clip(tmp_path / "in.mkv", pts=list(range(0, 2000, 40)))  # AAC, and SRT cues 0-0.2 and 0.3-0.5 s
    code, data, err = piped(str(src), "--format", "mp4", "--end", "0.45")
    assert code == 0, err
    with av.open(io.BytesIO(data)) as c:
        assert c.duration / 1e6 < 0.5, c.duration
        last = [p for p in c.demux(*c.streams.subtitles) if p.dts is not None][-1]
        assert float((last.pts + last.duration) * last.time_base) <= 0.452  # ours, 1 ms, and FFmpeg's after it


def test_mp4_mov_text_copied_to_piped_mp4(tmp_path: Path) -> None:
    """An MP4's mov_text (FFmpeg writes samples of no length into it) copied into the fragmented MP4 of stdout made
    FFmpeg's muxer abort the run (SIGABRT, no message, a broken file): now written again, at the same times."""
    src = make_subs(tmp_path / "in.mkv", [(ASS + "{\\an8}SIGN", 0, 1500), (ASS + "dialog", 500, 600)])
    code, err = run(str(src), str(tmp_path / "in.mp4"), "--variant", "mks")
    assert code == 0, err
    code, data, err = piped(str(tmp_path / "in.mp4"), "--format", "mp4")
    assert code == 0, err
    assert "(mov_text) is written again for the fragmented mp4 on stdout" in err
    assert shown(data) == [[(0.0, 0.5, b"SIGN"), (0.5, 1.1, b"SIGN\ndialog"), (1.1, 1.5, b"SIGN")]]


def test_text_subtitles_not_written_into_nut(tmp_path: Path) -> None:
    """NUT stores no packet durations: ASS copied there read back with every cue 0 s long (never shown), SRT was
    dropped with no reason given. Both are named as dropped, with why, and .mkv named."""
    src = make_subs(tmp_path / "in.mkv", ASS_CUES, SRT_CUES)
    code, err = run(str(src), str(tmp_path / "o.nut"), "--variant", "mks")
    assert code == 0, err
    for k, name in ((1, "ass"), (2, "subrip")):
        assert (f"subtitle stream #{k} ({name}) can't be carried in nut (it stores no subtitle durations: every cue "
                "would last 0 s and never be shown); dropped (use .mkv to keep it)") in err, err
    with av.open(str(tmp_path / "o.nut")) as c:
        assert [s.type for s in c.streams] == ["video"]


# --- a line on screen when a part starts ----------------------------------------------------------------------------
def test_ass_timed_effects_go_on_from_a_part_start() -> None:
    """What is left of a line 1.6 s long, 0.8 s in: its fade in done, its \\move half way, two of four karaoke
    syllables sung, a \\t under way (negative start: renderers interpolate from there); what a line says is kept."""
    from psr2video.video.subtitles import ass_after

    line = (ASS + "{\\fad(300,200)\\move(0,400,600,400)\\t(400,1200,\\frz90)}{\\k40}Ka{\\kf40}ra{\\k40}o{\\k40}ke"
            ).encode()
    got = ass_after(line, Fraction(8, 10), Fraction(16, 10)).decode()
    assert got == (ASS + "{\\fade(0,0,255,0,0,600,800)\\move(300,400,600,400,0,800)\\t(-400,400,\\frz90)}"
                   "{\\k0}Ka{\\kf0}ra{\\k40}o{\\k40}ke")
    half = ass_after((ASS + "{\\fad(400,0)\\k50}A{\\k50}B").encode(), Fraction(1, 10), Fraction(2)).decode()
    assert half == ASS + "{\\fade(191,0,255,0,300,1900,1900)\\k40}A{\\k50}B"  # 1/4 into the fade: alpha 191
    done = ass_after((ASS + "{\\move(0,0,10,10,0,500)\\t(0,500,\\frz9)}x").encode(), Fraction(6, 10), Fraction(2))
    assert done.decode() == ASS + "{\\pos(10,10)\\frz9}x"
    plain = (ASS + "{\\an8\\pos(1,2)}no timed effect").encode()
    assert ass_after(plain, Fraction(1), Fraction(2)) == plain
    assert sub_text(got.encode(), "ass") == "Karaoke"


def test_ass_line_on_screen_at_start_goes_on(tmp_path: Path) -> None:
    """Karaoke lines 0.2-1.8 s (one with a fade in and a \\move), cut at --start 1.0 and 1.5: their effects went
    on from 0 again (the fade and the move replayed, every syllable sung again); now they go on from where they
    were (a shorter line padded in its first override block, a longer one written anew)."""
    fx = ASS + "{\\fad(300,0)\\move(0,400,600,400)}{\\k40}Ka{\\k40}ra{\\k40}o{\\k40}ke"
    kara = ASS + "{\\k40}Ka{\\k40}ra{\\k40}o{\\k40}ke"
    src = make_subs(tmp_path / "in.mkv", [(fx, 200, 1600), (kara, 200, 1600)])
    for start, want in (("1.0", [ASS + "{\\fade(0,0,255,0,0,800,800)\\move(300,400,600,400,0,800)}"
                                      "{\\k0}Ka{\\k0}ra{\\k40}o{\\k40}ke",
                                 ASS + "{  \\k0}Ka{\\k0}ra{\\k40}o{\\k40}ke"]),
                        ("1.5", [ASS + "{\\fade(0,0,255,0,0,300,300)\\move(487.5,400,600,400,0,300)}"
                                      "{\\k0}Ka{\\k0}ra{\\k0}o{\\k30}ke",
                                 ASS + "{   \\k0}Ka{\\k0}ra{\\k0}o{\\k30}ke"])):
        out = tmp_path / f"cut{start}.mkv"
        code, err = run(str(src), str(out), "--variant", "mks", "--start", start)
        assert code == 0, err
        got = sorted((t, e, text.decode()) for t, e, text in shown(out)[0])
        assert got == sorted((0.0, round(1.8 - float(start), 3), w) for w in want), got


def test_mp4_mov_text_copied_to_mp4_file(tmp_path: Path) -> None:
    """An MP4's mov_text copied into an MP4 file: a cue with a length waits for the picture to pass its end (an
    early end cuts it), and the empty samples of no length FFmpeg writes between cues went out at once, before it:
    'FFmpeg: Invalid argument ... returned 22'. They wait their turn."""
    with av.open(str(tmp_path / "in.mp4"), "w") as out:  # (FFmpeg's muxer, as ffmpeg -c:s mov_text writes it)
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.options = {"preset": "ultrafast", "bf": "0"}
        s = out.add_stream("mov_text")
        s.codec_context.subtitle_header = ASS_HEADER
        s.time_base = TB
        pk = []
        for i in range(50):
            f = av.VideoFrame.from_ndarray(pattern(48, 64, i), format="rgb24")
            f.pts = i
            pk += [(float(p.pts * p.time_base), p) for p in v.encode(f)]
        pk += [(float(p.pts * p.time_base), p) for p in v.encode(None)]
        for a, b, text in ((100, 1500, "one"), (600, 600, ""), (1600, 1800, "two")):  # (an empty one of no length)
            p = av.Packet(pack_sub_text(text, "mov_text"))
            p.pts = p.dts = a
            p.duration, p.time_base, p.stream = b - a, TB, s
            pk.append((a / 1000, p))
        for _, p in sorted(pk, key=lambda x: x[0]):
            out.mux(p)
    with av.open(str(tmp_path / "in.mp4")) as c:  # (and FFmpeg's own empty samples, one of no length)
        assert any(not p.duration for p in c.demux(c.streams.subtitles[0]) if p.dts is not None and p.size <= 2)
    code, err = run(str(tmp_path / "in.mp4"), str(tmp_path / "out.mp4"), "--variant", "mks", "-q")
    assert code == 0, err
    # (FFmpeg's empty samples copied meet the muxer's own and are nudged a tick or two apart: 'two' at 1.602 s,
    # as before the wait was added)
    got = shown(tmp_path / "out.mp4")[0]
    assert [t for _, _, t in got] == [b"one", b"two"] and got[0][:2] == (0.1, 1.5), got
    assert abs(got[1][0] - 1.6) <= 0.003 and abs(got[1][1] - 1.8) <= 0.003, got

"""``psr2video season/ season_x2/``: every video (and picture) under a folder through one Upscaler, each written as
a single-file run writes it; one bad file is named and skipped; Ctrl-C finalises the video being written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from test_cli_upscale import ROOT, terminal_sigint  # noqa: E402
from test_image_upscale import one_line_error, run  # noqa: E402
from test_video import frame_times, make_clip  # noqa: E402


def _video(path: Path) -> tuple[int, int, list[str]]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return s.codec_context.width, s.codec_context.height, [x.type for x in c.streams]


@pytest.fixture
def season(tmp_path: Path) -> Path:
    root = tmp_path / "season"
    (root / "extras").mkdir(parents=True)
    make_clip(root / "e01.mkv", w=64, h=36)
    make_clip(root / "extras" / "e02.mp4", w=48, h=32, subtitle=False)
    for srt in root.rglob("*.srt"):  # make_clip's subtitle source: a sidecar file, as many seasons have
        srt.rename(srt.with_suffix(".en.srt"))
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(root / "extras" / "poster.jpg")
    return root


def test_every_video_and_picture_once(season: Path, tmp_path: Path) -> None:
    """Same names and sub-folders; each video as its own single-file run writes it (streams, frame times, the
    size asked for), the picture as a picture, the sidecar subtitles named as not copied; one model load."""
    out = tmp_path / "out"
    code, err = run("upscale", str(season), str(out), "--variant", "realtime", "--size", "x54", "-q")
    assert code == 0, err
    assert err.count("Upscaler(realtime x2") == 3  # the folder's start line and each video's
    assert _video(out / "e01.mkv") == (96, 54, ["video", "audio", "subtitle"])
    assert _video(out / "extras" / "e02.mp4") == (80, 54, ["video", "audio"])
    assert frame_times(out / "e01.mkv") == frame_times(season / "e01.mkv")
    assert Image.open(out / "extras" / "poster.jpg").size == (81, 54)
    assert "2 videos and 1 picture" in err and "done: 2 of 2 videos, 1 of 1 pictures" in err
    assert "1 other file(s) under" in err and "e01.en.srt" in err and "not copied" in err
    # the frames are the single-file run's (lossless here; ONNX Runtime may differ by a code between sessions)
    lossless = ("--variant", "realtime", "--size", "x54", "--codec", "ffv1", "-q")
    assert run("upscale", str(season), str(tmp_path / "ffv1"), *lossless)[0] == 0
    assert run("upscale", str(season / "e01.mkv"), str(tmp_path / "single.mkv"), *lossless)[0] == 0
    with av.open(str(tmp_path / "single.mkv")) as a, av.open(str(tmp_path / "ffv1" / "e01.mkv")) as b:
        pairs = list(zip(a.decode(video=0), b.decode(video=0), strict=True))
    assert len(pairs) == 10
    assert all(np.abs(x.to_ndarray().astype(int) - y.to_ndarray().astype(int)).max() <= 1 for x, y in pairs)


def test_existing_outputs_and_one_file_options_are_refused_first(season: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "extras").mkdir(parents=True)
    (out / "extras" / "e02.mp4").write_bytes(b"old")
    one_line_error(*run("upscale", str(season), str(out), "--variant", "mks"), "e02.mp4 exists", "-y",
                   "--skip-existing")
    assert (out / "extras" / "e02.mp4").read_bytes() == b"old" and not (out / "e01.mkv").exists()
    for args, words in ((("--format", "nut"), "--format is for one file"),
                        (("--workers", "2"), "--workers is for one file"),
                        (("--codec", "nope"), "nope")):
        one_line_error(*run("upscale", str(season), str(tmp_path / "o2"), "--variant", "mks", *args), words)
    one_line_error(*run("upscale", str(season), str(tmp_path / "o.mkv"), "--variant", "mks"),
                   "OUT must be a folder too")
    one_line_error(*run("upscale", str(season), str(season / "x2"), "--variant", "mks"), "inside IN")


def test_a_bad_file_is_named_and_the_others_written(season: Path, tmp_path: Path) -> None:
    (season / "broken.mkv").write_bytes(b"\x1a\x45\xdf\xa3 not really matroska")
    (season / "clip.wmv").write_bytes((season / "e01.mkv").read_bytes())  # read by FFmpeg, never written
    out = tmp_path / "out"
    code, err = run("upscale", str(season), str(out), "--variant", "mks", "-q")
    assert code == 1 and "Traceback" not in err
    assert "warning: " in err and "broken.mkv" in err
    assert err.strip().splitlines()[-1].startswith("Error: 1 of 5 files had a problem (first: ")
    assert (out / "e01.mkv").exists() and (out / "extras" / "e02.mp4").exists() and not (out / "broken.mkv").exists()
    assert (out / "clip.mkv").exists() and ".wmv is read but not written here; 1 video(s) written as .mkv" in err


def ctrl_c_after_start(root: Path, out: Path, wait: float, *args: str) -> tuple[int, str]:
    """A folder run in a process of its own, Ctrl-C'd ``wait`` s after its first video's start line, as a terminal
    does it: (exit code, stderr)."""
    import time

    p = subprocess.Popen([sys.executable, "-m", "psr2video", str(root), str(out), "--variant", "mks", "--preset",
                          "ultrafast", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, PYTHONUNBUFFERED="1"), cwd=ROOT, preexec_fn=terminal_sigint)
    lines = []
    while not any("a.mkv ->" in line for line in lines):  # the first video's start line
        line = p.stderr.readline()
        assert line, "".join(lines)
        lines.append(line)
    time.sleep(wait)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    return p.returncode, "".join(lines) + err


@pytest.mark.slow  # CI runs it (--run-slow)
def test_ctrl_c_finalises_the_current_video_and_stops(tmp_path: Path) -> None:
    root = tmp_path / "long"
    root.mkdir()
    n = 18000  # ~20 s of work: a parent delayed a few seconds on a loaded machine still signals mid-run (with
    # 6,000 frames the signal once landed after the first video's run had returned, before its summary)
    for name, frames in (("a.mkv", n), ("b.mkv", 10)):
        make_clip(root / name, 64, 48, pts=list(range(0, 40 * frames, 40)), audio=("aac",), subtitle=False)
    out = tmp_path / "out"
    code, err = ctrl_c_after_start(root, out, 0.5, "--codec", "libx264")
    assert code == 130 and "Traceback" not in err, err
    assert "stopped by Ctrl-C after frame" in err and "not started: b.mkv" in err, err
    assert "kept as" in err and "--skip-existing to go on" in err, err
    # the cut-short video is kept, playable, out of the way of --skip-existing, which redoes it
    assert 0 < len(frame_times(out / "a.stopped.mkv")) < n and not (out / "a.mkv").exists()
    assert not (out / "b.mkv").exists() and not list(out.glob(".*partial*"))
    code, err = run("upscale", str(root), str(out), "--variant", "mks", "--skip-existing", "--max-frames", "5", "-q")
    assert code == 0 and len(frame_times(out / "a.mkv")) == len(frame_times(out / "b.mkv")) == 5, err
    assert not (out / "a.stopped.mkv").exists() and "the cut-short a.stopped.mkv of an earlier run is removed" in err


def test_a_stopped_folder_names_the_stopped_file_and_paths_under_in(tmp_path: Path) -> None:
    """Ctrl-C in a folder run: the summary's done line named sub/a.mkv, renamed to sub/a.stopped.mkv right after,
    and the files not started were bare names (b.mkv for more/b.mkv). Now the done line names the file as it is,
    and the stop line names each file by its path under IN."""
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / "tail").mkdir()
    n = 3000  # ~5 s of work on an idle 2-core CPU: still under way 0.3 s after its start line
    make_clip(root / "sub" / "a.mkv", 64, 48, pts=list(range(0, 40 * n, 40)), audio=(), subtitle=False)
    make_clip(root / "tail" / "b.mkv", 64, 48, pts=list(range(0, 400, 40)), audio=(), subtitle=False)
    out = tmp_path / "out"
    code, err = ctrl_c_after_start(root, out, 0.3)
    if code == 0:  # a much faster machine finished both first
        pytest.skip("the run ended before the Ctrl-C")
    assert code == 130 and "Traceback" not in err, err
    stopped = out / "sub" / "a.stopped.mkv"
    done = [ln for ln in err.splitlines() if ln.startswith("done: ")]
    assert len(done) == 1 and done[0].split(" -> ")[1].startswith(f"{stopped} ("), err
    assert "sub/a.mkv was stopped (cut short: kept as" in err and "not started: tail/b.mkv;" in err, err
    assert stopped.exists() and not (out / "sub" / "a.mkv").exists()


def test_skip_existing_goes_on_where_a_run_stopped(season: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "extras").mkdir(parents=True)
    (out / "extras" / "e02.mp4").write_bytes(b"finished before")
    code, err = run("upscale", str(season), str(out), "--variant", "mks", "--skip-existing", "-q")
    assert code == 0, err
    assert "--skip-existing: 1 video(s) whose OUT exists are left out" in err
    assert (out / "extras" / "e02.mp4").read_bytes() == b"finished before" and _video(out / "e01.mkv")[0] == 128
    code, err = run("upscale", str(season), str(out), "--variant", "mks", "--skip-existing", "-q")
    assert code == 0 and "has its OUT already (--skip-existing); nothing to do" in err, err
    one_line_error(*run("upscale", str(season / "e01.mkv"), str(tmp_path / "x.mkv"), "--skip-existing"),
                   "--skip-existing is for a folder IN")
    one_line_error(*run("upscale", str(season), str(out), "--skip-existing", "-y"), "not both")


def test_bad_pictures_are_counted_one_by_one(season: Path, tmp_path: Path) -> None:
    for name in ("bad1.png", "bad2.jpg"):
        (season / name).write_bytes(b"not a picture")
    (season / "._e01.mkv").write_bytes(b"macOS resource fork")  # hidden: not a video of the season
    (season / ".cache").mkdir()
    make_clip(season / ".cache" / "thumb.mkv", w=32, h=24, subtitle=False)
    out = tmp_path / "out"
    code, err = run("upscale", str(season), str(out), "--variant", "mks", "-q")
    assert code == 1 and "done: 2 of 2 videos, 1 of 3 pictures" in err, err
    assert err.strip().splitlines()[-1].startswith("Error: 2 of 5 files had a problem (first: ")
    assert (out / "extras" / "poster.jpg").exists() and not (out / ".cache").exists()
    assert "._e01" not in err and "thumb.mkv" not in err


def test_each_containers_encoder_is_checked_before_the_model_loads(season: Path, tmp_path: Path) -> None:
    """A .webm among .mkv files gets SVT-AV1, as one file does (said once); settings that encoder refuses are
    one line before anything runs, not a failure after the other videos."""
    make_clip(season / "trailer.webm", w=32, h=24, audio=("libopus",), subtitle=False, codec="libvpx-vp9")
    out = tmp_path / "out"
    one_line_error(*run("upscale", str(season), str(out), "--variant", "mks", "--preset", "ultrafast"),
                   "libsvtav1", "ultrafast", "(for the .webm files)")
    assert not out.exists()
    code, err = run("upscale", str(season), str(out), "--variant", "mks", "-q")
    assert code == 0 and "note: .webm: webm can't hold H.264 video: encoding with libsvtav1" in err, err
    with av.open(str(out / "trailer.webm")) as c:
        assert c.streams.video[0].codec_context.name in ("libdav1d", "av1", "libaom-av1")  # AV1 decoders
    one_line_error(*run("upscale", str(season), str(tmp_path / "o2"), "--variant", "mks", "--codec", "libx264"),
                   "webm")


def test_crop_in_a_folder_says_the_pictures_are_whole(season: Path, tmp_path: Path) -> None:
    """--crop cut the videos and was dropped for the folder's pictures without a word (a single picture refuses
    it); now said, as --start is."""
    code, err = run("upscale", str(season), str(tmp_path / "out"), "--variant", "mks", "--crop", "0:0:4:4", "-q")
    assert code == 0 and "--crop cuts the videos' edges; the 1 picture(s) and animation(s) are upscaled whole" in err
    assert Image.open(tmp_path / "out" / "extras" / "poster.jpg").size == (60, 40)


def test_a_damaged_video_is_not_left_under_its_out_name(season: Path, tmp_path: Path) -> None:
    """A truncated video in a folder wrote the frames that decoded under its OUT name, so the --skip-existing
    re-run the tool itself advises took it as done and ended with exit 0: the damage was never said again. It is
    kept as NAME.damaged.EXT now (--skip-existing tries it again; --ignore-errors accepts it as done), and a later
    complete run removes that file."""
    full = make_clip(tmp_path / "long.mkv", w=64, h=36, pts=[i * 40 for i in range(60)], subtitle=False)
    data = full.read_bytes()
    (season / "cut.mkv").write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "out"
    code, err = run("upscale", str(season), str(out), "--variant", "mks", "-q")
    assert code == 1 and "kept as cut.damaged.mkv instead, so that --skip-existing tries it again" in err, err
    assert (out / "cut.damaged.mkv").exists() and not (out / "cut.mkv").exists()
    code, err = run("upscale", str(season), str(out), "--variant", "mks", "-q", "--skip-existing")
    assert code == 1 and "cut.mkv" in err.strip().splitlines()[-1], err  # tried again, said again
    code, err = run("upscale", str(season), str(out), "--variant", "mks", "-q", "--skip-existing",
                    "--ignore-errors")
    assert code == 0 and (out / "cut.mkv").exists() and not (out / "cut.damaged.mkv").exists(), err
    assert "the damaged cut.damaged.mkv of an earlier run is removed" in err


def test_a_picture_that_cant_be_written_does_not_stop_the_others(season: Path, tmp_path: Path) -> None:
    """One picture whose OUT can't be written (here a file where its output folder must go) stopped every picture
    after it, and the summary said the others were written. It is named and skipped; the rest are written, and
    a video whose output folder can't be made is one warning, not a traceback that ends the folder."""
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(season / "zz.png")
    (season / "sub").mkdir()
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(season / "sub" / "a.png")
    make_clip(season / "sub" / "b.mkv", w=48, h=32, subtitle=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").write_bytes(b"a file where the folder goes")
    code, err = run("upscale", str(season), str(out), "--variant", "mks", "-q")
    assert code == 1 and "Traceback" not in err, err
    assert (out / "zz.png").exists() and (out / "extras" / "poster.jpg").exists() and (out / "e01.mkv").exists()
    assert "can't make the folder" in err and "sub/b.mkv" in err
    assert err.strip().splitlines()[-1].startswith("Error: 2 of 6 files had a problem"), err


def test_linked_folders_are_followed_once(season: Path, tmp_path: Path) -> None:
    """A season folder of links into a library: rglob did not follow linked folders, and their videos were left
    out without a word. They are followed, each real folder once (a link back up does not loop)."""
    from psr2video.fileio import visible_files

    library = tmp_path / "library"
    library.mkdir()
    make_clip(library / "e05.mkv", w=48, h=32, subtitle=False)
    (season / "linked").symlink_to(library, target_is_directory=True)
    (season / "extras" / "up").symlink_to(season, target_is_directory=True)
    names = [p.relative_to(season).as_posix() for p in visible_files(season)]
    assert "linked/e05.mkv" in names and not any(n.startswith("extras/up/") for n in names), names


def test_an_out_that_is_one_of_the_inputs_is_refused_even_with_y(tmp_path: Path) -> None:
    """IN inside OUT (``psr2video lib/a lib -y``): lib/a/a/ep.mkv's OUT is lib/a/ep.mkv, itself an input, which
    was overwritten and then upscaled again (exit 0). Refused before anything loads, -y or not, videos and
    pictures alike, and nothing is touched."""
    lib = tmp_path / "lib"
    (lib / "a" / "a").mkdir(parents=True)
    make_clip(lib / "a" / "ep.mkv", w=48, h=32, subtitle=False)
    make_clip(lib / "a" / "a" / "ep.mkv", w=64, h=36, subtitle=False)
    before = (lib / "a" / "ep.mkv").read_bytes()
    for extra in ([], ["-y"]):
        code, err = run("upscale", str(lib / "a"), str(lib), "--variant", "mks", "-q", *extra)
        one_line_error(code, err, f"{lib / 'a' / 'ep.mkv'}, the OUT of {lib / 'a' / 'a' / 'ep.mkv'}",
                       "is one of the inputs")
        assert "Upscaler(" not in err, err
    assert (lib / "a" / "ep.mkv").read_bytes() == before and not (lib / "ep.mkv").exists()
    pics = tmp_path / "pics"  # a folder of pictures only (the picture path's own plan)
    (pics / "a" / "a").mkdir(parents=True)
    for p in (pics / "a" / "p.png", pics / "a" / "a" / "p.png"):
        Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(p)
    before = (pics / "a" / "p.png").read_bytes()
    code, err = run("upscale", str(pics / "a"), str(pics), "--variant", "mks", "-q", "-y")
    one_line_error(code, err, "is one of the inputs")
    assert (pics / "a" / "p.png").read_bytes() == before


def test_a_linked_folder_under_in_that_leads_to_out_is_out_inside_in(tmp_path: Path) -> None:
    """IN holding a link to OUT: the "OUT inside IN" check compared the paths as written, the run followed the
    link, and the next -y run upscaled the previous outputs again (OUT/outlink/e1.mkv). Links are resolved."""
    src, out = tmp_path / "in", tmp_path / "outreal"
    src.mkdir()
    make_clip(src / "e1.mkv", w=48, h=32, subtitle=False)
    (src / "outlink").symlink_to(out, target_is_directory=True)  # OUT not made yet: the run would make it
    for extra in ([], ["-y"]):
        code, err = run("upscale", str(src), str(out), "--variant", "mks", "-q", *extra)
        one_line_error(code, err, f"OUT {out} is inside IN {src}", f"through the linked folder {src / 'outlink'}")
    assert not out.exists()
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(src / "p.png")  # pictures only
    (src / "e1.mkv").unlink()
    out.mkdir()
    one_line_error(*run("upscale", str(src), str(out), "--variant", "mks", "-q"), "is inside IN")
    assert list(out.iterdir()) == []


def test_a_broken_link_as_out_is_not_replaced_without_y(season: Path, tmp_path: Path) -> None:
    """An OUT that is a link to nothing was taken as "not there" and replaced without -y."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "e01.mkv").symlink_to(tmp_path / "nowhere" / "e01.mkv")
    code, err = run("upscale", str(season), str(out), "--variant", "mks", "-q")
    one_line_error(code, err, f"{out / 'e01.mkv'} exists", "-y", "--skip-existing")
    assert (out / "e01.mkv").is_symlink() and list(out.iterdir()) == [out / "e01.mkv"]
    code, err = run("upscale", str(season), str(out), "--variant", "mks", "-q", "--skip-existing")
    assert code == 0 and "--skip-existing: 1 video(s) whose OUT exists are left out" in err, err
    assert (out / "e01.mkv").is_symlink()


def test_out_below_a_file_is_one_line_before_the_model(season: Path, tmp_path: Path) -> None:
    """A file where OUT's folder must go failed every video on its own ("can't make the folder ... File
    exists"): one line now, before the model loads."""
    (tmp_path / "outfile").write_bytes(b"a file")
    code, err = run("upscale", str(season), str(tmp_path / "outfile" / "x"), "--variant", "mks", "-q")
    one_line_error(code, err, f"can't write {tmp_path / 'outfile' / 'x'}: {tmp_path / 'outfile'} is a file, not a "
                   "folder")
    assert "Upscaler(" not in err, err


def test_a_damaged_videos_line_says_only_where_its_frames_are(season: Path, tmp_path: Path) -> None:
    """A damaged video's line said its frames "were written to out/cut.mkv" and "kept as cut.damaged.mkv
    instead": only the second is true."""
    full = make_clip(tmp_path / "long.mkv", w=64, h=36, pts=[i * 40 for i in range(60)], subtitle=False)
    data = full.read_bytes()
    (season / "cut.mkv").write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "out"
    code, err = run("upscale", str(season), str(out), "--variant", "mks", "-q")
    line = next(ln for ln in err.splitlines() if ln.startswith("warning:") and "cut.mkv" in ln)
    assert code == 1 and f"written to {out / 'cut.mkv'}" not in err, err
    assert "the frames that decoded were kept as cut.damaged.mkv instead" in line, line


def test_an_out_folder_that_cant_be_made_is_refused_before_the_model(season: Path, tmp_path: Path) -> None:
    """Videos and pictures into an OUT that can't be made: one line before the model loads (each file was tried
    and failed after the model loaded); the folder command and the pictures' use the same probe."""
    code, log = run(str(season), "/proc/psr2video-test-out", "--variant", "mks")
    one_line_error(code, log, "can't write into /proc/psr2video-test-out")
    assert "Upscaler(" not in log, log

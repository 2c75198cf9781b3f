"""`psr2video IN OUT`: bad input gives one clear line and a non-zero exit; Ctrl-C leaves a playable file."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest
from click.testing import CliRunner

from psr2video.cli import cli

sys.path.insert(0, str(Path(__file__).parent))
from test_video import frame_times, make_clip  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stderr if r.stderr_bytes is not None else r.output  # (click 8.1: mixed, no stderr)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "in.mkv")


def one_line_error(code: int, err: str, *words: str) -> None:
    assert code != 0
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("Error")]
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], lines[0]


def test_help_lists_options() -> None:
    code, _ = run_cli("upscale", "--help")
    r = CliRunner().invoke(cli, ["upscale", "--help"])
    assert code == 0
    for opt in ("--variant", "--scale", "--weights", "--backend", "--precision", "--tile", "--device", "--batch",
                "--codec", "--crf", "--preset", "--pix-fmt", "--format", "-y", "--overlay-fps", "--ignore-errors",
                "--max-frames"):
        assert opt in r.output


def test_missing_input(tmp_path: Path) -> None:
    one_line_error(*run_cli(str(tmp_path / "nope.mp4"), str(tmp_path / "o.mkv"), "--variant", "mks"), "not found")


def test_not_a_video(tmp_path: Path) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n" * 50)
    out = tmp_path / "o.mkv"
    one_line_error(*run_cli(str(bad), str(out), "--variant", "mks"), "not a readable video")
    assert not out.exists()


def test_no_video_stream(tmp_path: Path) -> None:
    src = tmp_path / "audio.mka"
    with av.open(str(src), "w") as c:
        a = c.add_stream("aac", rate=48000)
        a.layout = "stereo"
        import numpy as np

        f = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
        f.sample_rate, f.pts = 48000, 0
        c.mux(a.encode(f))
        c.mux(a.encode(None))
    one_line_error(*run_cli(str(src), str(tmp_path / "o.mkv"), "--variant", "mks"), "no video stream")


def test_refuses_to_overwrite(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.mkv"
    out.write_bytes(b"keep me")
    one_line_error(*run_cli(str(clip), str(out), "--variant", "mks"), "exists", "-y")
    assert out.read_bytes() == b"keep me"


@pytest.mark.parametrize("overwrite", [False, True])
def test_output_folder_is_named_as_a_folder(clip: Path, tmp_path: Path, overwrite: bool) -> None:
    """OUT that is a folder said "exists; use -y to overwrite", and -y then said "is a directory": one answer now,
    with a file name to use."""
    folder = tmp_path / "out"
    folder.mkdir()
    one_line_error(*run_cli(str(clip), str(folder), "--variant", "mks", *(["-y"] if overwrite else [])),
                   "is a directory", f"e.g. {folder / 'in.mkv'}")
    assert list(folder.iterdir()) == []


def test_webm_without_codec_is_written_in_av1(clip: Path, tmp_path: Path) -> None:
    """`psr2video in.mkv out.webm` stopped with "webm can't hold h264 video": without --codec the encoder is now one
    the container holds (SVT-AV1), said in one note; an explicit --codec is kept as given, .mkv keeps libx264."""
    from psr2video.video.output_checks import default_codec

    out = tmp_path / "o.webm"
    code, err = run_cli(str(clip), str(out), "--variant", "mks", "-q")
    assert code == 0, err
    assert "note: webm can't hold H.264 video: encoding with libsvtav1 (--codec to choose)" in err, err
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name in ("libdav1d", "av1", "libaom-av1")
        assert c.streams.video[0].width == 96 and sum(1 for _ in c.decode(video=0)) == len(frame_times(clip))
    assert default_codec(str(tmp_path / "o.mkv"), None) == ("libx264", None)
    assert default_codec("-", None) == ("libx264", None) and default_codec("-", "webm")[0] == "libsvtav1"
    code, err = run_cli(str(clip), str(tmp_path / "v.webm"), "--variant", "mks", "-q", "--codec", "libx264")
    one_line_error(code, err, "webm can't hold h264 video")


def test_cant_hold_suggests_mkv_only_where_it_holds_the_codec(clip: Path, tmp_path: Path) -> None:
    """"matroska can't hold webp video ...; pick a --codec it can hold (...) or use .mkv" told a .mkv to use .mkv,
    and an .mp4 too, though Matroska can't hold WebP video either; a codec Matroska holds still gets the hint."""
    for ext in ("mkv", "mp4"):
        code, err = run_cli(str(clip), str(tmp_path / f"o.{ext}"), "--variant", "mks", "--codec", "libwebp")
        one_line_error(code, err, "can't hold webp video (--codec libwebp); pick a --codec it can hold (libx264")
        assert ".mkv" not in err, err
    code, err = run_cli(str(clip), str(tmp_path / "o.ts"), "--variant", "mks", "--codec", "ffv1")
    one_line_error(code, err, "mpegts can't hold ffv1 video")
    assert err.rstrip().endswith("or use .mkv"), err


def test_unwritable_output(clip: Path, tmp_path: Path) -> None:
    one_line_error(*run_cli(str(clip), str(tmp_path / "no" / "such" / "o.mkv"), "--variant", "mks"),
                   "does not exist")


def test_unsupported_scale_and_variant(clip: Path, tmp_path: Path) -> None:
    one_line_error(*run_cli(str(clip), str(tmp_path / "o.mkv"), "--variant", "mks", "--scale", "5"), "scale")
    one_line_error(*run_cli(str(clip), str(tmp_path / "o.mkv"), "--variant", "mks", "--device", "gpu"),
                   "unknown device 'gpu'; use auto, cpu, cuda or cuda:N")
    code, err = run_cli(str(clip), str(tmp_path / "o.mkv"), "--variant", "ultra")
    assert code != 0 and "Traceback" not in err and "ultra" in err


def test_missing_weights_is_one_line(clip: Path, tmp_path: Path) -> None:
    from psr2video.models.registry import shipped_weights_path

    assert shipped_weights_path("pro", 3) is None  # nothing is shipped for pro x3
    one_line_error(*run_cli(str(clip), str(tmp_path / "o.mkv"), "--variant", "pro", "--scale", "3"), "weights")
    one_line_error(*run_cli(str(clip), str(tmp_path / "o.mkv"), "--variant", "realtime",
                            "--weights", str(tmp_path / "none.safetensors")))


def test_weights_preset(clip: Path, tmp_path: Path) -> None:
    """``--weights clean`` names a shipped file, not a path: it runs; an unknown preset and weights given to a
    fixed resampler are one-line errors that leave no output behind."""
    out = tmp_path / "o.mkv"
    code, err = run_cli(str(clip), str(out), "--variant", "realtime", "--weights", "clean", "-q")
    assert code == 0, err
    assert "Upscaler(realtime x2 [realtime_x2_clean]," in err  # the header says which file ran
    with av.open(str(out)) as c, av.open(str(clip)) as src:
        assert c.streams.video[0].width == 2 * src.streams.video[0].width
    out.unlink()
    one_line_error(*run_cli(str(clip), str(out), "--variant", "realtime", "--weights", "sharp"),
                   "'sharp'", "presets: clean")
    one_line_error(*run_cli(str(clip), str(out), "--variant", "mks", "--weights", "clean"),
                   "fixed resampler", "no weights")
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_weights_file_says_its_variant_and_scale(clip: Path, tmp_path: Path) -> None:
    """A psr2video weights file carries its variant and scale: --weights FILE alone runs it (it used to be
    refused as "holds variant 'realtime', not 'stream'" against the default variant); an explicit --variant or
    --scale that disagrees is still a one-line error."""
    from psr2video.models.registry import shipped_weights_path

    w = shipped_weights_path("realtime", 2)
    out = tmp_path / "o.mkv"
    code, err = run_cli(str(clip), str(out), "--weights", str(w), "--max-frames", "2", "-q")
    assert code == 0 and "Upscaler(realtime x2" in err, err
    out.unlink()
    one_line_error(*run_cli(str(clip), str(out), "--weights", str(w), "--variant", "stream"),
                   "holds variant 'realtime', not 'stream'")
    one_line_error(*run_cli(str(clip), str(out), "--weights", str(w), "--scale", "3"), "x2 model, not x3")
    assert not out.exists()


@pytest.mark.parametrize("args, words", [
    (("--crf", "-5"), ("libx264 refused --crf -5", "it takes --crf 0-51")),
    (("--crf", "100"), ("libx264 refused --crf 100", "it takes --crf 0-51")),  # x264 itself clamps it silently
    (("--codec", "libsvtav1", "--crf", "64"), ("libsvtav1 refused --crf 64", "--crf 1-63")),
    (("--preset", "foo"), ("libx264 refused --preset foo", "ultrafast ... veryslow")),
    (("--codec", "libx265", "--crf", "60"), ("libx265 refused --crf 60",)),
    (("--codec", "libsvtav1", "--preset", "20"), ("libsvtav1 refused --preset 20", "-2 ... 13")),
    (("--codec", "libvpx-vp9", "--preset", "slow"), ("libvpx-vp9 takes no --preset",)),
    (("--codec", "ffv1", "--crf", "10"), ("ffv1 is lossless",)),
])
def test_encoder_settings_checked_before_work(clip: Path, tmp_path: Path, args: tuple, words: tuple) -> None:
    """A mistyped preset or an out-of-range CRF is one line naming what the encoder takes, before the model
    loads (it was FFmpeg's avcodec_open2 text after the start line; VP9 ignored --preset silently)."""
    out = tmp_path / "o.mkv"
    code, err = run_cli(str(clip), str(out), "--variant", "mks", *args)
    one_line_error(code, err, *words)
    assert "Upscaler(" not in err and not out.exists()


def test_encoder_refusal_is_the_only_line(clip: Path, tmp_path: Path) -> None:
    """x264 prints its own complaint straight to file descriptor 2: hidden, the one line says it; NVENC without
    an NVIDIA GPU is named as such (this machine has none: checked, not assumed)."""
    p = subprocess.run([sys.executable, "-m", "psr2video", str(clip), str(tmp_path / "o.mkv"), "--variant", "mks",
                        "--preset", "foo"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 1 and p.stderr.strip().splitlines() == [
        "Error: libx264 refused --preset foo; it takes --crf 0-51, --preset ultrafast ... veryslow, placebo"]
    import torch

    if not torch.cuda.is_available():
        one_line_error(*run_cli(str(clip), str(tmp_path / "o.mkv"), "--variant", "mks", "--codec", "h264_nvenc"),
                       "h264_nvenc can't start: it needs an NVIDIA GPU with NVENC")


def test_unknown_codec(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.mkv"
    one_line_error(*run_cli(str(clip), str(out), "--variant", "mks", "--codec", "libnothing"), "libnothing")
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_truncated_input(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mkv", pts=list(range(0, 1200, 40)), audio=(), subtitle=False)
    data = src.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 6 // 10])
    out = tmp_path / "o.mkv"
    code, err = run_cli(str(cut), str(out), "--variant", "mks", "-q")
    one_line_error(code, err, "truncated or damaged", "--ignore-errors")
    assert out.exists()  # what decoded was written, and the error says so
    n = len(frame_times(out))
    assert 0 < n < 30
    code, err = run_cli(str(cut), str(out), "--variant", "mks", "-q", "-y", "--ignore-errors")
    assert code == 0 and "truncated" in err


def test_input_with_no_decodable_frame(tmp_path: Path) -> None:
    """Only the header survives: one line naming the input, exit 1, and no OUT (nor a partial file) left behind
    (this used to end in "No such file or directory: .o.partial.mkv")."""
    src = make_clip(tmp_path / "in.mkv", pts=list(range(0, 1200, 40)), audio=(), subtitle=False)
    data = src.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 10])
    out = tmp_path / "o.mkv"
    for extra in ((), ("--ignore-errors",)):
        one_line_error(*run_cli(str(cut), str(out), "--variant", "mks", "-q", *extra),
                       f"no video frame could be decoded from {cut}")
        assert not out.exists() and not list(tmp_path.glob(".*partial*"))


@pytest.mark.slow  # CI runs it (--run-slow); the default suite stays under 90 s
def test_disk_full(clip: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    with open("/dev/full", "wb") as full:
        p = subprocess.run([sys.executable, "-m", "psr2video", str(clip), "-", "--variant", "mks", "-q"],
                           stdout=full, stderr=subprocess.PIPE, text=True, timeout=120, cwd=ROOT)
    one_line_error(p.returncode, p.stderr, "disk full while writing to stdout")  # as the README says, not "-"


@pytest.mark.slow  # CI runs it (--run-slow); test_ctrl_c_at_any_moment covers Ctrl-C by default
def test_ctrl_c_leaves_playable_file(tmp_path: Path) -> None:
    n = 600
    src = make_clip(tmp_path / "long.mkv", 64, 48, pts=list(range(0, 40 * n, 40)), audio=("aac",),
                    subtitle=False)
    out = tmp_path / "o.mkv"
    with HeldInput(src, out, preexec_fn=terminal_sigint) as run:
        run.p.send_signal(signal.SIGINT)
    assert run.p.returncode == 130, run.err
    assert "Traceback" not in run.err
    assert "stopped by Ctrl-C after frame" in run.err
    times = frame_times(out)
    assert 0 < len(times) < n
    assert times == pytest.approx([i * 0.04 for i in range(len(times))], abs=1e-3)
    assert not run.part.exists()


class HeldInput:
    """``psr2video - OUT`` with the source fed to its stdin and its second half held back until the block ends:
    inside it the run is under way (its progress counted frames) and can't end, however slow the test or
    fast the child. (A file input raced: a parent delayed past the child's last frame signalled a finished run.)"""

    def __init__(self, src: Path, out: Path, preexec_fn=None) -> None:
        self.data, self.out = src.read_bytes(), out
        self.part = out.with_name(f".{out.stem}.partial{out.suffix}")
        self.preexec_fn = preexec_fn

    def __enter__(self) -> HeldInput:
        import threading

        self.p = subprocess.Popen([sys.executable, "-m", "psr2video", "-", str(self.out), "--variant", "mks",
                                   "--codec", "libx264", "--preset", "ultrafast"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                                  env=dict(os.environ, PYTHONUNBUFFERED="1"), preexec_fn=self.preexec_fn)
        self.release = threading.Event()
        self.feeder = threading.Thread(target=self._feed, daemon=True)
        self.feeder.start()
        self.head = b""
        while not re.match(rb"frame [1-9]", self.head):  # a progress line that counts frames: the run is under way
            line = self.p.stderr.readline()  # a line every 5 s when stderr is not a terminal
            assert line, (self.head + self.p.communicate(timeout=60)[1]).decode(errors="replace")
            self.head = line
        return self

    def _feed(self) -> None:
        half = len(self.data) // 2
        try:
            self.p.stdin.write(self.data[:half])
            self.p.stdin.flush()
            self.release.wait()
            self.p.stdin.write(self.data[half:])
            self.p.stdin.close()
        except (BrokenPipeError, ValueError):  # the child stopped reading: it was told to stop
            pass

    def __exit__(self, *exc) -> None:
        self.release.set()
        _, err = self.p.communicate(timeout=120)
        self.err = (self.head + err).decode(errors="replace")
        self.feeder.join(timeout=10)


def test_damaged_packets_reported(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mkv", 96, 64, pts=list(range(0, 2400, 40)), audio=(), subtitle=False)
    data = bytearray(src.read_bytes())
    with av.open(str(src)) as c:
        pk = [p for p in c.demux(video=0) if p.size > 200]
    for p in pk[10:12]:  # scramble two frames' payload, keep the container intact
        for i in range(p.pos + 20, p.pos + p.size - 5):
            data[i] ^= 0x5A
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(bytes(data))
    out = tmp_path / "o.mkv"
    code, err = run_cli(str(bad), str(out), "--variant", "mks", "-q")
    one_line_error(code, err, "damaged input at", "--ignore-errors")
    assert len(frame_times(out)) == 60
    code, err = run_cli(str(bad), str(out), "--variant", "mks", "-q", "-y", "--ignore-errors")
    assert code == 0 and "damaged input at" in err


def test_argument_mistakes_fail_before_heavy_imports(tmp_path: Path, clip: Path) -> None:
    """'input not found' and friends are answered before torch or PyAV is imported (milliseconds, not seconds)."""
    code = ("import sys\nfrom psr2video.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    print(e.code, 'torch' in sys.modules, 'av' in sys.modules)\n")
    cases = [([str(tmp_path / "nope.mp4"), str(tmp_path / "o.mkv")], "input not found"),
             ([str(clip), str(tmp_path / "no" / "o.mkv")], "does not exist"),
             ([str(clip), str(tmp_path / "o.mkv"), "--scale", "5"], "unsupported --scale"),
             ([str(clip), str(tmp_path / "o.mkv"), "--variant", "realtime", "--weights", str(tmp_path / "w.st")],
              "weights file not found")]
    for args, words in cases:
        p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60,
                           cwd=ROOT)
        assert p.stdout.split() == ["1", "False", "False"], (args, p.stdout, p.stderr)
        one_line_error(1, p.stderr, words)


def terminal_sigint() -> None:
    """The child's SIGINT as a terminal gives it (default). A test runner started in the background (``cmd &``)
    has SIGINT ignored, children inherit that, and psr2video, like every Unix tool, keeps ignoring it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_torch_import(p: subprocess.Popen, limit: float = 60.0) -> None:
    """Block until the child maps torch's libc10 (Linux ``/proc/PID/maps``): torch is imported only after
    ``cli.main`` took over Ctrl-C, so from here every SIGINT is ours. Python's own start-up can't be helped
    (a Ctrl-C there is Python's), and a fixed delay races it on a loaded machine."""
    deadline = time.monotonic() + limit
    maps = Path(f"/proc/{p.pid}/maps")
    while time.monotonic() < deadline and p.poll() is None:
        if "libc10" in maps.read_text():
            return
        time.sleep(0.005)
    raise AssertionError(f"psr2video never began importing torch (exit {p.poll()})")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc to see torch load")
@pytest.mark.parametrize("after", [0.0, 0.6, 2.0])
def test_ctrl_c_at_any_moment(tmp_path: Path, after: float) -> None:
    """SIGINT while torch imports, while the model loads or the run is under way: exit 130, no traceback, no
    click 'Aborted!', no half-written output."""
    # 3,000 frames: mks runs ~600 fps on an idle 2-core CPU, so the run is still under way at 2 s
    src = make_clip(tmp_path / "long.mkv", 64, 48, pts=list(range(0, 40 * 3000, 40)), audio=(), subtitle=False)
    out = tmp_path / "o.mkv"
    p = subprocess.Popen([sys.executable, "-m", "psr2video", str(src), str(out), "--variant", "mks", "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                         preexec_fn=terminal_sigint)
    wait_for_torch_import(p)
    time.sleep(after)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    if "done: " in err and p.returncode == -signal.SIGINT:  # a faster machine finished first: exit was under way
        assert len(frame_times(out)) == 3000
        return
    assert p.returncode == 130, err
    for bad in ("Traceback", "Aborted", "ImportError", "cannot load module"):
        assert bad not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if " -> " not in err:  # stopped before the run began: one line
        assert lines == ["psr2video: interrupted"], err
    else:
        assert "stopped by Ctrl-C" in err, err
    assert not (tmp_path / ".o.partial.mkv").exists()
    if out.exists():
        assert len(frame_times(out)) > 0


def test_background_job_keeps_ignoring_ctrl_c(tmp_path: Path) -> None:
    """Started with SIGINT ignored (``psr2video ... &`` in a script), psr2video leaves it ignored throughout,
    like every Unix tool: the run finishes."""
    src = make_clip(tmp_path / "in.mkv", 64, 48, pts=list(range(0, 40 * 60, 40)), audio=(), subtitle=False)
    out = tmp_path / "o.mkv"
    p = subprocess.Popen([sys.executable, "-m", "psr2video", str(src), str(out), "--variant", "mks"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    head = p.stderr.readline()  # the run is set up: ctrl_c_stops would be in charge now
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, head + err
    assert len(frame_times(out)) == 60


def test_sigterm_finalises_the_output(tmp_path: Path) -> None:
    """kill (SIGTERM) during the run: the output is finished and playable, not left as a .partial file."""
    n = 600
    src = make_clip(tmp_path / "long.mkv", 64, 48, pts=list(range(0, 40 * n, 40)), audio=(), subtitle=False)
    out = tmp_path / "o.mkv"
    with HeldInput(src, out) as run:
        run.p.terminate()
    assert run.p.returncode == 130 and "Traceback" not in run.err, run.err
    assert "stopped by SIGTERM after frame" in run.err and "Ctrl-C after" not in run.err, run.err  # named as it was
    assert 0 < len(frame_times(out)) < n and not run.part.exists()


def test_mp4_to_a_pipe_keeps_video_in_time_with_audio(tmp_path: Path) -> None:
    """MP4 written to a real pipe (fragmented) starts video and audio where the same run into a file does: with
    empty_moov the B-frame video started two frames after its audio."""
    args = [str(ROOT / "samples" / "bbb_480x270.mkv"), "--variant", "mks", "--max-frames", "12", "-q", "-y"]
    code, err = run_cli(args[0], str(tmp_path / "file.mp4"), *args[1:])
    assert code == 0, err
    with (tmp_path / "piped.mp4").open("wb") as sink:
        p = subprocess.Popen([sys.executable, "-m", "psr2video", args[0], "-", "--format", "mp4", *args[1:]],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        for chunk in iter(lambda: p.stdout.read(65536), b""):  # a pipe: the writer can't seek
            sink.write(chunk)
        assert p.wait(timeout=120) == 0, p.stderr.read().decode()

    def starts(path: Path) -> tuple[float, float]:
        with av.open(str(path)) as c:
            v = next(c.decode(video=0))
        with av.open(str(path)) as c:
            a = next(c.decode(audio=0))
        return float(v.pts * v.time_base), float(a.pts * a.time_base)

    assert starts(tmp_path / "piped.mp4") == pytest.approx(starts(tmp_path / "file.mp4"), abs=1e-3)
    assert frame_times(tmp_path / "piped.mp4") == pytest.approx(frame_times(tmp_path / "file.mp4"), abs=1e-3)


def test_help_states_the_real_encoder_defaults_and_what_q_silences() -> None:
    """--crf/--preset help name every codec's default as the writer applies it (the help listed no VP9, nor
    NVENC's H.264/HEVC defaults); -q says what it silences and what it keeps."""
    from psr2video.video.writer import Writer

    r = CliRunner().invoke(cli, ["upscale", "--help"], terminal_width=200)
    text = " ".join(r.output.split())
    crf_help = text[text.index("--crf"):text.index("--preset")]
    preset_help = text[text.index("--preset"):text.index("--pix-fmt")]
    for codec in ("libx264", "libx265", "libsvtav1", "libvpx-vp9", "h264_nvenc", "hevc_nvenc", "av1_nvenc"):
        opts = Writer._codec_options(codec, None, None)
        crf = opts.get("crf", opts.get("cq"))
        assert f"{float(crf):g} {codec}" in crf_help, (codec, crf, crf_help)
        if "preset" in opts:
            assert f"{opts['preset']} {codec}" in preset_help, (codec, preset_help)
    assert "30 libvpx-vp9" in crf_help and "libvpx-vp9 and ffv1 take none" in preset_help
    q_help = text[text.index("-q, --quiet"):text.index("--workers")]
    assert "No live progress" in q_help and "summary" in q_help and "warnings" in q_help, q_help


def _reader_end(path: Path):
    """Run the reader alone over ``path`` (decode, no model, no encoder) and return its end marker."""
    import queue as _queue

    from psr2video.video.reader import EndItem, Reader, open_input, stream_info

    with open_input(str(path)) as c:
        reader = Reader(c, stream_info(c).color, depth=4)
        reader.prime()
        reader.start()
        while True:
            try:
                item = reader.queue.get(timeout=60)
            except _queue.Empty:
                raise AssertionError(f"the reader of {path} stalled") from None
            if isinstance(item, EndItem):
                reader.join(timeout=10)
                return item


def _encode_with_b_frames(src: Path, dst: Path, frames: int = 40, codec: str = "libx264") -> Path:
    """``frames`` frames of ``src`` re-encoded as players meet them: B-frames and reordering (make_clip has none)."""
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        s = i.streams.video[0]
        v = o.add_stream(codec, rate=25)
        v.width, v.height, v.pix_fmt = s.codec_context.width, s.codec_context.height, "yuv420p"
        if codec == "libx264":
            v.options = {"preset": "veryfast", "crf": "30", "bf": "3"}
        for k, f in enumerate(i.decode(s)):
            if k >= frames:
                break
            f.pict_type = av.video.frame.PictureType.NONE
            o.mux(v.encode(f))
        o.mux(v.encode(None))
    return dst


def test_intact_files_never_read_as_truncated(tmp_path: Path) -> None:
    """The truncation check is tight (two frame periods) but an intact file is never called truncated: the sample,
    PyAV-written CFR and VFR clips in every container we write, B-frames, AVI (whose average rate is its 1000-fps
    tick rate and whose frames carry no duration) and MPEG-TS (no duration either)."""
    from psr2video.paths import SAMPLE_CLIP

    files = [SAMPLE_CLIP] if SAMPLE_CLIP.is_file() else []
    cfr = list(range(0, 1200, 40))
    for ext, codec, pts in [("mkv", "libx264", None), ("mp4", "libx264", None), ("mov", "libx264", None),
                            ("mkv", "libx264", cfr), ("mp4", "libx264", cfr), ("webm", "libvpx-vp9", cfr),
                            ("mkv", "ffv1", cfr), ("avi", "libx264", cfr), ("ts", "libx264", cfr),
                            ("nut", "libx264", cfr), ("mkv", "libx264", list(range(0, 2000, 17))),
                            ("mp4", "libx264", [0, 40, 80, 500, 1500]), ("mkv", "libx264", [0, 40, 80, 500, 1500])]:
        audio = ("aac",) if ext in ("mkv", "mp4", "mov", "ts") else ()
        files.append(make_clip(tmp_path / f"{ext}_{codec}_{len(pts or [])}_{(pts or [0])[-1]}.{ext}", pts=pts,
                               codec=codec, audio=audio, subtitle=ext == "mkv"))
    if SAMPLE_CLIP.is_file():
        files += [_encode_with_b_frames(SAMPLE_CLIP, tmp_path / f"bframes.{ext}") for ext in ("mkv", "mp4", "ts")]
    for f in files:
        end = _reader_end(f)
        assert end.frames > 0 and end.truncated == "" and not end.damaged, (f.name, end)


def test_a_lost_tail_of_a_few_frames_is_said(tmp_path: Path) -> None:
    """A file that loses its last 0.2 s (5 frames at 25 fps) was accepted in silence: the slack was
    max(2 / rate, 0.5 s). Now two frame periods: it is an error naming where the input stops."""
    src = make_clip(tmp_path / "in.mkv", pts=list(range(0, 2000, 40)), audio=(), subtitle=False)
    with av.open(str(src)) as c:
        pos = next(p.pos for p in c.demux(video=0) if p.pts is not None and p.pts >= 1800)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(src.read_bytes()[:pos])
    assert _reader_end(src).truncated == ""
    end = _reader_end(cut)
    assert end.truncated == "input stops at 1.76 s of 2.00 s (truncated or damaged)", end
    out = tmp_path / "o.mkv"
    code, err = run_cli(str(cut), str(out), "--variant", "mks", "-q")
    one_line_error(code, err, "input stops at 1.76 s of 2.00 s (truncated or damaged)", "--ignore-errors")
    assert len(frame_times(out)) == 45


def test_cpu_fallback_of_the_default_model_is_said(clip: Path, tmp_path: Path) -> None:
    """The default (stream) is made for a GPU; on the CPU it took 3.1 s per 720p frame without a word about
    realtime (7x faster): one note when the default runs on the CPU, none when stream was asked for."""
    code, err = run_cli(str(clip), str(tmp_path / "a.mkv"), "--device", "cpu", "-q", "--max-frames", "2")
    assert code == 0 and "note: no GPU here: the default stream model runs on the CPU" in err, err
    code, err = run_cli(str(clip), str(tmp_path / "b.mkv"), "--device", "cpu", "-q", "--max-frames", "2",
                        "--variant", "stream")
    assert code == 0 and "no GPU here" not in err, err


def test_a_bad_in_with_the_default_model_is_one_line(tmp_path: Path) -> None:
    """The default (stream) model was built and its CPU note said before IN was opened: a file that is not a
    video got two lines. The note now comes once IN is read (its first frame), so a user's mistake is one line."""
    bad = tmp_path / "notvid.mkv"
    bad.write_text("hello\n")
    code, err = run_cli(str(bad), str(tmp_path / "o.mkv"), "--device", "cpu")
    one_line_error(code, err, "not a readable video file")
    assert [ln for ln in err.splitlines() if ln.strip()] == [ln for ln in err.splitlines() if ln.startswith("Error")]


@pytest.mark.parametrize("name", ["x.mkv", "x.gif", "x.png", "sub/x.mkv"])
def test_out_below_a_file_is_one_line_before_the_model(clip: Path, tmp_path: Path, name: str) -> None:
    """A file where OUT's folder must be said "matroska can't hold libx264 video (Not a directory)" after the model
    loaded (an animation or a picture: "File exists"); it is named up front now."""
    (tmp_path / "outfile").write_bytes(b"a file")
    out = tmp_path / "outfile" / name
    code, err = run_cli(str(clip), str(out), "--variant", "mks", "-y", *(["--start", "0"] if name == "x.png" else []))
    one_line_error(code, err, f"can't write {out}: {tmp_path / 'outfile'} is a file, not a folder")
    assert "Upscaler(" not in err and (tmp_path / "outfile").read_bytes() == b"a file"


def test_scale_zero_is_refused(clip: Path, tmp_path: Path) -> None:
    """``--scale 0`` was taken as 2 without a word (``scale or 2``)."""
    one_line_error(*run_cli(str(clip), str(tmp_path / "o.mkv"), "--variant", "mks", "--scale", "0"),
                   "unsupported --scale 0")
    assert not (tmp_path / "o.mkv").exists()


@pytest.mark.parametrize("closed,args,words", [(0, ["-", "o.mkv"], "stdin is closed"),
                                               (1, ["IN", "-"], "stdout is closed")])
def test_a_closed_standard_stream_is_one_line(clip: Path, tmp_path: Path, closed: int, args: list, words: str
                                              ) -> None:
    """``psr2video - o.mkv <&-`` and ``psr2video a.mkv - >&-`` ended in an AttributeError traceback after the model
    loaded; one line now, before any heavy import."""
    code = ("import sys\nfrom psr2video.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    sys.stderr.write(f'exit {e.code} {\"torch\" in sys.modules}\\n')\n")
    args = [str(clip) if a == "IN" else a for a in args]
    p = subprocess.run([sys.executable, "-c", code, *args, "--variant", "mks", "-y"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=60, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, preexec_fn=lambda: os.close(closed))
    assert p.stderr.strip().splitlines()[-1] == "exit 1 False", p.stderr
    one_line_error(1, p.stderr, words)
    assert not (tmp_path / "o.mkv").exists()


def test_a_broken_link_as_out_is_not_replaced_without_y(clip: Path, tmp_path: Path) -> None:
    """An OUT that is a link to nothing (``ln -s nowhere/t.mkv d.mkv``) was replaced without -y; with -y the link
    is replaced by the file (its target is not made)."""
    for name in ("d.mkv", "d.png"):
        link = tmp_path / name
        link.symlink_to(tmp_path / "nowhere" / f"t{link.suffix}")
        extra = ["--start", "0"] if name == "d.png" else []
        one_line_error(*run_cli(str(clip), str(link), "--variant", "mks", *extra), f"{link} exists", "-y")
        assert link.is_symlink()
        code, err = run_cli(str(clip), str(link), "--variant", "mks", "-y", "--max-frames", "2", *extra)
        assert code == 0 and link.is_file() and not link.is_symlink(), err
        assert not (tmp_path / "nowhere").exists()


def test_encoder_wording(clip: Path, tmp_path: Path) -> None:
    """"--codec ass is an subtitle encoder"; and --codec png (RGB only) said "--pix-fmt rgb24 is not a planar ..."
    though no --pix-fmt was given: it names the codec now (a grey video still gets grey PNG by itself)."""
    one_line_error(*run_cli(str(clip), str(tmp_path / "o.mkv"), "--codec", "ass"), "--codec ass is a subtitle encoder")
    one_line_error(*run_cli(str(clip), str(tmp_path / "o.mkv"), "--codec", "aac"), "--codec aac is an audio encoder")
    for ext in (".mov", ".mp3"):
        code, err = run_cli(str(clip), str(tmp_path / f"o{ext}"), "--codec", "png", "--variant", "mks")
        one_line_error(code, err, "png encodes no planar YUV/grey format for this video")
        assert "--pix-fmt rgb24" not in err, err


def test_ctrl_c_on_a_pipe_to_a_player_is_a_stopped_run(tmp_path: Path) -> None:
    """`psr2video IN - | player` and Ctrl-C in the terminal: the signal goes to the whole process group, the player
    quits on it too, and the writes that follow hit a closed pipe. That is the stop the user asked for (summary,
    exit 130), not "Error: stdout was closed by the reading program (broken pipe)"."""
    src = make_clip(tmp_path / "long.mkv", 64, 48, pts=list(range(0, 40 * 3000, 40)), audio=(), subtitle=False)
    got = tmp_path / "got.mkv"
    p = subprocess.Popen([sys.executable, "-m", "psr2video", str(src), "-", "--variant", "mks", "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                         preexec_fn=terminal_sigint, process_group=0)  # a shell's pipeline: its own group
    with open(got, "wb") as sink:
        player = subprocess.Popen(["cat"], stdin=p.stdout, stdout=sink, preexec_fn=terminal_sigint,
                                  process_group=p.pid)
    p.stdout.close()
    try:
        deadline = time.monotonic() + 60
        while got.stat().st_size < 20000 and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # frames are flowing to the player
        os.killpg(p.pid, signal.SIGINT)  # what the terminal's Ctrl-C does
        _, err = p.communicate(timeout=60)
    finally:
        player.kill()
        p.kill()
        player.wait()
    assert player.returncode == -signal.SIGINT, err
    if "done: " in err and p.returncode == 0:  # a faster machine finished before the Ctrl-C
        return
    assert p.returncode == 130, err
    assert "broken pipe" not in err and "Error" not in err and "Traceback" not in err, err
    assert "stopped by Ctrl-C after frame" in err and "done: " in err, err


def test_a_part_of_a_numbered_picture_sequence(tmp_path: Path) -> None:
    """A numbered sequence (render/shot.%04d.png --fps 25) is read as a video, so --start/--end cut a part of it
    as of any video; it was refused as "a still picture" (the pattern reads as a picture's name)."""
    from PIL import Image

    render = tmp_path / "render"
    render.mkdir()
    for k in range(30):
        Image.new("RGB", (64, 36), (8 * k, 100, 50)).save(render / f"shot.{1001 + k:04d}.png")
    pattern = str(render / "shot.%04d.png")
    for args, first, n in ((("--start", "0.8"), 20, 10), (("--end", "0.4"), 0, 10),
                           (("--start", "0.2", "--duration", "0.2"), 5, 5)):
        out = tmp_path / f"part{first}.mkv"
        code, err = run_cli(pattern, str(out), "--fps", "25", "--variant", "mks", "-q", "--codec", "ffv1", *args)
        assert code == 0, err
        with av.open(str(out)) as c:
            frames = list(c.decode(video=0))
        assert len(frames) == n, (args, len(frames))
        times = [round(float(f.time), 3) for f in frames]
        assert times == [round(times[0] + 0.04 * i, 3) for i in range(n)] and times[0] < 0.05, (args, times)
        reds = [int(f.to_ndarray(format="rgb24")[10, 10, 0]) for f in frames]
        assert all(abs(r - 8 * (first + i)) <= 3 for i, r in enumerate(reds)), (args, reds)

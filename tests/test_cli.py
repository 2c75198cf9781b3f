"""Top-level CLI: default command routing, help, info, and eval on the plain resamplers."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from psr2video.cli import cli


def test_help_lists_every_command() -> None:
    r = CliRunner().invoke(cli, ["--help"])
    assert r.exit_code == 0
    for name in ("upscale", "eval", "train", "export", "engine", "bench", "info", "vs"):
        assert name in r.output


def test_bare_paths_route_to_upscale() -> None:
    r = CliRunner().invoke(cli, ["definitely-missing.mkv", "out.mkv"])
    assert r.exit_code == 1
    assert "input not found: definitely-missing.mkv" in r.output


def test_info_reports_variants_and_weights() -> None:
    r = CliRunner().invoke(cli, ["info"])
    assert r.exit_code == 0
    assert "realtime (C=16, 1x3)" in r.output and "shipped weights:" in r.output
    assert "spandrel" in r.output and "ORT providers: " in r.output and "CPU" in r.output
    assert "VapourSynth plugin: " in r.output


def test_eval_baselines_table(val_root, tmp_path) -> None:
    out = tmp_path / "r.json"
    r = CliRunner().invoke(cli, ["eval", "--dataset", "Set5", "--no-ssim", "--data-root", str(val_root),
                                 "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "bicubic" in r.output and "33.67" in r.output and "34.13" in r.output  # bicubic, MKS2021
    assert out.is_file()


def test_eval_unknown_dataset_is_one_line(tmp_path) -> None:
    r = CliRunner().invoke(cli, ["eval", "--dataset", "Nope", "--data-root", str(tmp_path)])
    assert r.exit_code == 1 and "dataset 'Nope' not found" in r.output


def test_eval_picture_without_stress_is_refused(tmp_path) -> None:
    """--picture alone drew nothing and exited 0; it needs --stress (or --shipped), said before any work."""
    pic = tmp_path / "card.png"
    r = CliRunner().invoke(cli, ["eval", "--variant", "mks", "--picture", str(pic)])
    assert r.exit_code == 1 and "--picture" in r.output and "--stress" in r.output, r.output
    assert "PSNR" not in r.output and not pic.exists()


def test_eval_bad_device_is_refused_with_baselines_only(tmp_path) -> None:
    """--device bogus was ignored without a word when only the baselines ran (they don't use it)."""
    r = CliRunner().invoke(cli, ["eval", "--variant", "mks", "--device", "bogus", "--data-root", str(tmp_path)])
    assert r.exit_code == 1 and "--device: unknown device 'bogus'" in r.output, r.output
    assert "PSNR" not in r.output and "Traceback" not in r.output


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc (a folder no file can be made in)")
@pytest.mark.parametrize("flag", ["--json", "--picture"])
def test_eval_result_files_checked_before_the_work(flag) -> None:
    """An unwritable --json/--picture is one line at once (it was a traceback after the whole evaluation)."""
    r = CliRunner().invoke(cli, ["eval", "--variant", "mks", "--stress", flag, "/proc/psr2video/out.x"])
    assert r.exit_code == 1 and f"can't write {flag} /proc/psr2video/out.x" in r.output, r.output
    assert "Traceback" not in r.output and "PSNR" not in r.output


def test_eval_unwritable_result_file_leaves_no_folders(tmp_path) -> None:
    """The check made the result file's missing folders, then left them behind (empty) when the file itself
    could not be made: a refused run now leaves the disk as it found it."""
    out = tmp_path / "new" / "deeper" / ("x" * 300 + ".json")  # folders can be made; the name is too long
    r = CliRunner().invoke(cli, ["eval", "--variant", "mks", "--json", str(out), "--data-root", str(tmp_path)])
    assert r.exit_code == 1 and "can't write --json" in r.output, r.output
    assert "Traceback" not in r.output and "PSNR" not in r.output
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("with_lanczos", [False, True])
def test_eval_video_vs_lanczos_column_always_filled(tmp_path, pan_folder, with_lanczos) -> None:
    """The "vs lanczos" column of the --video table was blank unless lanczos was one of the methods: the reference
    is now measured on the same clips either way (and said in a caption when it is not a row of its own)."""
    import json


    folder = pan_folder
    out = tmp_path / "r.json"
    methods = ["--variant", "mks", "--variant", "bicubic"] + (["--variant", "lanczos"] if with_lanczos else [])
    r = CliRunner().invoke(cli, ["eval", *methods, "--dataset", str(folder), "--no-ssim", "--video",
                                 "--video-dataset", str(folder), "--json", str(out)])
    assert r.exit_code == 0, r.output
    rows = {x["method"]: x for x in json.loads(out.read_text())["video"]}
    assert set(rows) == {"mks a=1", "bicubic"} | ({"lanczos"} if with_lanczos else set())
    refs = {(round(x["psnr"] - x["psnr_vs_lanczos"], 6), round(x["temporal"] / x["temporal_vs_lanczos"], 6))
            for x in rows.values()}
    assert len(refs) == 1  # one reference for every row
    assert all(0.5 < x["temporal_vs_lanczos"] < 2 and abs(x["psnr_vs_lanczos"]) < 3 for x in rows.values())
    video = r.output[r.output.index("compressed video"):]
    assert video.count(" dB, ") == len(rows), video  # one filled "vs lanczos" cell per method
    assert ("against lanczos on the same clips" in " ".join(video.split())) is not with_lanczos, video
    if with_lanczos:
        assert rows["lanczos"]["psnr_vs_lanczos"] == 0 and rows["lanczos"]["temporal_vs_lanczos"] == 1


def test_sigterm_unwinds_like_ctrl_c_in_commands_that_clean_up() -> None:
    """SIGTERM during a picture or animation run killed the process and left its hidden temporary file; the
    commands that clean up after themselves take it as they take Ctrl-C (unwind: finally blocks remove the file,
    'interrupted', exit 130)."""
    import signal

    from psr2video.commands.common import interruptible
    from psr2video.errors import Interrupted

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for sig in saved:  # (a runner started in the background has SIGINT ignored: then it stays ignored)
            signal.signal(sig, signal.SIG_DFL)
        interruptible()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with pytest.raises(Interrupted):
                signal.getsignal(sig)(sig, None)
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


def test_a_fifo_or_device_out_is_refused_not_replaced(tmp_path: Path) -> None:
    """OUT a FIFO (or /dev/null, a benchmarking habit) with -y: the finished file was renamed over it, so the FIFO's
    reader got nothing and the FIFO (as root, /dev/null itself) became a regular file. One line now, OUT untouched."""
    import os
    import stat

    from psr2video.paths import SAMPLE_CLIP

    fifo = tmp_path / "out.mkv"
    os.mkfifo(fifo)
    r = CliRunner().invoke(cli, [str(SAMPLE_CLIP), str(fifo), "-y", "--variant", "mks"])
    assert r.exit_code == 1 and "is not a regular file (a device or a FIFO)" in r.output, r.output
    assert f"psr2video IN - > {fifo}" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_long_file_names(tmp_path: Path) -> None:
    """A video named with 246 bytes (82 Japanese characters: an anime episode's title) could not be upscaled: the
    temporary '.NAME.partial.mkv' passed the file system's 255 bytes and the error blamed the codec ('matroska
    can't hold libx264 video (File name too long)'). Its temporary is a digest now; a name past 255 bytes itself
    is one line, not a traceback."""
    import shutil
    import subprocess
    import sys

    from psr2video.paths import SAMPLE_CLIP

    name = "話" * 82  # 246 bytes in UTF-8
    src = tmp_path / f"{name}.mkv"
    shutil.copy(SAMPLE_CLIP, src)
    r = CliRunner().invoke(cli, [str(src), str(tmp_path / f"{name}.x2.mkv"), "--variant", "mks", "--max-frames", "2"])
    assert r.exit_code == 0 and (tmp_path / f"{name}.x2.mkv").exists(), r.output
    too_long = tmp_path / ("y" * 260 + ".mkv")
    p = subprocess.run([sys.executable, "-m", "psr2video", str(src), str(too_long), "--variant", "mks"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and p.stderr.strip().startswith("Error: file name too long (264 bytes"), p.stderr
    assert len(p.stderr.strip().splitlines()) == 1

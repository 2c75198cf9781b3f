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


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc (a folder no file can be made in)")
@pytest.mark.parametrize("flag", ["--json", "--picture"])
def test_eval_result_files_checked_before_the_work(flag) -> None:
    """An unwritable --json/--picture is one line at once (it was a traceback after the whole evaluation)."""
    r = CliRunner().invoke(cli, ["eval", "--baselines", "--stress", flag, "/proc/psr2video/out.x"])
    assert r.exit_code == 1 and f"can't write {flag} /proc/psr2video/out.x" in r.output, r.output
    assert "Traceback" not in r.output and "PSNR" not in r.output

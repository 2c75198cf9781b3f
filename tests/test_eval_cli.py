"""``psr2video eval``'s command line: presets, result files that would overwrite inputs, early refusals, JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from psr2video.cli import cli
from psr2video.commands import eval as eval_cmd
from psr2video.models.registry import list_shipped, shipped_weights_path


def _strict_json(path: Path):
    """The file as JSON, refusing NaN / Infinity (not JSON: other parsers reject them)."""
    def bad(c: str):
        raise ValueError(f"not JSON: {c}")

    return json.loads(path.read_text(), parse_constant=bad)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A folder of three small textured pictures (quick to measure)."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    yy, xx = np.mgrid[0:40, 0:48].astype(np.float32)
    for i in range(3):
        a = np.stack([0.5 + 0.5 * np.sin(xx / (3 + i)), 0.5 + 0.5 * np.cos(yy / 4), ((xx // 5 + yy // 5) % 2)], -1)
        Image.fromarray((a * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


def _run(*args: str):
    return CliRunner().invoke(cli, ["eval", *args])


def _need(*names: str) -> None:
    missing = [n for n in names if n not in list_shipped()]
    if missing:
        pytest.skip(f"no shipped {', '.join(missing)}")


# ---------------------------------------------------------------- item 1: --weights PRESET follows --variant
def test_weights_preset_is_the_variants_file_and_labelled_by_name(tiny, tmp_path) -> None:
    """``--variant realtime --weights clean`` measured stream_x2_clean under the label "clean"."""
    _need("realtime_x2", "realtime_x2_clean", "stream_x2_clean")
    out = tmp_path / "r.json"
    r = _run("--variant", "realtime", "--weights", "clean", "--dataset", str(tiny), "--no-ssim", "--json", str(out))
    assert r.exit_code == 0, r.output
    assert [row["method"] for row in _strict_json(out)] == ["realtime", "realtime_x2_clean"]
    r = _run("--weights", "clean", "--dataset", str(tiny), "--no-ssim", "--json", str(out))  # no --variant: stream
    assert r.exit_code == 0, r.output
    assert [row["method"] for row in _strict_json(out)] == ["stream_x2_clean"]


def test_weights_preset_with_two_variants_is_refused(tiny) -> None:
    _need("realtime_x2", "stream_x2")
    r = _run("--variant", "realtime", "--variant", "stream", "--weights", "clean", "--dataset", str(tiny))
    assert r.exit_code == 1 and "--weights clean" in r.output and "realtime, stream" in r.output, r.output
    assert "PSNR" not in r.output and "Traceback" not in r.output


def test_record_on_a_preset_writes_into_the_file_it_names(tiny, monkeypatch) -> None:
    """``--record`` measured, then failed "weights file not found: clean"."""
    _need("realtime_x2_clean")
    import psr2video.evaluate

    seen = []
    monkeypatch.setattr(psr2video.evaluate, "record_validation", lambda path, rows: seen.append((path, rows)))
    r = _run("--variant", "realtime", "--weights", "clean", "--record", "--dataset", str(tiny), "--no-ssim")
    assert r.exit_code == 0, r.output
    assert [p for p, _ in seen] == [shipped_weights_path("realtime", 2, "clean")]
    assert set(seen[0][1]) == {"tiny"} and seen[0][1]["tiny"]["psnr"] > 20


# ---------------------------------------------------------------- item 2: a result file naming an input
def test_json_naming_the_weights_file_is_refused(tiny, tmp_path) -> None:
    _need("realtime_x2")
    mine = tmp_path / "mine.safetensors"
    shutil.copy(shipped_weights_path("realtime", 2), mine)
    before = mine.read_bytes()
    for flag in ("--json", "--picture"):
        r = _run("--weights", str(mine), "--dataset", str(tiny), "--no-ssim", "--stress", flag, str(mine))
        assert r.exit_code == 1 and f"{flag} {mine} is the file being evaluated" in r.output, r.output
        assert "PSNR" not in r.output and mine.read_bytes() == before


def test_json_naming_the_model_file_is_refused(tiny, tmp_path) -> None:
    """Refused before the model is loaded (a file that can't be read is not replaced either)."""
    model = tmp_path / "x.onnx"
    model.write_bytes(b"not really onnx")
    r = _run("--model", str(model), "--dataset", str(tiny), "--json", str(model))
    assert r.exit_code == 1 and "--json" in r.output and "is the file being evaluated" in r.output, r.output
    assert model.read_bytes() == b"not really onnx"


# ---------------------------------------------------------------- item 3: a result file inside a dataset
def test_picture_or_json_inside_a_dataset_folder_is_refused(tiny, tmp_path) -> None:
    before = (tiny / "p0.png").read_bytes()
    r = _run("--variant", "mks", "--dataset", str(tiny), "--no-ssim", "--json", str(tiny / "p0.png"))
    assert r.exit_code == 1 and "inside the dataset folder" in r.output, r.output
    assert (tiny / "p0.png").read_bytes() == before and "PSNR" not in r.output
    r = _run("--variant", "mks", "--dataset", str(tiny), "--no-ssim", "--json", str(tiny / "sub" / "r.json"))
    assert r.exit_code == 1 and "inside the dataset folder" in r.output, r.output
    assert not (tiny / "sub").exists()
    other = tmp_path / "other"
    shutil.copytree(tiny, other)
    r = _run("--variant", "mks", "--dataset", str(other), "--no-ssim", "--video", "--video-dataset", str(tiny),
             "--json", str(tiny / "r.json"))
    assert r.exit_code == 1 and "inside the dataset folder" in r.output, r.output
    assert not (tiny / "r.json").exists()


def test_stress_picture_on_a_dataset_picture_is_refused(tiny) -> None:
    """``--stress --picture set5/baby.png`` replaced the HR picture with the stress card."""
    before = (tiny / "p1.png").read_bytes()
    r = _run("--variant", "realtime", "--dataset", str(tiny), "--no-ssim", "--stress", "--picture",
             str(tiny / "p1.png"))
    assert r.exit_code == 1 and f"--picture {tiny / 'p1.png'} is inside the dataset folder" in r.output, r.output
    assert (tiny / "p1.png").read_bytes() == before


# ---------------------------------------------------------------- item 5: --video-dataset checked first
def test_video_dataset_is_checked_before_the_clean_table(tiny, tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "r.json"
    r = _run("--variant", "mks", "--dataset", str(tiny), "--no-ssim", "--video", "--video-dataset", str(empty),
             "--json", str(out))
    assert r.exit_code == 1 and "--video-dataset" in r.output and "has no images" in r.output, r.output
    assert "PSNR" not in r.output and not out.exists()
    # pictures too small for the pans: said before the clean table too
    r = _run("--variant", "mks", "--dataset", str(tiny), "--no-ssim", "--video", "--video-dataset", str(tiny),
             "--json", str(tmp_path / "r.json"))
    assert r.exit_code == 1 and "large enough for 240x160 pans" in r.output, r.output
    assert "PSNR" not in r.output and not out.exists()


# ---------------------------------------------------------------- item 7: valid JSON
def test_json_has_no_nan_or_infinity(tmp_path) -> None:
    """NaN (SSIM under --no-ssim) and Infinity (PSNR of an exact match: a flat picture) are written as null."""
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, c in enumerate((90, 160)):
        Image.new("RGB", (32, 32), (c, c, c)).save(flat / f"f{i}.png")
    out = tmp_path / "r.json"
    r = _run("--variant", "bicubic", "--dataset", str(flat), "--no-ssim", "--json", str(out))
    assert r.exit_code == 0, r.output
    rows = _strict_json(out)
    assert rows[0]["ssim"] is None and rows[0]["psnr"] is None
    assert all(im["ssim"] is None and im["psnr"] is None for im in rows[0]["images"])


def test_finite_maps_nested_values() -> None:
    got = eval_cmd._finite({"a": [1.0, float("nan"), {"b": float("-inf")}], "c": (float("inf"), 2), "d": "x"})
    assert got == {"a": [1.0, None, {"b": None}], "c": [None, 2], "d": "x"}


# ---------------------------------------------------------------- item 9: --shipped at a scale with no files
def test_shipped_at_a_scale_without_shipped_files_is_refused(tiny) -> None:
    if any(n.endswith("_x4") or "_x4_" in n for n in list_shipped()):
        pytest.skip("x4 weights are shipped")
    r = _run("--shipped", "--scale", "4", "--dataset", str(tiny), "--clips", "1", "--no-ssim")
    assert r.exit_code == 1 and "--shipped: no shipped weights at x4" in r.output, r.output
    assert "PSNR" not in r.output


# ---------------------------------------------------------------- minor
@pytest.mark.parametrize("args, named", [
    (["--clips", "2"], "--clips"),
    (["--crf", "30"], "--crf"),
    (["--video-dataset", "Set14"], "--video-dataset"),
    (["--clips", "2", "--crf", "30"], "--clips, --crf"),
])
def test_video_options_without_video_are_refused(tiny, args, named) -> None:
    r = _run("--variant", "mks", "--dataset", str(tiny), "--no-ssim", *args)
    assert r.exit_code == 1 and named in r.output and "add --video" in r.output, r.output
    assert "PSNR" not in r.output


def test_record_without_weights_is_refused(tiny) -> None:
    r = _run("--variant", "mks", "--dataset", str(tiny), "--no-ssim", "--record")
    assert r.exit_code == 1 and "--record" in r.output and "--weights" in r.output, r.output
    assert "PSNR" not in r.output


def test_table_title_says_ssim_only_when_measured(tiny) -> None:
    r = _run("--variant", "bicubic", "--dataset", str(tiny), "--no-ssim")
    assert r.exit_code == 0 and "x2 PSNR-Y" in r.output and "SSIM" not in r.output, r.output
    r = _run("--variant", "bicubic", "--dataset", str(tiny))
    assert r.exit_code == 0 and "x2 PSNR-Y / SSIM-Y" in r.output, r.output


def test_progress_lines_on_a_terminal_only(tiny, monkeypatch) -> None:
    r = CliRunner().invoke(cli, ["eval", "--variant", "bicubic", "--dataset", str(tiny), "--no-ssim"])
    assert r.exit_code == 0 and "measuring" not in r.output, r.output
    monkeypatch.setattr(eval_cmd, "_stderr_is_terminal", lambda: True)
    r = CliRunner().invoke(cli, ["eval", "--variant", "bicubic", "--variant", "mks", "--dataset", str(tiny),
                                 "--no-ssim"])
    assert r.exit_code == 0, r.output
    assert "measuring bicubic on tiny ..." in r.stderr and "measuring mks a=1 on tiny ..." in r.stderr
    assert "measuring" not in r.stdout

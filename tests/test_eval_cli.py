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
    r = _run("--variant", "mks", "--dataset", str(tiny), "--no-ssim", "--json", str(tiny / "sub" / "r.png"))
    assert r.exit_code == 1 and "inside the dataset folder" in r.output, r.output
    assert not (tiny / "sub").exists()
    other = tmp_path / "other"
    shutil.copytree(tiny, other)
    r = _run("--variant", "mks", "--dataset", str(other), "--no-ssim", "--video", "--video-dataset", str(tiny),
             "--json", str(tiny / "r.webp"))
    assert r.exit_code == 1 and "inside the dataset folder" in r.output, r.output
    assert not (tiny / "r.webp").exists()
    # a results file that is no picture harms nothing there (the next run does not measure it): written
    r = _run("--variant", "mks", "--dataset", str(tiny), "--no-ssim", "--json", str(tiny / "r.json"))
    assert r.exit_code == 0 and (tiny / "r.json").is_file(), r.output


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


def _chroma_edges(h: int = 32, w: int = 48) -> np.ndarray:
    """uint8 RGB with sharp colour edges every 4 px (red / blue / green blocks on grey): what nearest and
    interpolated chroma tell apart."""
    a = np.full((h, w, 3), 128, np.uint8)
    cols = [(220, 30, 30), (30, 30, 220), (30, 200, 30)]
    for y in range(0, h, 4):
        for x in range(0, w, 4):
            if (x // 4 + y // 4) % 2:
                a[y:y + 4, x:x + 4] = cols[(x // 4) % 3]
    return a


def _as_the_video_path_reads(planes_frame) -> np.ndarray:
    """The video command's conversion of a yuv420p frame's planes (BT.601 limited, as swscale encoded it)."""
    import torch

    from psr2video.video.color import RANGE_LIMITED, SPACE_SMPTE170M, decide_color, yuv_to_rgb

    h, w = planes_frame.height, planes_frame.width
    info = decide_color(SPACE_SMPTE170M, RANGE_LIMITED, None, None, h, "yuv420p")
    p = [np.frombuffer(pl, np.uint8).reshape(-1, pl.line_size)[:hh, :ww].copy()
         for pl, (ww, hh) in zip(planes_frame.planes, ((w, h), (w // 2, h // 2), (w // 2, h // 2)), strict=True)]
    rgb = yuv_to_rgb(*(torch.from_numpy(x)[None] for x in p), 8, info)
    return (rgb[0].permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


def test_the_video_pans_are_decoded_as_the_video_command_reads_a_video() -> None:
    """The --video pans are decoded with the video path's conversion (interpolated chroma), not swscale's
    to_ndarray (the nearest chroma sample): the models were measured on another picture than users give them
    (B100 pans: lanczos 29.71 -> 29.81 dB, stream_x2's lead +0.85 -> +0.81 dB). CRF 0 is lossless, so the decoded
    planes are the encoded ones."""
    import av

    from psr2video.video_eval import compress

    rgb = _chroma_edges()
    yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")  # as compress encodes
    want = _as_the_video_path_reads(yuv)
    nearest = yuv.to_ndarray(format="rgb24")
    got = compress([rgb, rgb], crf=0)
    assert np.abs(nearest.astype(int) - want).max() > 20  # the two conversions differ at these edges
    for f in got:
        assert np.abs(f.astype(int) - want).max() <= 1


def test_the_training_video_degradation_is_decoded_as_the_video_command_reads_a_video() -> None:
    """The training's compressed LR (``[data.degrade] video``) is decoded with the video path's conversion too
    (float RGB, interpolated chroma): the video files had learnt swscale's blocky chroma, a picture the video
    command never hands them. (Beside the eval's test: the two share the reference.)"""
    import av
    import torch

    from psr2video.train.degrade import clip_roundtrip_frames

    rgb = _chroma_edges()
    yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    want = _as_the_video_path_reads(yuv)
    x = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
    got = clip_roundtrip_frames([x, x], "libx264", 0, "ultrafast", zerolatency=True)
    for f in got:
        assert f.dtype == torch.float32 and f.shape == x.shape
        assert np.abs((f.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(int) - want).max() <= 1

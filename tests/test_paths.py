"""One place for paths (data, cache, profiles), the atomic writer and the one PSNR."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from psr2video import paths
from psr2video.cli import cli
from psr2video.fileio import atomic_path, sha256_file, write_atomic
from psr2video.metrics import psnr, psnr_y


def test_data_root_follows_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("PSR2VIDEO_DATA", raising=False)
    assert paths.data_root() == paths.CHECKOUT.parent / "shared" / "data"
    monkeypatch.setenv("PSR2VIDEO_DATA", str(tmp_path))
    assert paths.data_path("val", "Set5") == tmp_path / "val" / "Set5"


def test_suite_never_uses_the_real_cache(monkeypatch, tmp_path) -> None:
    real = Path.home() / ".cache" / "psr2video"
    assert not paths.cache_root().is_relative_to(real)  # the conftest fixture's private cache
    monkeypatch.setenv("PSR2VIDEO_CACHE", str(tmp_path))
    assert paths.engines_dir() == tmp_path / "engines"


def test_profiles_builtin_and_override(monkeypatch, tmp_path) -> None:
    from psr2video.runtime.trt_backend import load_profiles

    monkeypatch.delenv("PSR2VIDEO_PROFILES", raising=False)
    builtin = load_profiles()
    assert builtin["1080p"] == {"min": [64, 64], "opt": [1920, 1080], "max": [2048, 1152], "batch": [1, 1, 2]}
    extra = tmp_path / "p.toml"
    extra.write_text('[profiles.1080p]\nmin = [32, 32]\nopt = [1920, 1080]\nmax = [1920, 1088]\n'
                     '[profiles.square]\nmin = [64, 64]\nopt = [512, 512]\nmax = [1024, 1024]\n')
    monkeypatch.setenv("PSR2VIDEO_PROFILES", str(extra))
    got = load_profiles()
    assert got["square"]["opt"] == [512, 512] and got["1080p"]["min"] == [32, 32] and "720p" in got
    monkeypatch.setenv("PSR2VIDEO_PROFILES", str(tmp_path / "nope.toml"))  # named, missing: said, not skipped
    with pytest.raises(ValueError, match=r"nope.toml not found \(from \$PSR2VIDEO_PROFILES\)"):
        load_profiles()
    (tmp_path / "bad.toml").write_text("x = \n")
    monkeypatch.setenv("PSR2VIDEO_PROFILES", str(tmp_path / "bad.toml"))
    with pytest.raises(ValueError, match="profile file .*bad.toml: Invalid value"):
        load_profiles()


def test_eval_reads_the_data_folder_from_the_environment(monkeypatch, tmp_path) -> None:
    """Without --data-root, eval looks in $PSR2VIDEO_DATA/val (a clone not beside ../shared works)."""
    folder = tmp_path / "val" / "Tiny"
    folder.mkdir(parents=True)
    y, x = np.mgrid[0:48, 0:64]
    for i in range(2):
        rgb = np.stack([(x * 4 + i * 30) % 256, (y * 5) % 256, (x + y) * 2 % 256], -1).astype(np.uint8)
        Image.fromarray(rgb).save(folder / f"img{i}.png")
    monkeypatch.setenv("PSR2VIDEO_DATA", str(tmp_path))
    out = tmp_path / "r.json"
    r = CliRunner().invoke(cli, ["eval", "--variant", "bicubic", "--dataset", "Tiny", "--no-ssim", "--json", str(out)])
    assert r.exit_code == 0, r.output
    rows = json.loads(out.read_text())
    assert [row["dataset"] for row in rows] == ["Tiny"] and 10 < rows[0]["psnr"] < 60


def test_atomic_path_replaces_whole_or_not_at_all(tmp_path) -> None:
    target = tmp_path / "sub" / "f.bin"
    write_atomic(target, b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("build failed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.bin"]  # no temp file left
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert sha256_file(target) == "11507a0e2f5e69d5dfa40a62a1bd7b6ee57e6bcd85c67c9b8431b36fff21c437"


def test_one_psnr_for_tensors_arrays_and_the_y_protocol() -> None:
    a = torch.zeros(1, 3, 4, 4)
    b = torch.full((1, 3, 4, 4), 0.1)
    assert psnr(a, b) == pytest.approx(20.0)
    assert psnr(a.numpy(), b.numpy()) == pytest.approx(20.0, abs=1e-5)
    assert psnr(a, a) == float("inf")
    img = np.zeros((8, 8, 3), np.uint8)
    assert psnr_y(img, img) == float("inf")


def test_a_cache_problem_names_the_folder_and_the_variable(monkeypatch, tmp_path) -> None:
    e = FileNotFoundError(2, "No such file or directory", "/proc/psr")
    monkeypatch.setenv("PSR2VIDEO_CACHE", "/proc/psr")
    msg = paths.cache_problem(Path("/proc/psr/engines"), e)
    assert "/proc/psr/engines" in msg and "No such file or directory" in msg and "from $PSR2VIDEO_CACHE" in msg
    monkeypatch.delenv("PSR2VIDEO_CACHE")
    msg = paths.cache_problem(tmp_path, e)
    assert "from the user cache folder" in msg and "set $PSR2VIDEO_CACHE" in msg
    assert issubclass(paths.CacheError, OSError)

"""The one picture loader shared by evaluation, training, export calibration and the stress suite."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from psr2video import pictures
from psr2video.paths import SAMPLE_CLIP


def test_folders_images_and_arrays(tmp_path):
    rgb = np.zeros((5, 7, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(tmp_path / "b.png")
    Image.fromarray(rgb[..., 0]).convert("P").save(tmp_path / "a.bmp")  # palette: converted to RGB
    (tmp_path / "notes.txt").write_text("not an image")
    files = pictures.list_images(tmp_path)
    assert [p.name for p in files] == ["a.bmp", "b.png"]
    assert pictures.rgb_array(files[1]).shape == (5, 7, 3)
    t = pictures.to_tensor(pictures.load_rgb(files[1]))
    assert t.shape == (3, 5, 7) and t.dtype == torch.float32 and float(t[0].min()) == 1.0 and float(t[1].max()) == 0
    named = pictures.image_tensors(tmp_path, limit=1)
    assert [n for n, _ in named] == ["a.bmp"] and named[0][1].shape == (1, 3, 5, 7)
    assert [n for n, _ in pictures.frames_from(files[1])] == ["b.png"]


def test_missing_and_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match="training folder not found"):
        pictures.list_images(tmp_path / "nope", what="training")
    with pytest.raises(FileNotFoundError, match="no images"):
        pictures.list_images(tmp_path)
    assert pictures.image_tensors(tmp_path) == []
    with pytest.raises(ValueError, match="no images"):
        pictures.frames_from(tmp_path)
    with pytest.raises(FileNotFoundError):
        pictures.frames_from(tmp_path / "missing.mkv")


@pytest.mark.skipif(not SAMPLE_CLIP.is_file(), reason="the sample clip is not in this checkout")
def test_video_frames_by_stride():
    frames = pictures.video_frames(SAMPLE_CLIP, count=3, stride=50, start=10)
    assert [n.rsplit("#", 1)[1] for n, _ in frames] == ["10", "60", "110"]
    assert frames[0][1].shape == (1, 3, 270, 480) and 0.0 <= float(frames[0][1].min()) <= float(frames[0][1].max()) <= 1

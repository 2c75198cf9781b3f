"""Every swscale conversion runs single-threaded (psr2video/video/sws.py): FFmpeg's threaded swscale, PyAV 19's
default, now and then wrote a wrong run of pixels (a decoded 33x17 yuv420p10le frame to yuv444p10le: 8 luma
samples of one row set to 512 in 10 of 3,000 tries; 0 of 9,000 on one thread). A race is no test's to catch
reliably, so these check the rule itself."""

from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np

from psr2video.video import sws

PACKAGE = Path(__file__).resolve().parents[1] / "psr2video"


def test_conversions_ask_for_one_swscale_thread() -> None:
    asked = {}

    class Frame:
        format = av.VideoFormat("yuv420p")

        def reformat(self, **kwargs):
            asked.update(kwargs)
            return self

        def to_ndarray(self):
            return np.zeros((2, 2), np.uint8)

    sws.reformat(Frame(), format="rgb24")
    assert asked == {"format": "rgb24", "threads": 1}
    asked.clear()
    sws.to_ndarray(Frame(), "gray")
    assert asked == {"format": "gray", "threads": 1}


def test_no_conversion_bypasses_the_single_threaded_path() -> None:
    """``frame.reformat(...)`` and ``frame.to_ndarray(format=...)`` (a reformat inside) appear only in sws.py."""
    pattern = re.compile(r"\.reformat\(|to_ndarray\(format=")
    found = [f"{p.relative_to(PACKAGE)}:{i}" for p in PACKAGE.rglob("*.py") if p.name != "sws.py"
             for i, line in enumerate(p.read_text().splitlines(), 1)
             if pattern.search(line) and "sws.reformat(" not in line]
    assert found == []


def test_a_real_conversion_is_unchanged() -> None:
    f = av.VideoFrame.from_ndarray(np.arange(48 * 3, dtype=np.uint8).reshape(4, 12, 3), format="rgb24")
    assert np.array_equal(sws.to_ndarray(f, "rgb24"), f.to_ndarray())
    assert np.array_equal(sws.to_ndarray(sws.reformat(f, format="yuv444p"), "rgb24").astype(int),
                          f.reformat(format="yuv444p").to_ndarray(format="rgb24").astype(int))

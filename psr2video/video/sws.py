"""swscale conversions (``VideoFrame.reformat``), always single-threaded.

PyAV 19 runs swscale on all CPUs by default (``threads=0``), and FFmpeg 9's threaded swscale now and then wrote a
wrong run of pixels: a decoded 33x17 yuv420p10le FFV1 frame converted to yuv444p10le came back with 8 luma samples
of one row set to 512 in 10 of 3,000 tries (0 of 9,000 with one thread). Every conversion of the project goes
through here so that none is left on the threaded path; the pipeline runs the reader beside the model and the
encoder, so one swscale thread costs no throughput there.
"""

from __future__ import annotations

from typing import Any

THREADS = 1


def reformat(frame: Any, **kwargs: Any) -> Any:
    """``frame.reformat(**kwargs)`` on one swscale thread."""
    return frame.reformat(threads=THREADS, **kwargs)


def to_ndarray(frame: Any, fmt: str) -> Any:
    """``frame`` as a numpy array in pixel format ``fmt`` (converted on one swscale thread where it must be)."""
    return (frame if frame.format.name == fmt else reformat(frame, format=fmt)).to_ndarray()

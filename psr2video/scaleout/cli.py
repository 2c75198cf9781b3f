"""The ``--workers N`` / ``--ray ADDRESS`` branch of ``psr2video IN OUT``: checks, run, one-line errors."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import click

# upscale options that have no meaning (or no safe meaning) when the video is split across workers
UNSUPPORTED = {"max_frames": "--max-frames", "overlay_fps": "--overlay-fps", "in_fmt": "--input-format",
               "deinterlace": "--deinterlace"}


def _unwritable(output: str) -> str | None:
    """Why nothing can be written next to OUT (the work folder, its lock and OUT itself), or None."""
    import tempfile
    from pathlib import Path

    from ..fileio import beside
    from ..video.writer import describe_output_error

    out = Path(output)
    try:  # a short name where OUT's is near the longest a file name can be (a single run writes it)
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=beside(out, ".", 14, keep_ext=False).name,
                                         suffix=".probe"):
            return None
    except OSError as e:
        return describe_output_error(output, e)


def scaleout_upscale(input: str, output: str, *, workers: int, address: str | None, segment_seconds: float,
                     keep_work: bool, variant: str, scale: int, weights: str | None, backend: str,
                     precision: str | None, tile: int, device: str, batch: int, codec: str, crf: float | None,
                     tta: bool = False, size: Any = None, crop: Any = None, trim: Any = None,
                     preset: str | None, pix_fmt: str | None, fmt: str | None, hwaccel: str | None,
                     ignore_errors: bool, quiet: bool, error: type[Exception], **unused: Any) -> None:
    """Run one upscale on Ray; ``error`` is the command's one-line user error class."""
    from ..fileio import sha256_file
    from ..video.pipeline import output_container
    from . import RAY_HINT, Interrupted, Job, ScaleoutError, Settings, run
    from .manifest import WorkDirBusy

    for key, flag in UNSUPPORTED.items():
        if unused.get(key):
            raise error(f"{flag} can't be combined with --workers/--ray")
    try:
        import ray  # noqa: F401
    except ImportError:
        raise error(RAY_HINT) from None
    if "-" in (input, output):
        raise error("--workers/--ray need a file for IN and OUT (segments are cut by seeking), not '-'")
    if (why := _unwritable(output)) is not None:  # before the scan and Ray's start-up, as a single run says it
        raise error(why)
    if workers < 0:
        raise error("--workers must be >= 0 (0: one per GPU, or one per two CPU cores)")
    if segment_seconds <= 0:
        raise error("--segment-seconds must be > 0")
    settings = Settings(variant, scale, sha256_file(weights) if weights else None, backend,
                        precision, tile, batch, codec, crf, preset, pix_fmt, tta,
                        None if size is None else str(size), str(crop) if crop else None,
                        None if trim is None else f"{trim.start}-{'' if trim.end is None else trim.end}",
                        container=output_container(output, fmt))
    job = Job(input, output, settings, weights=weights, device=device, hwaccel=hwaccel, fmt=fmt, workers=workers,
              address=address, segment_seconds=segment_seconds, keep_work=keep_work, trim=trim)
    stop = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        by = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        click.echo(f"\nstopping ({by}; finished segments are kept; Ctrl-C again to abort)...", err=True)

    # SIGTERM (kill, a service manager, a batch scheduler) stops as Ctrl-C does, as in a single-process run; a
    # signal ignored by whoever started us stays ignored
    main = threading.current_thread() is threading.main_thread()
    old = {sig: signal.signal(sig, on_sigint) for sig in (signal.SIGINT, signal.SIGTERM)
           if main and signal.getsignal(sig) is not signal.SIG_IGN}
    notes: list[str] = []

    def warn(msg: str) -> None:
        notes.append(msg)
        click.echo(msg, err=True)

    try:
        s = run(job, warn=warn, quiet=quiet, stop=stop)
    except Interrupted as e:
        click.echo(f"psr2video: {e}", err=True)
        sys.exit(130)
    except KeyboardInterrupt:  # a second Ctrl-C (before the first could stop the run cleanly)
        click.echo(f"psr2video: {aborted_line(output)}", err=True)
        sys.exit(130)
    except (ScaleoutError, WorkDirBusy) as e:
        raise error(str(e)) from None
    except Exception as e:
        from ..video.reader import InputError
        from ..video.writer import OutputError

        if isinstance(e, (InputError, OutputError)):
            raise error(str(e)) from None
        raise
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    click.echo(done_line(s, output), err=True)
    from ..video.pipeline import count_lines

    c = s.counts
    for line in count_lines(c.get("timed_pts", 0), c.get("fixed_pts", 0), [], c.get("nonfinite", 0)):
        click.echo(line, err=True)
    damaged = [n for n in notes if "damaged input" in n]
    problems = [f"damaged input in {len(damaged)} segment(s)"] if damaged else []
    if s.truncated:
        problems.append(s.truncated)
    if problems:
        if ignore_errors:
            click.echo(f"warning: {'; '.join(problems)} (ignored: --ignore-errors)", err=True)
        else:
            raise error(f"{'; '.join(problems)}; the frames that decoded were written to {output} "
                        "(use --ignore-errors to accept)")


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def done_line(s: Any, output: str) -> str:
    """The summary of a scale-out run (a ``Summary``): the speed is of the frames upscaled in this run, not of
    those of segments resumed from the work folder."""
    kind = "GPU" if s.placement.device == "cuda" else f"CPU ({_n(s.placement.threads, 'thread')} each)"
    fps = s.upscaled / s.seconds if s.seconds else 0.0
    now = f" ({s.upscaled} upscaled in this run)" if s.reused else ""
    return (f"done: {_n(s.frames, 'frame')}{now} in {s.seconds:.1f} s ({fps:.1f} fps) on {s.workers} {kind} "
            f"worker(s), {_n(s.segments, 'segment')} ({len(s.redone)} upscaled, {len(s.reused)} resumed) -> {output}")


def aborted_line(output: str) -> str:
    """What a second Ctrl-C leaves: OUT is not written (the join writes it under a temporary name); the finished
    segments stay for a re-run."""
    from .manifest import work_dir

    wd = work_dir(output)
    kept = any(wd.glob("*.nut")) if wd.is_dir() else False
    return "aborted; partial output removed" + (f" (finished segments are kept in {wd}; run the same command "
                                                "again to resume)" if kept else "")

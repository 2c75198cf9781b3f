"""One video run from the command line: the HUD around the pipeline, Ctrl-C/SIGTERM that finalise the output,
one-line errors for a user's file or setting, and the summary. Shared by ``psr2video IN OUT`` and folders."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import click

from ..errors import PsrError, UserError, user_line


def warn(msg: str) -> None:
    click.echo(msg, err=True)


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def run_video(up, opts, title: str, quiet: bool, stop: threading.Event, say_backend: bool = False,
              first_note=None):
    """One video through the pipeline with the HUD: (the pipeline's Result, the stats' snapshot). A user's file
    or setting raises a one-line UserError; a bug in our code keeps its traceback. ``first_note`` (a callable)
    says its piece once IN is open and its first frame read, before the start line: a bad IN is one line."""
    from ..video import pipeline
    from ..video.hud import Hud, Stats

    stats = Stats()
    hud = Hud(stats, title, quiet=quiet)

    def started(st, res):
        if first_note is not None:
            first_note()
        part = f", part {opts.trim.describe()}" if getattr(opts, "trim", None) is not None else ""
        warn(f"{opts.input} -> {opts.output}: {up!r}, {res.out_size[0]}x{res.out_size[1]} {res.pix_fmt} "
              f"{opts.codec}, colour {res.color.describe() if res.color else '?'}{part}")
        if say_backend:
            warn(f"backend auto -> {up.runner.name}: {up.backend_reason}")
        hud.start()

    try:
        res = pipeline.run(opts, up, stop=stop, stats=stats, warn=warn, on_start=started)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # a user's file or setting: one line; a bug in our code: its traceback
        err = as_user_error(e, opts.output)
        if err is e:
            raise
        raise err from None
    finally:
        hud.stop()
    return res, stats.snapshot()


@contextlib.contextmanager
def ctrl_c_stops() -> Iterator[threading.Event]:
    """The first Ctrl-C (or SIGTERM) sets the yielded event (the pipeline finishes cleanly); a second one aborts.
    Before and after, the command line's own handler (``cli.quit_now``: one line, exit 130) is in charge."""
    stop = threading.Event()
    stop.by = "Ctrl-C"  # what stopped the run, for the summary
    hits = [0]

    def on_sigint(signum, frame):
        hits[0] += 1
        if hits[0] > 1:
            raise KeyboardInterrupt
        stop.by = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        stop.set()
        warn(f"\nstopping ({stop.by}; Ctrl-C again to abort)...")

    # SIGTERM (kill, a service manager) stops the same way, so the output is finalised, not left half-written;
    # a job started in the background with SIGINT ignored keeps ignoring it, as cli.main does
    main = threading.current_thread() is threading.main_thread()
    old = {sig: signal.signal(sig, on_sigint) for sig in (signal.SIGINT, signal.SIGTERM)
           if main and signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        yield stop
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def as_user_error(e: Exception, output: str) -> Exception:
    """The one-line UserError for a failure the user can fix, or ``e`` itself (a bug keeps its traceback)."""
    line = user_line(e)
    if line is None and isinstance(e, OSError) and e.strerror:  # e.g. EPIPE or ENOSPC on the output
        line = f"{e.strerror}: {output}"
    if line is None:
        return e
    if output == "-" and isinstance(e, PsrError):
        _silence_stdout()  # nothing more may go to a closed or full stdout (not even Python's final flush)
    return UserError(line)


def written_size(output: str, stats) -> int:
    """OUT's size as written: the whole file (audio, subtitles, the container's own bytes), not the video's
    bytes the stats fall back on once the temporary name they watch is gone."""
    try:
        return Path(output).stat().st_size
    except OSError:
        return stats.out_size()


def report(res, stats, output: str, ignore_errors: bool, stopped_by: str = "Ctrl-C") -> None:
    """The summary after a run; exit 130 after Ctrl-C, and an error for a damaged input unless accepted."""
    fps = res.frames / res.seconds if res.seconds else 0.0
    where = "stdout" if output == "-" else output
    if res.stopped and not res.frames:  # Ctrl-C while setting up: nothing written, OUT untouched
        warn(f"stopped by {stopped_by} before the first frame; nothing written")
        sys.exit(130)
    rt = stats.realtime  # media time over wall time: frames over the nominal rate is wrong for VFR
    warn(f"done: {res.frames} frame{'s' if res.frames != 1 else ''} in {res.seconds:.1f} s ({fps:.1f} fps"
          + (f", {rt:.2f}x realtime" if rt is not None else "") + f") -> {where}"
          + (f" ({written_size(output, stats) / 2**20:.1f} MiB)" if output != "-" else ""))
    if stats.stage_total:
        warn("stage time (s): " + ", ".join(f"{k} {v:.2f}" for k, v in stats.stage_total.items()))
    from ..video.pipeline import count_lines

    for line in count_lines(res.timed_pts, res.fixed_pts, res.notes, res.nonfinite):
        warn(line)
    if res.stopped:
        at = (f"the last at {res.stop_time:.2f} s of the input" if res.stop_time == res.stop_time
              else "its time in the input is unknown: no timestamps, no frame rate")  # not a made-up 0.00 s
        if getattr(res, "pipe_closed", False):  # `IN - | player`: the player quit on the same Ctrl-C
            _silence_stdout()  # nothing more may go to the closed pipe (not even Python's final flush)
            warn(f"stopped by {stopped_by} after frame {res.frames} ({at}); the program reading stdout quit "
                 "on it too, before the output's end was written")
        else:
            warn(f"stopped by {stopped_by} after frame {res.frames} ({at}); the output is finalised and playable")
        sys.exit(130)
    problems = [f"damaged input at {', '.join(map(str, res.damaged))}"] if res.damaged else []
    if res.truncated:
        problems.append(res.truncated)
    if problems:
        msg = "; ".join(problems)
        if ignore_errors:
            warn(f"warning: {msg} (ignored: --ignore-errors)")
        else:
            raise UserError(f"{msg}; the frames that decoded were written to {where} "
                            "(use --ignore-errors to accept)")

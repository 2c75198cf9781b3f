"""The driver: plan segments, hand them to Ray tasks (one GPU or a few CPU threads each), keep what comes
back in the work folder, join. Ray schedules, places and retries; this file only feeds it in order.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from bisect import bisect_left
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..errors import first_line
from ..video.crop import Crop
from . import split
from .hud import Board, Progress, ScaleoutHud
from .join import JoinError, join, source_lengths
from .manifest import WorkDir
from .tasks import RETRY_ON, Placement, SegmentError, Settings, best_effort, upscale_segment

RAY_HINT = "--workers/--ray run on Ray, which is not installed: pip install 'psr2video[ray]'"


class ScaleoutError(Exception):
    """A user-facing failure of a scale-out run (one line)."""


class Interrupted(ScaleoutError):
    """Stopped by the user; the finished segments stay in the work folder."""


@dataclass
class Job:
    input: str
    output: str
    settings: Settings
    weights: str | None = None
    device: str = "auto"  # auto: GPUs when the Ray cluster has them, else CPU
    hwaccel: str | None = None
    fmt: str | None = None
    workers: int = 0  # 0: one per GPU, or one per two CPU cores
    address: str | None = None  # None: a local Ray instance; "auto" or host:port: an existing cluster
    segment_seconds: float = 60.0
    retries: int = 2
    keep_work: bool = False
    trim: Any = None  # --start/--end: a Trim (video/trim.py), only that part upscaled and joined


@dataclass
class Summary:
    frames: int  # in OUT
    segments: int
    redone: list[int]
    reused: list[int]
    seconds: float
    workers: int
    placement: Placement
    work_dir: Path
    timings: dict[str, float] = field(default_factory=dict)  # seconds: plan (scan + Ray), upscale (+ cuts), join
    truncated: str = ""  # the source ends before the end it announces (as the single-process run says it)
    # the single-process run's end-of-run counts, summed over the segments (and the join's own nudges):
    # timed_pts, fixed_pts, nonfinite
    counts: dict[str, int] = field(default_factory=dict)
    upscaled: int = 0  # frames upscaled by this run (not those of segments resumed from the work folder)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ScaleoutError(RAY_HINT) from None
    return ray


def _unreachable(address: str, timeout: float = 5.0) -> str | None:
    """Why nothing answers at a ``HOST:PORT`` Ray address (a TCP connect to its GCS), or None. 'auto' and
    ``ray://`` addresses are left to Ray."""
    import socket

    if address == "auto" or "://" in address or ":" not in address:
        return None
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return None
    except ValueError:
        return f"{port!r} is not a port"
    except OSError as e:
        return "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))


def _connect(ray: Any, job: Job) -> bool:
    """Start or join Ray; True when this run started it (and shuts it down)."""
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    if job.address:
        if (why := _unreachable(job.address)) is not None:  # ray.init retries a dead address for minutes
            raise ScaleoutError(f"can't join the Ray cluster at {job.address}: {why} (is `ray start --head` "
                                "running there?)")
        try:
            ray.init(address=job.address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ScaleoutError(f"can't join the Ray cluster at {job.address}: {first_line(e)}") from None
        return True
    gpus = 0
    if job.device != "cpu":
        import torch

        gpus = torch.cuda.device_count()
    try:
        ray.init(num_cpus=os.cpu_count() or 1, num_gpus=gpus, include_dashboard=False, **quiet)
    except Exception as e:  # noqa: BLE001 - Ray raises bare Exception ("The current node timed out during startup")
        raise ScaleoutError(f"can't start Ray on this machine: {first_line(e)} (on a busy machine Ray's "
                            "processes can miss their start-up window: try again, or run without --workers)"
                            ) from None
    return True


def placement(ray: Any, job: Job) -> tuple[int, Placement, dict[str, float]]:
    """(workers, how each runs, the Ray resources one task asks for)."""
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0)) if job.device != "cpu" else 0
    cpus = max(1, int(res.get("CPU", 1)))
    if job.device.startswith("cuda") and not gpus:
        raise ScaleoutError("--device cuda: the Ray cluster has no GPU")
    if gpus:
        workers = job.workers or gpus
        if workers > gpus and not job.address:
            raise ScaleoutError(f"--workers {workers}: this machine has {gpus} GPU(s); one worker per GPU")
        return workers, Placement("cuda", 1, job.hwaccel), {"num_gpus": 1, "num_cpus": 1}
    workers = job.workers or max(1, cpus // 2)
    threads = max(1, cpus // workers)
    return workers, Placement("cpu", threads, None), {"num_cpus": threads}


def hwaccel_note(job: Job, place: Placement) -> str | None:
    """What a single-process run says of ``--hwaccel`` here, when the workers decode on the CPU (a CPU worker gets
    no GPU, so no NVDEC): the same line when this machine can't start it either (an unknown kind is the same
    one-line InputError), else that the CPU workers decode in software."""
    if not job.hwaccel or place.device != "cpu":
        return None
    from ..video.reader import open_input

    said: list[str] = []
    open_input(job.input, None, job.hwaccel, warn=said.append).close()
    return said[0] if said else (f"note: --hwaccel {job.hwaccel}: the workers run on the CPU and decode in "
                                 "software (NVDEC feeds GPU workers only)")


def run(job: Job, warn: Any = print, quiet: bool = False, stop: threading.Event | None = None,
        progress: Any = None) -> Summary:
    """Upscale ``job.input`` into ``job.output`` on Ray; resumable from the work folder next to the output.

    ``progress``: a Ray actor handle with ``Progress``'s methods (default: a fresh ``Progress`` actor).
    """
    from ..video.reader import open_input

    ray = import_ray()
    stop = stop or threading.Event()
    t0 = time.perf_counter()
    open_input(job.input).close()  # an unreadable file, or one without video: the single run's one line
    packets, tb = split.scan(job.input)
    if not packets:
        raise ScaleoutError(f"no video packets in {job.input}")
    if all(p.pts is None for p in packets):  # the cuts and each segment's frames are told apart by time
        raise ScaleoutError(f"{job.input} has no timestamps (a raw .h264/.hevc stream?), which --workers/--ray cut "
                            "by; put it in a container first (ffmpeg -r RATE -i IN -c copy IN.mkv) or run without "
                            "--workers/--ray (a single process times its frames from the frame rate)")
    if (why := split.timing_problem(packets, tb)) is not None:
        raise ScaleoutError(f"{job.input}: {why}, which --workers/--ray can't cut by; run it without "
                            "--workers/--ray (a single process corrects them)")
    win = part_window(job)
    part = part_ticks(win, tb)
    if part is not None and not any(split.in_part(p.pts, part) for p in packets):  # said before Ray starts
        raise ScaleoutError(f"no video frame of {job.input} lies in the part {job.trim.describe()} (--start/--end)")
    if (first := split.plan(packets, tb, job.segment_seconds, part=part)) and any(
            p.pts is not None and p.pts < 0 for p in packets[first[0].first:]):
        raise ScaleoutError(f"{job.input} has video frames before time 0 (a stream-copied cut keeps them from the "
                            "keyframe before its start, not shown), which the cuts (NUT files) can't hold; run it "
                            "without --workers/--ray, or remux it first (ffmpeg -i IN -c copy IN.mkv)")
    info = split.source_info(job.input)
    color = info.color
    check_pix_fmt(color, job.settings.codec, job.settings.pix_fmt)  # each worker would refuse it (said once, now)
    shape = split.source_shape(job.input) if job.settings.size else None
    guess = split.guess_state(job.input)
    if part is not None and guess[0] > guess[1]:  # the segments keep frames by their packets' times
        raise ScaleoutError(f"{job.input} has decode-order timestamps: a part of it can't be cut across workers (its "
                            "frames' times are guessed from the order, not read from the packets); run the part "
                            "without --workers/--ray")
    truncated = split.truncation(job.input, packets, tb)
    if part is not None and part[1] is not None and any(p.pts is not None and p.pts >= part[1] for p in packets):
        truncated = ""  # the part ends before the file does
    wdata = Path(job.weights).read_bytes() if job.weights else None  # hashed into job.settings already
    main = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if main else None  # ray.init replaces it
    # every failure is read and said here, in one line; Ray would log each task's unread one with its traceback
    unhandled = os.environ.get(UNHANDLED)
    os.environ[UNHANDLED] = "1"
    try:
        started = _connect(ray, job)
    except BaseException:
        _restore_env(UNHANDLED, unhandled)
        raise
    if started and main and callable(sigterm):  # the caller's SIGTERM handler (stop cleanly), not Ray's sys.exit
        signal.signal(signal.SIGTERM, sigterm)
    try:
        if progress is None:
            progress = progress_actor(ray)
        workers, place, resources = placement(ray, job)
        if (note := hwaccel_note(job, place)) is not None:
            warn(note)
        decode_order = guess[0] > guess[1]
        segments = split.plan(packets, tb, job.segment_seconds, min_segments=workers, closed_only=decode_order,
                              part=part)
        if decode_order and any(p.idr is False for p in packets[1:]):
            warn(f"note: {job.input} has decode-order timestamps and open GOPs; it is cut only at IDR keyframes "
                 f"({len(segments)} segment(s)), where no leading frame is lost")
        with WorkDir(job.output) as wd:
            done = wd.open(split.source_id(job.input), job.settings, segments)
            if wd.reset_note:
                warn(wd.reset_note)
            segments = wd.segments(tb)  # a resumed folder's own plan, when only --workers/--segment-seconds differ
            expected = expected_frames(packets, segments)
            shown = split.shown_span(packets)
            todo = [s for s in segments if s.index not in done]
            if done:
                warn(f"resuming: {len(done)} of {len(segments)} segments already done in {wd.path}")
            board = Board(sum(expected.values()), len(segments), reused_frames=sum(wd.frames(i) for i in done),
                          reused=len(done))
            t1 = time.perf_counter()
            if todo:
                timings = {s.index: split.timing(packets, tb, s, guess, info.rate) for s in todo}
                _upscale(ray, job, wd, todo, expected, board, workers, place, resources, wdata, stop, warn,
                         quiet, progress, color, short_ok=segments[-1].index if truncated else None,
                         timings=timings, shape=shape, shown=shown, drop_from=split.discarded_tail(packets))
            t2 = time.perf_counter()
            files = [wd.file(s.index) for s in segments]
            want = sum(wd.frames(s.index) for s in segments)
            try:
                frames, nudged = join(job.input, files, job.output, job.settings.codec, job.fmt, warn=warn,
                                      window=win, square_pixels=job.settings.size is not None,
                                      lengths=source_lengths(job.input, packets, tb),
                                      crop=Crop.parse(job.settings.crop) if job.settings.crop else None)
            except JoinError as e:
                raise ScaleoutError(f"joining the segments into {job.output} failed: {e}{_kept(wd)}") from None
            if frames != want:
                raise ScaleoutError(f"joined {frames} frames but the segments hold {want}; kept {wd.path}")
            counts: dict[str, int] = {}
            for s in segments:
                for k, v in wd.counts(s.index).items():
                    counts[k] = counts.get(k, 0) + v
            if nudged:  # frames the join moved: one count per frame at most
                counts["fixed_pts"] = min(frames, counts.get("fixed_pts", 0) + nudged)
            t3 = time.perf_counter()
            upscaled = sum(wd.frames(s.index) for s in todo)
            if not job.keep_work:
                wd.remove()
        return Summary(frames, len(segments), [s.index for s in todo], sorted(done), time.perf_counter() - t0,
                       workers, place, wd.path, {"plan": t1 - t0, "upscale": t2 - t1, "join": t3 - t2}, truncated,
                       counts, upscaled)
    finally:
        if started:
            _PROGRESS.clear()
            ray.shutdown()
            if main:
                signal.signal(signal.SIGTERM, sigterm)
        _restore_env(UNHANDLED, unhandled)


UNHANDLED = "RAY_IGNORE_UNHANDLED_ERRORS"


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def check_pix_fmt(color: Any, codec: str, pix_fmt: str | None) -> None:
    """Refuse, before the source is split, a --pix-fmt the single-process run refuses at its set-up (the encoder
    doesn't take it, or it is no planar YUV/grey format), with its line (OutputError): every worker would."""
    if pix_fmt:
        from ..video.pipeline import output_pix_fmt

        output_pix_fmt(color, codec, pix_fmt)


def part_window(job: Job) -> Any:
    """The --start/--end part in the source's times, on the grid its streams' time bases share (as a
    single-process run takes it), or None; a start at or past the video's end is refused."""
    if job.trim is None:
        return None
    import av

    from ..video.reader import main_video, shown_length, stream_info
    from ..video.trim import TrimError, part_window
    from ..video.writer import output_ticks

    with av.open(job.input) as c:
        try:
            job.trim.check(shown_length(c), job.input)
        except TrimError as e:
            raise ScaleoutError(str(e)) from None
        return part_window(job.trim, c, main_video(c), output_ticks(job.output, job.fmt, stream_info(c).rate))


def part_ticks(win: Any, tb: Fraction) -> tuple[int | None, int | None] | None:
    """A part as ``split.plan`` takes it: the least pts in it and the first past it (``tb`` ticks; None = open)."""
    if win is None:
        return None
    tb = Fraction(tb)
    return (None if win.open_start else math.ceil(win.lo / tb), None if win.hi is None else math.ceil(win.hi / tb))


def expected_frames(packets: list[split.Packet], segments: list[split.Segment]) -> dict[int, int]:
    """Frames per segment: the source's packets with start <= pts < end whose frames a single run's decoder
    gives out (``split.shown``: not those before the first keyframe, its leading frames or discarded ones)."""
    pts = split.shown(packets)
    return {s.index: (len(pts) if s.end is None else bisect_left(pts, s.end))
            - (0 if s.start is None else bisect_left(pts, s.start)) for s in segments}


def _upscale(ray: Any, job: Job, wd: WorkDir, todo: list[split.Segment], expected: dict[int, int], board: Board,
             workers: int, place: Placement, resources: dict[str, float], wdata: bytes | None,
             stop: threading.Event, warn: Any, quiet: bool, progress: Any, color: Any = None,
             short_ok: int | None = None, timings: dict[int, Any] | None = None,
             shape: tuple[Fraction, int] | None = None, shown: tuple[int | None, int | None] | None = None,
             drop_from: int | None = None) -> None:
    """Feed the cuts to Ray tasks (a bounded number in flight), keep each result as it comes.

    A segment must bring back every frame of its span (``expected``: the source's packets there), unless it says
    where its input was damaged, or it is ``short_ok`` (the last one, when the source ends early): both are said
    as a single-process run says them. A short one is not kept (the join would be short without a word)."""
    # a user's mistake (SegmentError) fails at once; only what a retry can cure is retried
    task = ray.remote(upscale_segment).options(max_retries=job.retries, retry_exceptions=list(RETRY_ON),
                                               **resources)
    if progress is None:
        progress = progress_actor(ray)
    weights_ref = ray.put(wdata) if wdata is not None else None
    hud = ScaleoutHud(board, f"psr2video {job.settings.variant} x{job.settings.scale} on {workers} "
                             f"{'GPU' if place.device == 'cuda' else 'CPU'} worker(s)", quiet=quiet)
    cuts = iter(split.cut(job.input, todo, {s.index for s in todo}, drop_from))
    pending: dict[Any, split.Segment] = {}
    more = True
    poll_after = 0.0
    said: set[str] = set()
    hud.start()
    try:
        while more or pending:
            while more and len(pending) < workers + 1:
                try:
                    seg, data = next(cuts)
                except StopIteration:
                    more = False
                    break
                ref = task.remote(job.settings, place, seg, data, weights_ref, expected[seg.index], progress, color,
                                  (timings or {}).get(seg.index), shape, shown, str(wd.scratch))
                pending[ref] = seg
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            if time.monotonic() >= poll_after:  # best effort: a dead or restarting actor costs the HUD only
                ok, snap = best_effort(lambda: ray.get(progress.snapshot.remote(), timeout=2.0))
                if ok:
                    board.workers = snap[0]
                    board.finished.update(snap[1])
                else:
                    poll_after = time.monotonic() + 5.0
            hud.update()
            if stop.is_set():
                _cancel(ray, pending)
                wd.keep_plan = True  # said, and resumed by the same command
                raise Interrupted(f"interrupted: {len(wd.manifest.done)} of {board.segments} segments are kept in "
                                  f"{wd.path}; run the same command again to resume")
            for ref in ready:
                seg = pending.pop(ref)
                try:
                    out = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - Ray wraps the task's failure; report it in one line
                    _cancel(ray, pending)
                    cause = getattr(e, "cause", None)
                    if isinstance(cause, SegmentError):  # the user's to fix: the single-process line, not retried
                        raise ScaleoutError(f"{first_line(cause)} (segment {seg.index}, {seg.span()}"
                                            f"{_kept(wd)})") from None
                    tries = (f"failed after {job.retries + 1} attempt(s) and was not retried again"
                             if _retried(e) else "failed")
                    raise ScaleoutError(f"segment {seg.index} ({seg.span()}) {tries}: {_cause(e)}{_kept(wd)}"
                                        ) from None
                want = expected[seg.index]
                if out.frames < want and not out.damaged and seg.index != short_ok:
                    _cancel(ray, pending)
                    timing = (timings or {}).get(seg.index)
                    why = ("its timestamps are in decode order, so open GOPs' leading frames can't be told apart: "
                           "run it without --workers/--ray" if timing is not None and
                           timing.guess[0] > timing.guess[1] else
                           "the others were decoded outside its span, or not at all")
                    raise ScaleoutError(f"segment {seg.index} ({seg.span()}) upscaled {out.frames} of its {want} "
                                        f"frames ({why}){_kept(wd)}")
                wd.add(out)
                board.finished[seg.index] = out.frames
                for d in out.damaged:
                    warn(f"warning: segment {seg.index}: damaged input at {d}")
                for n in out.notes:
                    if "--size" in n:  # about the whole output (every segment says it): once, as a single run does
                        if n not in said:
                            said.add(n)
                            warn(n)
                        continue
                    warn(f"segment {seg.index}: {n}")
    finally:
        if pending:  # an unforeseen failure or a second Ctrl-C: stopped, not waited for (Ray's shutdown ends them)
            _cancel(ray, pending, wait=0)
        hud.stop()


_PROGRESS: dict[str, Any] = {}  # Ray job id -> the progress actor (kept: its process starts once per driver)


def progress_actor(ray: Any) -> Any:
    """The driver's progress actor, reset for a new run: on the driver's node (a lost node does not take it), and
    restarted by Ray if its process dies (its state is only the HUD's; workers and driver treat it as best
    effort)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ctx = ray.get_runtime_context()
    job = ctx.get_job_id()
    if job not in _PROGRESS:
        _PROGRESS.clear()
        here = NodeAffinitySchedulingStrategy(node_id=ctx.get_node_id(), soft=False)
        _PROGRESS[job] = ray.remote(num_cpus=0, max_restarts=-1, scheduling_strategy=here)(Progress).remote()
    actor = _PROGRESS[job]
    actor.reset.remote()
    return actor


CANCEL_WAIT = 10.0  # seconds a stopped run waits for its cancelled tasks to remove their temporary files


def _cancel(ray: Any, pending: dict[Any, Any], wait: float = CANCEL_WAIT) -> None:
    """Cancel the tasks in flight and wait (``wait`` s at most) until they have ended: a cancelled task removes its
    cut and partial segment as it ends, and Ray's shutdown right after would kill it first, leaving them."""
    for ref in pending:
        try:
            ray.cancel(ref)  # the task gets KeyboardInterrupt; its worker (and loaded model) stays
        except Exception:  # noqa: BLE001 - already finished or gone
            pass
    if wait > 0 and pending:
        try:
            ray.wait(list(pending), num_returns=len(pending), timeout=wait)
        except Exception:  # noqa: BLE001 - best effort: what is left is removed by the next run
            pass


def _kept(wd: WorkDir) -> str:
    """'; the finished segments are kept in WORK' for a failure's line, or '' when none had finished: the folder,
    which holds only the plan then, is removed (``WorkDir.__exit__``)."""
    return f"; the finished segments are kept in {wd.path}" if wd.manifest is not None and wd.manifest.done else ""


def _retried(e: BaseException) -> bool:
    """Whether Ray retried the failure ``e`` of a task: a worker or node lost, or an exception in ``RETRY_ON``."""
    cause = getattr(e, "cause", None)  # a RayTaskError: the task's own exception; else Ray's (a lost worker)
    return isinstance(cause, RETRY_ON) if isinstance(cause, BaseException) else True


def _cause(e: BaseException) -> str:
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        e = cause
    name = type(e).__name__
    text = str(e).strip().splitlines()
    if name in ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError"):
        return f"{name} (the worker process died: killed, crashed or out of memory)"
    return f"{name}: {text[0] if text else ''}"

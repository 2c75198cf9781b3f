"""``psr2video season/ season_x2/``: every video (and picture) under a folder, through one Upscaler.

The model is loaded (and a TensorRT engine found or built) once for the whole folder, not once per file as a
shell loop would; each video is a normal single-file run (the same pipeline, HUD, notes and summary), written
under a temporary name and renamed when complete. A file that fails is named and skipped, the others are
written, and the run ends with an error that counts them; Ctrl-C finalises the video being written and stops.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ..errors import UserError
from ..fileio import Walk
from ..names import PICTURE_EXTS, VIDEO_EXTS

# options that mean one file: refused for a folder, not ignored
ONE_FILE_ONLY = {"fmt": "--format", "in_fmt": "--input-format", "in_fps": "--fps", "workers": "--workers",
                 "ray_address": "--ray", "segment_seconds": "--segment-seconds", "keep_work": "--keep-work"}


def _warn(msg: str) -> None:
    click.echo(msg, err=True)


def folder_videos(files: list[Path]) -> list[Path]:
    """The video files (by extension) of a folder's ``files`` (``fileio.walk``'s)."""
    return [p for p in files if p.suffix.lower() in VIDEO_EXTS]


@dataclass(frozen=True)
class VideoJob:
    src: Path
    dst: Path


def plan_videos(input: str, output: str, tree: Walk, skip_existing: bool = False
                ) -> tuple[list[VideoJob], list[str]]:
    """Each video's OUT of the folder ``tree`` (``fileio.walk(input)``: the same name and sub-folder under
    ``output``; .mkv for a kind of file the product does not write, said) and the notes; with ``skip_existing``
    those whose OUT exists are left out, said. Refuses, before anything loads, what can't work (OUT inside IN, an
    OUT that is one of the files the run reads); OUTs that exist without -y are the caller's to refuse, over the
    videos and the pictures together."""
    from ..video.writer import EXT_FORMAT

    kept = set(EXT_FORMAT) - {".mka", ".y4m"} | {".mpg", ".mpeg", ".mts"}  # the containers written and tested here

    src, dst = Path(input), Path(output)
    if (dst.exists() and not dst.is_dir()) or (not dst.exists() and dst.suffix.lower() in VIDEO_EXTS | PICTURE_EXTS):
        raise UserError(f"IN is a folder, so OUT must be a folder too: {output} is a file name")
    if (problem := out_folder_problem(output)) is not None:
        raise UserError(problem)
    check_out_outside_in(input, output, tree.folders)
    jobs, notes, renamed = [], [], []
    for v in folder_videos(tree.files):
        out = dst / v.relative_to(src)
        if out.suffix.lower() not in kept:  # .wmv, .flv, .y4m, .rm...: read, not written (H.264 in ASF, Ogg, Y4M,
            out = out.with_suffix(".mkv")  # MXF or RealMedia is refused or unplayable)
            renamed.append(v.suffix.lower())
        jobs.append(VideoJob(v, out))
    if renamed:
        kinds = ", ".join(sorted(set(renamed)))
        notes.append(f"note: {kinds} is read but not written here; {len(renamed)} video(s) written as .mkv (Matroska "
                     "holds every stream they have)")
    seen: dict[Path, Path] = {}
    for j in jobs:
        if j.dst in seen:
            raise UserError(f"{seen[j.dst]} and {j.src} would both be written to {j.dst}; move one of them")
        seen[j.dst] = j.src
    refuse_inputs_as_outputs(jobs, tree.files)
    # a broken link counts as existing: it is replaced, not followed
    if skip_existing and (existing := [j.dst for j in jobs if os.path.lexists(j.dst)]):
        jobs = [j for j in jobs if not os.path.lexists(j.dst)]
        notes.append(f"note: --skip-existing: {len(existing)} video(s) whose OUT exists are left out")
    return jobs, notes


def out_folder_problem(output: str) -> str | None:
    """Why OUT can't be written because a file stands where its folder (or one above it) must be, or None: said
    now, where FFmpeg's "Not a directory" came after the model loaded, named as a container problem."""
    for d in Path(output).parents:  # the nearest that exists decides
        if os.path.exists(d):
            return None if os.path.isdir(d) else f"can't write {output}: {d} is a file, not a folder"
    return None


def out_folder_unwritable(output: str) -> str | None:
    """Why no file can be written under the folder OUT, or None: OUT (and the folders above it) is made and a file
    made in it, then both removed, before the model loads (found only at the end, every file was upscaled first and
    then failed one by one; a model that then fails to load leaves no empty OUT behind)."""
    out = Path(output)
    missing = list(itertools.takewhile(lambda p: not p.exists(), [out, *out.parents]))  # deepest first
    probe = out / f".psr2video.{os.getpid()}.probe"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.touch()
        probe.unlink()
        return None
    except OSError as e:
        return f"can't write into {output}: {e.strerror or e}"
    finally:
        for folder in missing:  # made here: the run makes them again
            with contextlib.suppress(OSError):
                folder.rmdir()


def check_out_outside_in(input: str, output: str, folders: dict[Path, Path]) -> None:
    """OUT inside IN would have the next run read the outputs as inputs and upscale them again; links are
    resolved, and a linked folder under IN (which the run follows) that leads to OUT counts as inside too.
    ``folders``: the real folders the run reads, each with the path it is reached by (``fileio.walk``'s); IN
    itself is always checked."""
    out = Path(os.path.realpath(output))
    src = Path(os.path.realpath(input))
    for real, here in {src: Path(input), **folders}.items():
        if out == real or real in out.parents:
            via = "" if out == src or src in out.parents else f" (through the linked folder {here})"
            raise UserError(f"OUT {output} is inside IN {input}{via}; give a folder outside it")


def check_quality(quality: int | None, jobs: list, folder: bool) -> None:
    """--quality where no OUT is a lossy picture (.jpg, .webp, .avif): refused, not ignored."""
    from ..animation import LOSSY_EXTS

    if quality is None or any(j.dst.suffix.lower() in LOSSY_EXTS for j in jobs):
        return
    what = ("no picture under IN is written so" if folder
            else f"{jobs[0].dst.name} is written lossless" if jobs[0].dst.suffix.lower() != ".gif"
            else f"{jobs[0].dst.name} is written with 256 colours")
    raise UserError(f"--quality is for pictures written .jpg, .webp or .avif; {what}")


def refuse_inputs_as_outputs(jobs: list[Any], inputs: list[Path]) -> None:
    """An OUT that is one of the files read (IN inside OUT: lib/a/a/ep.mkv -> lib/a/ep.mkv) would be replaced
    before its own turn, and the replacement upscaled again: refused, even with -y. Files are compared as the
    file system knows them (links, other spellings of a path), not by name."""
    ids: dict[tuple[int, int], Path] = {}
    for p in inputs:
        with contextlib.suppress(OSError):
            st = os.stat(p)
            ids[(st.st_dev, st.st_ino)] = p
    for j in jobs:
        try:
            st = os.stat(j.dst)
        except OSError:  # not there (or a broken link): not an input
            continue
        if (same := ids.get((st.st_dev, st.st_ino))) is not None:
            alias = "" if same == j.dst else f" ({same})"
            raise UserError(f"{j.dst}, the OUT of {j.src}, is one of the inputs{alias}: writing it would replace "
                            "that input; give an OUT folder that holds none of IN's files")


def refuse_existing(dsts: list[Path], overwrite: bool, folder: bool) -> None:
    """OUTs that exist (a broken link too: writing replaces it) without -y: one line for all of them."""
    if overwrite or not (existing := [d for d in dsts if os.path.lexists(d)]):
        return
    more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
    broken = " (a broken link)" if not more and not os.path.exists(existing[0]) else ""
    skip = ", or --skip-existing to leave those out" if folder else ""
    raise UserError(f"{existing[0]} exists{broken}{more}; use -y to overwrite{skip}")


def _stopped_name(dst: Path) -> Path:
    return _aside(dst, "stopped")


def _damaged_name(dst: Path) -> Path:
    return _aside(dst, "damaged")


def _aside(dst: Path, word: str) -> Path:
    """NAME.WORD.EXT beside OUT; a name that would pass the file system's 255 bytes (OUT's own can be 255) loses
    the end of its NAME instead (checking it raised "file name too long" and ended the whole folder run)."""
    from ..fileio import NAME_MAX

    tail = os.fsencode(f".{word}{dst.suffix}")
    stem = os.fsencode(dst.stem)
    if len(stem) + len(tail) > NAME_MAX:  # cut on a character's edge (a name's other bytes are kept as they are)
        stem = stem[: NAME_MAX - len(tail)].decode("utf-8", "ignore").encode()
    return dst.with_name(os.fsdecode(stem + tail))


def _say_stop(jobs: list[VideoJob], i: int, finished: int, cut_short: bool, started: bool = True,
              failed: list[str] | None = None, root: Path | None = None) -> None:
    """After a stop in video ``i`` (1-based; ``started``: it was being upscaled, else it was about to be): its
    finalised, cut-short output (when the stop came after its first frame) is NAME.stopped.EXT, still playable,
    so that ``--skip-existing`` redoes it (the caller moved it there before its summary, which names it); the
    line says how to go on, and which files failed, each named by its path under IN (``root``)."""
    job = jobs[i - 1]
    kept = ""
    if cut_short and _stopped_name(job.dst).exists():
        kept = f" (cut short: kept as {_stopped_name(job.dst)}, playable)"

    def under_in(src: Path) -> str:  # sub/b.mkv, not a bare b.mkv that may be in several sub-folders
        try:
            return str(src.relative_to(root)) if root is not None else src.name
        except ValueError:
            return src.name

    left = [under_in(j.src) for j in jobs[i if started else i - 1:]]
    where = f"; {under_in(job.src)} was stopped{kept}" if started else ""
    bad = f"; {len(failed)} had a problem (said above)" if failed else ""
    _warn(f"stopped: {finished} of {len(jobs)} videos were finished{where}{bad}"
          + (f"; not started: {', '.join(left[:3])}{' ...' if len(left) > 3 else ''}" if left else "")
          + "; run the same command with --skip-existing to go on")


def _codecs(jobs: list[VideoJob], codec: str | None, crf: float | None, preset: str | None) -> dict[str, str]:
    """The encoder per output extension (``--codec``, or the default for that container: SVT-AV1 for .webm),
    each checked with the settings before anything loads, and the default's note said once per extension."""
    from ..video.output_checks import default_codec, encoder_problem, output_format_problem

    out: dict[str, str] = {}
    for job in jobs:
        ext = job.dst.suffix.lower()
        if ext in out:
            continue
        if (problem := output_format_problem(str(job.dst), None)) is not None:
            raise UserError(problem)
        chosen, note = (codec, None) if codec is not None else default_codec(str(job.dst), None)
        if (problem := encoder_problem(chosen, crf, preset)) is not None:
            raise UserError(f"{problem} (for the {ext} files)" if codec is None else problem)
        if note:
            _warn(note.replace("note: ", f"note: {ext}: ", 1))
        out[ext] = chosen
    return out


def upscale_folder(ctx: click.Context, input: str, output: str, tree: Walk, *, overwrite: bool,
                   skip_existing: bool, quiet: bool,
                   ignore_errors: bool, make_up: Callable[[], Any], video: dict[str, Any], size: Any,
                   say_backend: bool, after_load: Callable[[Any], None], quality: int | None = None) -> None:
    """Upscale every video (and picture) of ``tree`` (``fileio.walk(input)``) into ``output``; ``video`` holds the
    video options
    (codec, crf, preset, pix_fmt, batch, overlay_fps, max_frames, hwaccel, deinterlace, crop: auto is measured
    per file, trim: the same part of each video); ``quality``: the pictures' (--quality)."""
    from ..image_upscale import PictureError, plan
    from ..image_upscale import run as run_pictures
    from ..video import pipeline
    from ..video.crop import resolve as resolve_crop
    from .common import interruptible
    from .video_run import as_user_error, ctrl_c_stops, report, run_video

    for name, flag in ONE_FILE_ONLY.items():
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
            why = ("each file's own format is read" if name in ("fmt", "in_fmt")
                   else "it times a picture sequence given as IN" if name == "in_fps"
                   else "scale-out cuts one video at its keyframes; a folder's files run one after another")
            raise UserError(f"{flag} is for one file; IN is a folder ({why})")
    # OUTs that exist are counted over videos and pictures together, for one line
    files = tree.files
    jobs, notes = plan_videos(input, output, tree, skip_existing)
    has_pictures = any(p.suffix.lower() in PICTURE_EXTS for p in files)
    try:
        pictures = plan(input, output, files) if has_pictures else []
    except PictureError as e:
        raise UserError(str(e)) from None
    refuse_inputs_as_outputs(pictures, files)
    check_quality(quality, pictures, True)
    if skip_existing:
        pictures = [j for j in pictures if not os.path.lexists(j.dst)]
    refuse_existing([j.dst for j in [*jobs, *pictures]], overwrite, folder=True)
    if skip_existing and (left := sum(p.suffix.lower() in PICTURE_EXTS for p in files) - len(pictures)):
        notes.append(f"note: --skip-existing: {left} picture(s) whose OUT exists are left out")
    if not jobs and not pictures:
        _warn(f"every file under {input} has its OUT already (--skip-existing); nothing to do")
        return
    codecs = _codecs(jobs, video["codec"], video["crf"], video["preset"])
    others = [p for p in files if p.suffix.lower() not in VIDEO_EXTS | PICTURE_EXTS]
    if (problem := out_folder_unwritable(output)) is not None:
        raise UserError(problem)
    up = make_up()
    what = [f"{len(jobs)} video{'s' if len(jobs) != 1 else ''}"]
    if pictures:
        what.append(f"{len(pictures)} picture{'s' if len(pictures) != 1 else ''}")
    _warn(f"{input} -> {output}: {up!r}, {' and '.join(what)}")
    after_load(up)
    for line in notes:
        _warn(line)
    if pictures and video["trim"] is not None:
        _warn(f"note: --start/--end cut the videos; the {len(pictures)} picture(s) and animation(s) are upscaled whole")
    if pictures and video["crop"]:
        _warn(f"note: --crop cuts the videos' edges; the {len(pictures)} picture(s) and animation(s) are upscaled "
              "whole")
    if others:
        _warn(f"note: {len(others)} other file(s) under {input} (e.g. {others[0].name}) are neither videos nor "
              "pictures; not copied")
    failed: list[str] = []
    done_pictures = finished = 0
    if pictures:
        interruptible()  # Ctrl-C among the pictures unwinds: no temporary file is left
        try:
            done_pictures = run_pictures(up, pictures, _warn, quiet=quiet, size=size, failed=failed,
                                         quality=quality)[0]
        except Exception as e:  # noqa: BLE001 - a model that can't take a picture: one line, the videos still run
            err = as_user_error(e, output)
            if err is e:
                raise
            _warn(f"warning: the pictures: {err.format_message()}")
            failed.append(f"the pictures: {err.format_message()}")
    with ctrl_c_stops() as stop:
        # each run gets its own stop event (a run sets it at its end to stop its reader); Ctrl-C's is passed on
        current = [threading.Event()]

        def pass_on() -> None:
            stop.wait()
            current[0].set()

        threading.Thread(target=pass_on, name="psr2-folder-stop", daemon=True).start()
        for i, job in enumerate(jobs, 1):
            current[0] = file_stop = threading.Event()
            if stop.is_set():  # Ctrl-C between two files (or as this one begins): it is not opened
                _say_stop(jobs, i, finished, cut_short=False, started=False, failed=failed, root=Path(input))
                sys.exit(130)
            opts = pipeline.Options(input=str(job.src), output=str(job.dst), codec=codecs[job.dst.suffix.lower()],
                                    crf=video["crf"], preset=video["preset"], pix_fmt=video["pix_fmt"],
                                    batch=video["batch"], overlay_fps=video["overlay_fps"],
                                    max_frames=video["max_frames"], hwaccel=video["hwaccel"],
                                    deinterlace=video["deinterlace"], size=size, trim=video["trim"],
                                    codec_default=video["codec"] is None)
            res = None
            try:
                try:
                    job.dst.parent.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise UserError(f"can't make the folder {job.dst.parent}: {e.strerror or e}") from None
                # auto: this file's own bars (in the part asked for)
                opts.crop = resolve_crop(video["crop"], str(job.src), _warn, trim=video["trim"])
                res, snapshot = run_video(up, opts, f"[{i}/{len(jobs)}] {job.src.name}", quiet, file_stop,
                                          say_backend=say_backend and i == 1)
                written = job.dst
                if res.stopped and res.frames and job.dst.exists():  # cut short: moved aside before the summary,
                    written = _stopped_name(job.dst)  # whose done line names (and sizes) the file it is now
                    job.dst.replace(written)
                report(res, snapshot, str(written), ignore_errors, stopped_by=stop.by)
                finished += 1
                for leftover, what in ((_stopped_name(job.dst), "cut-short"), (_damaged_name(job.dst), "damaged")):
                    if leftover.exists():  # of an earlier run that was stopped, or met damage
                        leftover.unlink()
                        _warn(f"note: {job.dst.name} is complete now; the {what} {leftover.name} of an earlier run "
                              "is removed")
            except UserError as e:  # this file's problem (damaged, unreadable, refused): the others go on
                msg = e.format_message()
                if res is not None and res.frames and job.dst.exists():  # damaged input: the frames that decoded
                    job.dst.replace(_damaged_name(job.dst))  # not under OUT's name, which --skip-existing takes as
                    # done; the line says where they are now, not the OUT name they were first written to
                    kept = f"kept as {_damaged_name(job.dst).name} instead, so that --skip-existing tries it again"
                    said = f"written to {job.dst} "
                    msg = msg.replace(said, kept + " ", 1) if said in msg else f"{msg}; {kept}"
                _warn(f"warning: {job.src}: {msg}")
                failed.append(f"{job.src}: {msg}")
            except KeyboardInterrupt:
                _warn("psr2video: aborted; partial output removed")
                sys.exit(130)
            except SystemExit:  # stopped (Ctrl-C, SIGTERM): this file is finalised, the rest not started
                _say_stop(jobs, i, finished, cut_short=res is not None and res.frames > 0, failed=failed,
                          root=Path(input))
                raise
    pics = f", {done_pictures} of {len(pictures)} pictures" if pictures else ""
    _warn(f"done: {finished} of {len(jobs)} videos{pics} -> {output}")
    if failed:
        total = len(jobs) + len(pictures)
        rest = "the others were written" if finished + done_pictures else "none was written"
        raise UserError(f"{len(failed)} of {total} files had a problem (first: {failed[0]}); {rest}")

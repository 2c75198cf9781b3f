"""Scale out on a local Ray cluster (2 CPUs): a real open-GOP, VFR clip with audio, subtitles, chapters and a
font, cut into 4+ segments; the joined output must equal the single-process run frame for frame."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner

from psr2video.cli import cli

sys.path.insert(0, str(Path(__file__).parent))
from test_video import mux_subtitles  # noqa: E402

TB = Fraction(1, 1000)
SEG = "0.5"  # seconds per segment: keyframes every 12 frames (~0.5 s) give 5 segments


def make_clip(path: Path, n: int = 60, w: int = 32, h: int = 24) -> Path:
    """libx264 with B-frames and open GOP (leading frames reference the previous GOP), VFR pts, AAC audio, an SRT
    subtitle, chapters, a font attachment and a title."""
    out = av.open(str(path), "w", format="matroska")
    v = out.add_stream("libx264", rate=24)
    v.width, v.height, v.pix_fmt = w, h, "yuv420p"
    v.time_base = v.codec_context.time_base = TB
    v.options = {"preset": "veryfast", "crf": "20",
                 "x264-params": "keyint=12:min-keyint=12:scenecut=0:bframes=3:open-gop=1"}
    a = out.add_stream("aac", rate=48000)
    a.layout = "stereo"
    srt_path = path.with_suffix(".srt")
    srt_path.write_text("1\n00:00:00,100 --> 00:00:00,900\nhello\n\n2\n00:00:01,500 --> 00:00:02,200\nworld\n")
    srt = av.open(str(srt_path))
    s = out.add_stream_from_template(srt.streams[0])
    s.metadata["language"] = "eng"
    out.add_attachment("font.ttf", "font/ttf", b"\x00\x01\x00\x00not-a-real-font")
    out.metadata["title"] = "scale-out test clip"
    out.set_chapters([{"id": 1, "start": 0, "end": 1000, "time_base": TB, "metadata": {"title": "one"}},
                      {"id": 2, "start": 1000, "end": 2500, "time_base": TB, "metadata": {"title": "two"}}])
    rng = np.random.default_rng(0)
    t = 0
    for i in range(n):
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([(xx * 7 + i * 9) % 256, (yy * 11 + i * 5) % 256, rng.integers(0, 256, (h, w))], -1)
        f = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
        f.pts, f.time_base = t, TB
        t += 60 if i % 7 == 3 else 40  # VFR
        out.mux(v.encode(f))
    out.mux(v.encode(None))
    fs = a.codec_context.frame_size or 1024
    for k in range(int(t / 1000 * 48000 / fs)):
        af = av.AudioFrame.from_ndarray((rng.standard_normal((2, fs)) * 0.05).astype(np.float32), format="fltp",
                                        layout="stereo")
        af.sample_rate, af.pts = 48000, k * fs
        out.mux(a.encode(af))
    out.mux(a.encode(None))
    mux_subtitles(out, srt, s)
    out.close()
    return path


def decoded(path: Path) -> list[tuple[int, list[np.ndarray]]]:
    with av.open(str(path)) as c:
        return [(f.pts, [np.asarray(p).copy() for p in f.to_ndarray(format="yuv420p")]) for f in c.decode(video=0)]


def copied(path: Path) -> dict[str, object]:
    """Everything but the video: packets of audio/subtitles, chapters, attachments, metadata."""
    with av.open(str(path)) as c:
        res: dict[str, object] = {"title": c.metadata.get("title"),
                                  "chapters": [(ch["start"], ch["end"], ch["metadata"].get("title"))
                                               for ch in c.chapters()],
                                  "attachments": [(s.name, bytes(s.data)) for s in c.streams
                                                  if s.type == "attachment"]}
        for s in c.streams:
            if s.type in ("audio", "subtitle"):
                res[f"{s.type}{s.index}"] = [(p.pts, bytes(p)) for p in c.demux(s) if p.size]
                c.seek(0)
    return res


def upscale(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, ["upscale", *args, "--variant", "mks", "--codec", "ffv1", "-q"],
                           catch_exceptions=False)
    return r.exit_code, r.stderr if r.stderr_bytes is not None else r.output  # (click 8.1: mixed, no stderr)


def test_without_ray_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "in.mkv"
    src.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as when it is not installed
    code, err = upscale(str(src), str(tmp_path / "out.mkv"), "--workers", "2")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "pip install 'psr2video[ray]'" in lines[0], err


def test_dead_ray_address_is_one_line_at_once(tmp_path: Path) -> None:
    """--ray HOST:PORT where nothing listens: one line in seconds (ray.init retried it for minutes, printing
    its C++ client's warnings)."""
    import importlib.util
    import socket

    if importlib.util.find_spec("ray") is None:  # not importorskip: Ray must load in this process only after
        pytest.skip("ray is not installed (pip install 'psr2video[ray]')")  # ray_local set its auth mode
    with socket.socket() as s:  # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        src = make_clip(tmp_path / "in.mkv", n=4)
        p = subprocess.run([sys.executable, "-m", "psr2video", str(src), str(tmp_path / "out.mkv"), "--variant", "mks",
                            "--ray", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=120,
                           cwd=tmp_path, env=dict(os.environ, HOME=str(tmp_path)))
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.startswith("Error")]
    assert p.returncode == 1 and len(lines) == 1, p.stderr
    assert f"can't join the Ray cluster at 127.0.0.1:{port}" in lines[0], p.stderr


def test_weights_file_with_workers_is_not_taken_for_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--weights FILE with --workers goes to scale-out (a slip once refused it as "--model with --workers")."""
    from psr2video.models.registry import shipped_weights_path

    src = tmp_path / "in.mkv"
    src.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "ray", None)
    r = CliRunner().invoke(cli, ["upscale", str(src), str(tmp_path / "out.mkv"), "--weights",
                                 str(shipped_weights_path("realtime", 2)), "--workers", "2", "-q"])
    assert r.exit_code == 1 and "pip install 'psr2video[ray]'" in r.output and "--model" not in r.output, r.output


@pytest.mark.parametrize("flag", [("--segment-seconds", "5"), ("--keep-work",)])
def test_scaleout_settings_alone_are_refused(tmp_path: Path, flag: tuple) -> None:
    """--segment-seconds/--keep-work without --workers/--ray: one line, not a single-process run ignoring them."""
    src = make_clip(tmp_path / "in.mkv", n=4)
    r = CliRunner().invoke(cli, ["upscale", str(src), str(tmp_path / "out.mkv"), "--variant", "mks", *flag])
    assert r.exit_code == 1 and f"{flag[0]} is a scale-out setting: add --workers N" in r.output, r.output
    assert not (tmp_path / "out.mkv").exists()


def test_bench_scaleout_command_loads(tmp_path: Path) -> None:
    """The bench command imports what it needs (it once imported a helper that had moved) and answers a
    missing clip in one line, before importing Ray (which must first be imported under ray_local's token)."""
    r = CliRunner().invoke(cli, ["bench", "scaleout", str(tmp_path / "missing.mkv")])
    assert r.exit_code == 1 and "clip not found" in r.output, r.output
    for args, words in ((["--workers", "a,b"], "--workers takes whole numbers"),  # was a ValueError traceback
                        (["--workers", "0"], "--workers takes counts of 1 or more"),  # ran, timing nothing
                        (["--segment-seconds", "-1"], "is not in the range x>0")):
        r = CliRunner().invoke(cli, ["bench", "scaleout", *args])
        assert r.exit_code in (1, 2) and words in r.output and "Traceback" not in r.output, r.output


def test_cut_gives_each_segment_its_packets_without_ray(tmp_path: Path) -> None:
    """The cutter (one pass over the source) writes each wanted segment's packets, lead-ins of an open GOP
    included, and the look-ahead past its cut (packets it doesn't keep): every segment decodes, and the kept
    frames of all segments are the source's frames once each."""
    import io

    from psr2video.scaleout import split

    src = make_clip(tmp_path / "in.mkv")
    packets, tb = split.scan(str(src))
    segs = split.plan(packets, tb, float(SEG))
    assert len(segs) >= 4
    wanted = {s.index for s in segs} - {1}
    got = dict(split.cut(str(src), segs, wanted))
    assert sorted(s.index for s in got) == sorted(wanted)
    kept = []
    for s, data in got.items():
        with av.open(io.BytesIO(data)) as c:
            n = sum(1 for p in c.demux(video=0) if p.size)
        with av.open(io.BytesIO(data)) as c:
            frames = [round(f.pts * f.time_base / tb) for f in c.decode(video=0)]  # nut refines the time base
        ahead = 0  # the look-ahead past the cut: packets the segment decodes but does not keep
        while (s.end is not None and ahead < split.CUT_LOOKAHEAD and s.last + ahead + 1 < len(packets)
               and packets[s.last + ahead + 1].pts is not None and packets[s.last + ahead + 1].pts >= s.end):
            ahead += 1
        assert n == s.last - s.first + 1 + ahead and frames
        assert ahead == (0 if s.end is None else split.CUT_LOOKAHEAD)
        kept += [t for t in frames if s.keeps(t)]
    with av.open(str(src)) as c:
        want = [f.pts for f in c.decode(video=0)]
    skipped = [t for t in want if segs[1].keeps(t)]
    assert sorted(kept) == sorted(set(want) - set(skipped)) and len(kept) == len(want) - len(skipped)


@pytest.fixture(scope="module")
def ray_local():
    import logging

    # a throw-away token (set before Ray loads it): Ray's default token auth would write ~/.ray/auth_token
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'psr2video[ray]')")

    sigterm = signal.getsignal(signal.SIGTERM)  # ray.init installs its own; later tests expect the default
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield ray
    ray.shutdown()
    signal.signal(signal.SIGTERM, sigterm)
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The source and its single-process upscale (the reference)."""
    d = tmp_path_factory.mktemp("scaleout")
    src = make_clip(d / "in.mkv")
    ref = d / "ref.mkv"
    code, err = upscale(str(src), str(ref))
    assert code == 0, err
    return src, ref


def assert_same(out: Path, ref: Path) -> None:
    a, b = decoded(out), decoded(ref)
    assert [p for p, _ in a] == [p for p, _ in b]  # every timestamp (VFR)
    for (pts, pa), (_, pb) in zip(a, b, strict=True):
        for x, y in zip(pa, pb, strict=True):
            assert np.array_equal(x, y), f"frame at pts {pts} differs"
    assert copied(out) == copied(ref)


@pytest.mark.slow  # CI runs it (--run-slow); the default suite stays under 90 s
def test_equals_single_process(ray_local, clip, tmp_path: Path) -> None:
    src, ref = clip
    out = tmp_path / "out.mkv"
    code, err = upscale(str(src), str(out), "--workers", "2", "--segment-seconds", SEG)
    assert code == 0, err
    m = __import__("re").search(r"(\d+) segments \((\d+) upscaled, (\d+) resumed\)", err)
    assert m and int(m[1]) >= 4 and int(m[2]) == int(m[1]), err
    assert_same(out, ref)
    with av.open(str(out)) as c:
        assert len([s for s in c.streams if s.type == "subtitle"]) == 1
        assert math.isclose(float(c.streams.video[0].time_base), 1e-3)
    assert not list(tmp_path.glob(".*psr2video-work*"))  # the work folder is gone after a join


@pytest.mark.slow  # CI runs it (--run-slow)
def test_b_frame_segments_join(ray_local, clip, tmp_path: Path) -> None:
    """The default encoder (libx264 medium: B-frames) in scale-out: NUT segments carry no dts for their first
    packets (the reorder delay) and Matroska refused them at the join ('Invalid argument'), so every default
    run failed after all the work. The join fills them in: the output has the single-process timestamps."""
    src, _ = clip
    r = CliRunner().invoke(cli, ["upscale", str(src), str(tmp_path / "ref.mkv"), "--variant", "mks", "-q"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "out.mkv"
    r = CliRunner().invoke(cli, ["upscale", str(src), str(out), "--variant", "mks", "-q", "--workers", "2",
                                 "--segment-seconds", SEG])
    assert r.exit_code == 0, r.output
    assert [p for p, _ in decoded(out)] == [p for p, _ in decoded(tmp_path / "ref.mkv")]
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
    assert copied(out) == copied(tmp_path / "ref.mkv")


@pytest.mark.slow  # CI runs it (--run-slow)
def test_av1_source_and_av1_webm_output_join(ray_local, clip, tmp_path: Path) -> None:
    """AV1 in scale-out: an AV1 source failed at the cut and an AV1 output (SVT-AV1, the default for .webm) at the
    join, both with a traceback after the work (PyAV looked the copied stream's codec up as an encoder named
    after its decoder, libdav1d). Both now join to the single-process result; the AAC that WebM can't hold is
    re-encoded as Opus in both runs alike."""
    src, _ = clip
    av1 = tmp_path / "av1.mkv"
    with av.open(str(src)) as inp, av.open(str(av1), "w") as out:
        v = out.add_stream("libsvtav1", rate=24)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.time_base = v.codec_context.time_base = TB
        v.options = {"preset": "12", "svtav1-params": "keyint=12"}
        for f in inp.decode(video=0):
            g = f.reformat(width=64, height=48)
            g.pts, g.time_base = f.pts, f.time_base
            out.mux(v.encode(g))
        out.mux(v.encode(None))
    with av.open(str(av1)) as c:
        assert sum(p.is_keyframe for p in c.demux(video=0)) >= 4
    code, err = upscale(str(av1), str(tmp_path / "ref.mkv"))
    assert code == 0, err
    code, err = upscale(str(av1), str(tmp_path / "out.mkv"), "--workers", "2", "--segment-seconds", SEG)
    assert code == 0 and "Traceback" not in err, err
    a, b = decoded(tmp_path / "out.mkv"), decoded(tmp_path / "ref.mkv")
    assert len(a) == 60 and [p for p, _ in a] == [p for p, _ in b]
    assert all(np.array_equal(x, y) for (_, pa), (_, pb) in zip(a, b, strict=True) for x, y in zip(pa, pb, strict=True))

    outs = {}
    for name, extra in (("single.webm", []), ("multi.webm", ["--workers", "2", "--segment-seconds", SEG])):
        r = CliRunner().invoke(cli, ["upscale", str(src), str(tmp_path / name), "--variant", "mks", "-q", *extra])
        assert r.exit_code == 0 and "encoding with libsvtav1" in r.output, r.output
        assert "audio stream #1 (aac) can't be carried in webm as it is: re-encoded as libopus" in r.output
        with av.open(str(tmp_path / name)) as c:
            assert [s.codec_context.name for s in c.streams if s.type == "audio"] == ["opus"]
            outs[name] = ([f.pts for f in c.decode(video=0)], [p.pts for p in c.demux(audio=0) if p.size])
    assert outs["multi.webm"] == outs["single.webm"] and len(outs["single.webm"][0]) == 60


@pytest.mark.slow  # CI runs it (--run-slow)
def test_container_colour_tags_reach_every_segment(ray_local, tmp_path: Path) -> None:
    """A source whose colour tags live only in the container (FFV1 in Matroska, tagged BT.709 at SD height): the
    cuts are NUT, which drops them, and each segment used to decide BT.601 for itself (pixels off by up to 20
    levels) and the joined file was untagged. The source's decision now travels with every segment."""
    src = tmp_path / "src.mkv"
    with av.open(str(src), "w") as out:
        v = out.add_stream("ffv1", rate=24)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.codec_context.colorspace = v.codec_context.color_primaries = v.codec_context.color_trc = 1  # BT.709
        v.codec_context.color_range = 1
        v.options = {"g": "12"}
        for i in range(48):
            yy, xx = np.mgrid[0:48, 0:64]
            img = np.stack([(xx * 4 + i * 3) % 256, (yy * 5) % 256, np.full((48, 64), 200)], -1).astype(np.uint8)
            f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p", dst_colorspace=1)
            f.pts, f.time_base = i, Fraction(1, 24)
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    single, multi = tmp_path / "single.mkv", tmp_path / "multi.mkv"
    assert upscale(str(src), str(single))[0] == 0
    code, err = upscale(str(src), str(multi), "--workers", "2", "--segment-seconds", "0.5")
    assert code == 0 and "colour tags" not in err, err
    assert_same(multi, single)
    for f in (single, multi):
        with av.open(str(f)) as c:
            cc = c.streams.video[0].codec_context
            assert (cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range) == (1, 1, 1, 1), f.name


@pytest.mark.slow  # CI runs it (--run-slow)
def test_truncated_source_is_said_as_in_a_single_process_run(ray_local, tmp_path: Path) -> None:
    """The first 300 kB of the sample: the single-process run says where the input stops and exits 1; scale-out
    wrote the decoded frames and said nothing (exit 0)."""
    from psr2video.paths import SAMPLE_CLIP

    src = tmp_path / "trunc.mkv"
    src.write_bytes(Path(SAMPLE_CLIP).read_bytes()[:300_000])
    code, err = upscale(str(src), str(tmp_path / "one.mkv"))
    lines = [ln for ln in err.splitlines() if ln.startswith("Error")]
    assert code == 1 and len(lines) == 1 and "input stops at" in lines[0], err
    code, err = upscale(str(src), str(tmp_path / "many.mkv"), "--workers", "2")
    many = [ln for ln in err.splitlines() if ln.startswith("Error")]
    assert code == 1 and many == [lines[0].replace("one.mkv", "many.mkv")], err
    assert len(decoded(tmp_path / "many.mkv")) == len(decoded(tmp_path / "one.mkv")) > 0  # the frames are kept
    code, err = upscale(str(src), str(tmp_path / "ok.mkv"), "--workers", "2", "--ignore-errors")
    assert code == 0 and "input stops at" in err and "(ignored: --ignore-errors)" in err, err


def _job(src: Path, out: Path, workers: int = 2):
    from psr2video.scaleout import Job, Settings

    st = Settings("mks", 2, None, "auto", None, 0, 1, "ffv1", None, None, None)
    return Job(str(src), str(out), st, workers=workers, segment_seconds=float(SEG))


@pytest.mark.slow  # CI runs it (--run-slow); the default suite stays under 90 s
def test_killed_worker_is_retried(ray_local, clip, tmp_path: Path) -> None:
    from psr2video.scaleout import run
    from psr2video.scaleout.hud import Progress

    class KillOnce(Progress):
        """Kills the worker (SIGKILL) the first time it reports frames of segment 1, mid-segment."""

        def __init__(self) -> None:
            super().__init__()
            self.victims: list[int] = []

        def report(self, worker, pid, segment, done, total, fps, finished=False):
            if segment == 1 and not finished and not self.victims:
                self.victims.append(pid)
                os.kill(pid, 9)
                return None
            return super().report(worker, pid, segment, done, total, fps, finished)

        def killed(self) -> list[int]:
            return self.victims

    src, ref = clip
    out = tmp_path / "out.mkv"
    killer = ray_local.remote(num_cpus=0)(KillOnce).remote()
    s = run(_job(src, out), quiet=True, progress=killer)
    victims = ray_local.get(killer.killed.remote())
    assert len(victims) == 1 and 1 in s.redone
    workers, finished = ray_local.get(killer.snapshot.remote())
    assert finished[1] > 0 and all(w.pid != victims[0] for w in workers.values() if w.segment == 1)
    assert_same(out, ref)


class _StopAfterFirst(threading.Event):
    """Ctrl-C as soon as the work folder's manifest keeps one segment."""

    def __init__(self, manifest: Path) -> None:
        super().__init__()
        self.manifest = manifest

    def is_set(self) -> bool:
        try:
            return bool(json.loads(self.manifest.read_text())["done"])
        except (OSError, ValueError):
            return False


@pytest.mark.slow  # CI runs it (--run-slow); the default suite stays under 90 s
def test_resume_redoes_only_missing(ray_local, clip, tmp_path: Path) -> None:
    from psr2video.scaleout import Interrupted, run
    from psr2video.scaleout.manifest import work_dir

    src, ref = clip
    out = tmp_path / "out.mkv"
    manifest = work_dir(str(out)) / "manifest.json"

    with pytest.raises(Interrupted, match="run the same command again"):
        run(_job(src, out), quiet=True, stop=_StopAfterFirst(manifest))
    assert not out.exists()
    kept = sorted(int(k) for k in json.loads(manifest.read_text())["done"])
    assert kept
    s = run(_job(src, out), quiet=True)
    assert s.reused == kept and sorted(s.redone) == sorted(set(range(s.segments)) - set(kept))
    assert_same(out, ref)


@pytest.mark.slow  # CI runs it (--run-slow); Ray's start-up alone is ~6 s of the default suite
def test_failing_segment_is_named(ray_local, clip, tmp_path: Path) -> None:
    """A segment whose worker dies every time is retried, then named in one line with its attempts. A user's
    mistake that only a worker finds (--backend tensorrt on workers without a GPU) fails at once, in the
    single-process words: it was retried three times, with Ray's task tracebacks, before the one line."""
    from dataclasses import replace

    from psr2video.scaleout import ScaleoutError, run
    from psr2video.scaleout.hud import Progress

    class KillAlways(Progress):
        def report(self, worker, pid, segment, done, total, fps, finished=False):
            if segment == 1 and not finished:
                os.kill(pid, 9)
                return None
            return super().report(worker, pid, segment, done, total, fps, finished)

    src, _ = clip
    job = _job(src, tmp_path / "out.mkv")
    job.retries = 1
    killer = ray_local.remote(num_cpus=0)(KillAlways).remote()
    with pytest.raises(ScaleoutError, match=r"segment 1 \([\d.]+-[\d.]+ s\) failed after 2 attempt\(s\)") as e:
        run(job, quiet=True, progress=killer)
    assert "\n" not in str(e.value) and "the worker process died" in str(e.value)
    job = _job(src, tmp_path / "out2.mkv")
    job.settings = replace(job.settings, backend="tensorrt")
    with pytest.raises(ScaleoutError, match=r"^the tensorrt backend needs a CUDA device.* \(segment \d+, ") as e:
        run(job, quiet=True)
    assert "\n" not in str(e.value) and "attempt" not in str(e.value)


@pytest.mark.slow  # CI runs it (--run-slow)
def test_progress_actor_that_dies_does_not_stop_the_run(ray_local, clip, tmp_path: Path) -> None:
    """The HUD's progress actor killed (the OOM killer, a lost node): the workers' reports and the driver's polls
    raised ActorDiedError, the tasks failed and the run ended in a traceback. Progress is best effort now, and
    the driver's own actor is restarted by Ray."""
    from psr2video.scaleout import run
    from psr2video.scaleout.driver import progress_actor
    from psr2video.scaleout.hud import Progress

    class DiesAtSegment1(Progress):
        def report(self, worker, pid, segment, done, total, fps, finished=False):
            if segment == 1:
                os._exit(1)
            return super().report(worker, pid, segment, done, total, fps, finished)

    src, ref = clip
    out = tmp_path / "out.mkv"
    dying = ray_local.remote(num_cpus=0, max_restarts=0)(DiesAtSegment1).remote()
    s = run(_job(src, out), quiet=True, progress=dying)
    assert s.frames == len(decoded(ref))
    assert_same(out, ref)
    actor = progress_actor(ray_local)  # the driver's own: back after its process is killed
    ray_local.kill(actor, no_restart=False)
    import time

    deadline = time.monotonic() + 60
    while True:
        try:
            assert ray_local.get(actor.snapshot.remote(), timeout=10) == ({}, {})
            break
        except ray_local.exceptions.RayActorError:
            assert time.monotonic() < deadline
            time.sleep(0.5)


@pytest.mark.slow  # CI runs it (--run-slow)
def test_display_matrix_and_field_order_are_joined(ray_local, tmp_path: Path) -> None:
    """A phone clip (display matrix: rotated 90 degrees) and an interlaced one: the single-process output carries
    both (and says so); the segments are NUT, which keeps neither, and the join wrote the scale-out output
    unrotated and progressive-tagged without a word."""
    for name, rotation, tff in (("rotated.mp4", 90, False), ("tff.mkv", 0, True)):
        src = tmp_path / name
        with av.open(str(src), "w") as out:
            v = out.add_stream("libx264", rate=25)
            v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
            v.options = {"preset": "veryfast",
                         "x264-params": "keyint=12:min-keyint=12:scenecut=0" + (":tff=1" if tff else "")}
            if tff:
                v.codec_context.flags |= av.codec.context.Flags.interlaced_dct
                v.codec_context.field_order = 2
            if rotation:
                v.set_display_rotation(rotation)
            for i in range(36):
                img = np.full((48, 64, 3), (i * 7) % 256, np.uint8)
                f = av.VideoFrame.from_ndarray(img, format="rgb24")
                f.pts = i
                out.mux(v.encode(f))
            out.mux(v.encode(None))
        single, multi = tmp_path / f"single-{name}.mkv", tmp_path / f"multi-{name}.mkv"
        assert upscale(str(src), str(single))[0] == 0
        code, err = upscale(str(src), str(multi), "--workers", "2", "--segment-seconds", "0.5")
        assert code == 0, err
        assert ("rotated by 90 degrees" in err) == bool(rotation) and ("interlaced input" in err) == tff, err
        facts = []
        for f in (single, multi):
            with av.open(str(f)) as c:
                s = c.streams.video[0]
                facts.append((int(next(c.decode(s)).rotation or 0), s.codec_context.field_order))
        assert facts[1] == facts[0] == (rotation, 2 if tff else 0), (name, facts)


@pytest.mark.slow  # CI runs it (--run-slow)
def test_size_fits_the_rotated_box_as_a_single_run_does(ray_local, tmp_path: Path) -> None:
    """--size on an anamorphic phone clip (display matrix: 90 degrees, SAR 4:3) cut into NUT segments, which keep
    no rotation: each segment fits the box as shown, from the source's facts, the join equals the single-process
    run, and the square-pixels note is said once, as a single run says it."""
    src = tmp_path / "phone.mp4"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.options = {"preset": "veryfast", "x264-params": "keyint=12:min-keyint=12:scenecut=0"}
        v.codec_context.sample_aspect_ratio = Fraction(4, 3)
        v.set_display_rotation(90)
        for i in range(36):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), (i * 7) % 256, np.uint8), format="rgb24")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    single, multi = tmp_path / "single.mkv", tmp_path / "multi.mkv"
    code, err = upscale(str(src), str(single), "--size", "x96")
    assert code == 0, err
    code, err = upscale(str(src), str(multi), "--size", "x96", "--workers", "2", "--segment-seconds", "0.5")
    assert code == 0, err
    assert err.count("note: the input has non-square pixels (SAR 4:3); --size writes square ones") == 1, err
    sizes = []
    for f in (single, multi):
        with av.open(str(f)) as c:
            sizes.append((c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height))
    assert sizes == [(96, 54), (96, 54)]  # shown 54x96: 4:3 pixels, turned
    assert_same(multi, single)


@pytest.mark.slow  # CI runs it (--run-slow)
def test_crop_auto_is_measured_once_on_the_source(ray_local, tmp_path: Path) -> None:
    """--crop auto with --workers: the bars are found on the source (not on each cut) and every segment cuts the
    same edges; the join equals the single-process run."""
    from test_crop import boxed

    src = boxed(tmp_path / "scope.mkv", n=60, bars=(8, 8, 0, 0))
    single, multi = tmp_path / "single.mkv", tmp_path / "multi.mkv"
    code, err = upscale(str(src), str(single), "--crop", "auto")
    assert code == 0, err
    code, err = upscale(str(src), str(multi), "--crop", "auto", "--workers", "2", "--segment-seconds", "0.5")
    assert code == 0 and err.count("black bars of scope.mkv cut off: 8:8:0:0") == 1, err
    assert_same(multi, single)


@pytest.mark.parametrize("folder", ["/proc", "/sys"])
def test_unwritable_output_folder_is_one_line(tmp_path: Path, folder: str) -> None:
    """An output folder where nothing can be created: the single-process run says "can't write OUT: ..."; with
    --workers the lock of the work folder failed after the scan and Ray's start: a PermissionError traceback
    (/sys), or "another psr2video run is using ..." (/proc) when no other run existed."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'psr2video[ray]')")
    if not Path(folder).is_dir() or os.access(folder, os.W_OK) and folder != "/proc":
        pytest.skip(f"{folder} is not an unwritable folder here")
    src = make_clip(tmp_path / "in.mkv", n=12)
    out = f"{folder}/psr2video-test-out.mkv"
    r = CliRunner().invoke(cli, ["upscale", str(src), out, "--variant", "mks", "-q", "--workers", "2"])
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith(f"Error: can't write {out}: "), r.output


def test_profile_with_workers_is_refused(tmp_path: Path) -> None:
    """--profile pins TensorRT engines (and a wrong name is refused in a single-process run); with --workers it
    was dropped without a word, even 'nonsense', and the run went on with any engine."""
    src = make_clip(tmp_path / "in.mkv", n=12)
    r = CliRunner().invoke(cli, ["upscale", str(src), str(tmp_path / "out.mkv"), "--variant", "mks", "-q",
                                 "--workers", "2", "--profile", "nonsense"])
    assert r.exit_code == 1 and "--profile can't be combined with --workers/--ray" in r.output, r.output
    assert not (tmp_path / "out.mkv").exists()


@pytest.mark.slow  # CI runs it (--run-slow): a Ray start in a child process
def test_sigterm_stops_like_ctrl_c(tmp_path: Path) -> None:
    """kill (SIGTERM) stops a single-process run cleanly; in scale-out Ray's own handler took it (sys.exit, and
    Ray's crash dump '*** SIGTERM received ... PC: @ ...' on stderr, exit 1) instead of the Ctrl-C path."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'psr2video[ray]')")
    import time

    src = make_clip(tmp_path / "in.mkv", n=240)
    out = tmp_path / "out.mkv"
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    p = subprocess.Popen([sys.executable, "-m", "psr2video", "upscale", str(src), str(out), "--variant", "mks",
                          "--codec", "ffv1", "-q", "--workers", "2", "--segment-seconds", SEG],
                         stderr=subprocess.PIPE, text=True, env=env)
    manifest = tmp_path / f".{out.name}.psr2video-work" / "manifest.json"
    deadline = time.monotonic() + 120
    while not manifest.exists() and p.poll() is None and time.monotonic() < deadline:  # Ray is up
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "stopping (SIGTERM" in err and "run the same command again to resume" in err, err
    assert "SIGTERM received" not in err and not out.exists() and manifest.exists(), err


def test_raw_stream_without_timestamps_is_one_line(tmp_path: Path) -> None:
    """A raw H.264 elementary stream has no timestamps: a single process times its frames from the frame rate;
    scale-out crashed with a traceback (NUT's muxer refused the first cut: 'Invalid argument') after Ray's
    start. It is now refused in one line before Ray starts."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'psr2video[ray]')")
    src = tmp_path / "in.h264"
    with av.open(str(src), "w", format="h264") as out:
        v = out.add_stream("libx264", rate=24)
        v.width, v.height, v.pix_fmt = 32, 24, "yuv420p"
        v.options = {"preset": "veryfast", "x264-params": "keyint=6:min-keyint=6:scenecut=0"}
        for i in range(24):
            f = av.VideoFrame.from_ndarray(np.full((24, 32, 3), i * 9, np.uint8), format="rgb24")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    r = CliRunner().invoke(cli, ["upscale", str(src), str(tmp_path / "out.mkv"), "--variant", "mks", "-q",
                                 "--workers", "2", "--segment-seconds", "0.25"])
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 1 and len(lines) == 1 and "has no timestamps" in lines[0], r.output


@pytest.mark.slow  # CI runs it (--run-slow)
def test_resume_with_another_plan_keeps_finished_segments(ray_local, clip, tmp_path: Path) -> None:
    """The plan depends on the worker count (at least one segment per worker) and --segment-seconds, neither of
    which decides a segment's bytes: resuming with another count (a lost node under --ray auto) threw every
    finished segment away ('made with other settings or another source; starting afresh')."""
    from dataclasses import replace

    from psr2video.scaleout import Interrupted, run
    from psr2video.scaleout.manifest import work_dir

    src, ref = clip
    out = tmp_path / "out.mkv"
    manifest = work_dir(str(out)) / "manifest.json"

    with pytest.raises(Interrupted):
        run(_job(src, out), quiet=True, stop=_StopAfterFirst(manifest))
    kept = sorted(int(k) for k in json.loads(manifest.read_text())["done"])
    notes: list[str] = []
    s = run(replace(_job(src, out), segment_seconds=1.0), quiet=True, warn=notes.append)
    assert s.reused == kept and kept, notes
    assert any("keeping the segment plan" in n for n in notes), notes
    assert_same(out, ref)


def _x265_segment(path: Path, threads: int, width: int = 64) -> Path:
    with av.open(str(path), "w", format="nut") as out:
        v = out.add_stream("libx265", rate=24)
        v.width, v.height, v.pix_fmt = width, 48, "yuv420p"
        v.options = {"x265-params": f"log-level=error:frame-threads={threads}:pools={threads}"}
        for i in range(3):
            f = av.VideoFrame.from_ndarray(np.full((48, width, 3), i * 9, np.uint8), format="rgb24")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    return path


def test_x265_segments_from_nodes_with_other_core_counts_join(tmp_path: Path) -> None:
    """x265 writes its settings in an SEI of its headers, frame-threads and numa-pools included, which it picks
    from the node's core count: HEVC segments from a 16-core and a 32-core node were refused at the join
    ('encoded with other parameters; remove the work folder and run again', which fails again)."""
    from psr2video.scaleout.join import JoinError, check_headers

    a, b = _x265_segment(tmp_path / "a.nut", 1), _x265_segment(tmp_path / "b.nut", 3)
    check_headers([a, b])
    with pytest.raises(JoinError):  # a real difference is still refused
        check_headers([a, _x265_segment(tmp_path / "c.nut", 1, width=80)])


def make_decode_order_clip(path: Path, n: int = 48, codec: str = "libx264", open_gop: bool = False) -> Path:
    """libx264 (or libx265) with B-frames whose container times are decode-order times (the frames decode with
    scrambled pts): AVI keeps one time per frame, in decode order; the Matroska one is written with pts := dts
    (as some remuxers do)."""
    avi = path.suffix == ".avi"
    tb = Fraction(1, 24) if avi else TB
    out = av.open(str(path), "w")
    v = out.add_stream(codec, rate=24)
    v.width, v.height, v.pix_fmt = (32, 24, "yuv420p") if codec == "libx264" else (64, 48, "yuv420p")
    v.time_base = v.codec_context.time_base = tb
    params = f"keyint=12:min-keyint=12:scenecut=0:bframes=3:open-gop={int(open_gop)}"
    v.options = ({"preset": "veryfast", "x264-params": params} if codec == "libx264" else
                 {"preset": "veryfast", "x265-params": params + ":log-level=error"})
    rng = np.random.default_rng(1)
    packets = []
    for i in range(n):
        f = av.VideoFrame.from_ndarray(rng.integers(0, 256, (v.height, v.width, 3)).astype(np.uint8), format="rgb24")
        f.pts, f.time_base = round(i / 24 / tb), tb
        packets += v.encode(f)
    packets += v.encode(None)
    d0 = packets[0].dts
    for p in packets:
        if not avi:
            p.pts = p.dts = p.dts - d0
        out.mux(p)
    out.close()
    return path


def scaleout_without_ray(src: Path, out: Path, codec: str = "ffv1", seconds: float = 0.5,
                         counts: dict[str, int] | None = None, min_segments: int = 3) -> tuple[int, int]:
    """What a scale-out run does, in this process: scan, plan, cut, upscale each segment, check it brought back
    the frames the driver expects of it, join; the segments' end-of-run counts are summed into ``counts``."""
    from psr2video.scaleout import split
    from psr2video.scaleout.driver import expected_frames
    from psr2video.scaleout.join import join
    from psr2video.scaleout.tasks import Placement, Settings, upscale_segment

    packets, tb = split.scan(str(src))
    segs = split.plan(packets, tb, seconds, min_segments=2)
    assert len(segs) >= min_segments
    st = Settings("mks", 2, None, "auto", None, 0, 1, codec, None, None, None)
    files = []
    guess = split.guess_state(str(src))
    expected = expected_frames(packets, segs)
    for seg, data in split.cut(str(src), segs, {s.index for s in segs}, split.discarded_tail(packets)):
        r = upscale_segment(st, Placement(), seg, data, None, expected[seg.index], None, split.source_color(str(src)),
                            split.timing(packets, tb, seg, guess), shown=split.shown_span(packets))
        assert r.frames >= expected[seg.index], f"segment {seg.index}: {r.frames} of {expected[seg.index]} frames"
        for k, v in r.counts.items():
            if counts is not None:
                counts[k] = counts.get(k, 0) + v
        files.append(out.parent / f"segment{seg.index}.nut")
        files[-1].write_bytes(r.data)
    return join(str(src), files, str(out), codec, None)


@pytest.mark.parametrize(("name", "output", "codec"), [
    ("bframes.avi", "out.mkv", "libx264"), ("bframes.avi", "out.avi", "libx264"),
    ("decode-order.mkv", "out.mkv", "libx264"),
    ("decode-order.mkv", "out.mkv", "libx265")])  # HEVC gives out two frames on one packet at a cut
def test_decode_order_timestamps_join(tmp_path: Path, name: str, output: str, codec: str) -> None:
    """B-frames in AVI, or Matroska whose pts come in decode order: the frames decode with times that go back,
    and each segment nudged them one tick of the cut's finer NUT time base; rounded back to the source's at the
    join that gave two frames one time (AVI: a segment's nudged end also overran the next one's start), and
    the join failed ('Invalid argument') after all the work. Now the times are the single-process run's (AVI)
    or at least strictly increasing, with every frame (ffv1: an AVI output has the single-process times too)."""
    src = make_decode_order_clip(tmp_path / name, codec=codec)
    out = tmp_path / output
    frames, _ = scaleout_without_ray(src, out)
    ref = tmp_path / f"ref{out.suffix}"
    assert upscale(str(src), str(ref))[0] == 0
    got, want = [p for p, _ in decoded(out)], [p for p, _ in decoded(ref)]
    assert frames == len(got) == len(want) == 48
    assert got == want


def test_a_join_the_muxer_refuses_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A joined packet the muxer refuses (it was Matroska with decode-order times into AVI with libx264's
    B-frames, which joins now; here a packet whose pts comes before its dts) ended the run in a raw 'Invalid
    argument' traceback after all the work. The join's refusal is one line now (the driver adds where the
    finished segments are kept)."""
    from psr2video.scaleout import join as J

    packets = J._video_packets

    def one_bad(*args, **kwargs):
        for i, (t, n, p) in enumerate(packets(*args, **kwargs)):
            if i == 5 and p.dts is not None:
                p.pts = p.dts - 3
            yield t, n, p

    monkeypatch.setattr(J, "_video_packets", one_bad)
    src = make_decode_order_clip(tmp_path / "decode-order.mkv")
    with pytest.raises(J.JoinError, match=r"^the muxer refused the joined video \(.+\)$") as e:
        scaleout_without_ray(src, tmp_path / "out.avi", codec="libx264")
    assert "\n" not in str(e.value) and not (tmp_path / "out.avi").exists()


def test_avi_source_into_avi_with_b_frames_is_the_single_process_file(tmp_path: Path) -> None:
    """An AVI with B-frames, upscaled into AVI with libx264's B-frames: the joined file sat one or two frames off
    the single-process one (each timed its frames by a reorder delay's guess). Both time an AVI's frames in
    display order now, and the joined packets' times are the single-process file's, every frame."""
    src = make_decode_order_clip(tmp_path / "bframes.avi")
    multi, single = tmp_path / "multi.avi", tmp_path / "single.avi"
    frames, _ = scaleout_without_ray(src, multi, codec="libx264")
    r = CliRunner().invoke(cli, ["upscale", str(src), str(single), "--variant", "mks", "--codec", "libx264", "-q"])
    assert r.exit_code == 0, r.output
    times = []
    for f in (multi, single):
        with av.open(str(f)) as c:
            times.append([(p.pts, p.dts) for p in c.demux(c.streams.video[0]) if p.size])
    assert frames == len(times[0]) == 48 and times[0] == times[1]


def test_decode_order_nudges_are_the_single_process_ones(tmp_path: Path) -> None:
    """Each segment guessed its frames' times afresh from its cut (whose NUT keeps no dts): the first frames after
    every cut were timed off and nudged, the join nudged more, and the summed 'frames nudged' note said many times
    the single-process count (84 + 3 vs 1 on a 100-frame AVI). Segments now start with the source's dts and
    timestamp guess; the count is the single-process one, give or take one per cut. (An AVI's frames are timed in
    display order now, with nothing to nudge: ``test_avi_with_b_frames_is_timed_in_display_order``.)"""
    src = make_decode_order_clip(tmp_path / "decode-order.mkv", n=96)
    counts: dict[str, int] = {}
    frames, moved = scaleout_without_ray(src, tmp_path / "out.mkv", seconds=1.0, counts=counts)
    code, err = upscale(str(src), str(tmp_path / "ref.mkv"))
    single = int(re.search(r"note: (\d+) frame\(s\) had non-increasing timestamps", err).group(1))
    assert code == 0 and frames == 96
    assert abs(min(frames, counts.get("fixed_pts", 0) + moved) - single) <= 3, (counts, moved, single)


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_open_gop_keyframes_are_told_from_idr(tmp_path: Path, codec: str) -> None:
    """A decode-order source with open GOPs lost frames at every cut (leading frames can't be told apart by their
    times): the scan now reads each keyframe's NAL type (Matroska's length prefixes and AVI's start codes), and
    such a source is cut only at IDR keyframes."""
    from psr2video.scaleout import split

    for name, open_gop in (("closed.mkv", False), ("open.mkv", True), ("open.avi", True)):
        if codec == "libx265" and name.endswith(".avi"):
            continue  # AVI holds no HEVC
        src = make_decode_order_clip(tmp_path / name, codec=codec, open_gop=open_gop)
        packets, tb = split.scan(str(src))
        idr = [p.idr for p in packets if p.key]
        assert idr[0] is True and len(idr) >= 4
        assert all(x is (not open_gop) for x in idr[1:]), idr
        segs = split.plan(packets, tb, 0.5, closed_only=True)
        assert len(segs) == (1 if open_gop else len(split.plan(packets, tb, 0.5))) and segs[0].first == 0


@pytest.mark.slow  # CI runs it (--run-slow)
def test_open_gop_decode_order_source_keeps_every_frame(ray_local, tmp_path: Path) -> None:
    """Scale-out of a decode-order source with open GOPs wrote 42 of 48 frames (then failed its frame check); now
    it is cut only at IDR keyframes, said in one note, and the output is the single-process one."""
    src = make_decode_order_clip(tmp_path / "open.mkv", open_gop=True)
    code, err = upscale(str(src), str(tmp_path / "one.mkv"))
    assert code == 0, err
    code, err = upscale(str(src), str(tmp_path / "many.mkv"), "--workers", "2", "--segment-seconds", SEG)
    assert code == 0 and "cut only at IDR keyframes" in err, err
    assert [p for p, _ in decoded(tmp_path / "many.mkv")] == [p for p, _ in decoded(tmp_path / "one.mkv")]


@pytest.mark.slow  # CI runs it (--run-slow)
def test_short_segment_is_one_line(ray_local, clip, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A segment that brings back fewer frames than its span holds (and says no damage) was kept, and the join
    wrote a shorter video without a word. Now it is one line, and the segment is not kept for a resume."""
    from psr2video.scaleout import ScaleoutError, driver, run
    from psr2video.scaleout.manifest import work_dir

    real = driver.expected_frames  # segment 1 is told its span holds one frame more than it does
    monkeypatch.setattr(driver, "expected_frames", lambda p, s: {k: v + (k == 1) for k, v in real(p, s).items()})
    src, _ = clip
    out = tmp_path / "out.mkv"
    with pytest.raises(ScaleoutError, match=r"^segment 1 \([\d.]+-[\d.]+ s\) upscaled (\d+) of its \d+ frames") as e:
        run(_job(src, out), quiet=True)
    assert "\n" not in str(e.value) and not out.exists()
    manifest = work_dir(str(out)) / "manifest.json"  # (gone when no segment had finished: nothing to resume)
    assert not manifest.exists() or "1" not in json.loads(manifest.read_text())["done"]


def test_matroska_output_has_the_source_frame_rate(tmp_path: Path) -> None:
    """The joined Matroska said '1000 fps' (its video stream was made from the segments' NUT, which keeps no
    frame rate, so no DefaultDuration was written); now the source's, as a single-process run writes it."""
    src = make_decode_order_clip(tmp_path / "in.avi")
    multi, single = tmp_path / "multi.mkv", tmp_path / "single.mkv"
    scaleout_without_ray(src, multi)
    assert upscale(str(src), str(single))[0] == 0
    rates = []
    for f in (multi, single):
        with av.open(str(f)) as c:
            rates.append(c.streams.video[0].average_rate)
    assert rates == [24, 24], rates


@pytest.mark.parametrize("codec", ["ffv1", "libx264"])
def test_avi_output_has_the_source_frame_rate(tmp_path: Path, codec: str) -> None:
    """AVI has one frame per tick of its time base: a single-process run writes it at the source's rate, but
    the join (a Writer with a video template) skipped that and wrote a '1000 fps' stream (Matroska's 1 ms)
    padded with empty frames. Now the joined AVI is the single-process one: 24 fps, the same frame slots."""
    src = tmp_path / "cfr.mkv"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=24)
        v.width, v.height, v.pix_fmt = 32, 24, "yuv420p"
        v.options = {"preset": "veryfast", "x264-params": "keyint=12:min-keyint=12:scenecut=0:bframes=2"}
        for i in range(36):
            f = av.VideoFrame.from_ndarray(np.full((24, 32, 3), i * 7 % 256, np.uint8), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, 24)
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    multi, single = tmp_path / "multi.avi", tmp_path / "single.avi"
    scaleout_without_ray(src, multi, codec)
    r = CliRunner().invoke(cli, ["upscale", str(src), str(single), "--variant", "mks", "--codec", codec, "-q"])
    assert r.exit_code == 0, r.output
    facts = []
    for f in (multi, single):
        with av.open(str(f)) as c:
            s = c.streams.video[0]
            facts.append((s.time_base, s.average_rate, [(p.pts, p.dts) for p in c.demux(s) if p.size]))
    assert facts[0][:2] == (Fraction(1, 24), 24)
    assert facts[0] == facts[1]


def test_segment_result_carries_its_own_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The single-process run's end-of-run counts (frames nudged, NaN/inf outputs replaced) were lost in scale-out:
    a segment now brings back its own, not the worker's running total (its Upscaler is kept between segments)."""
    from psr2video.runtime.upscaler import Upscaler
    from psr2video.scaleout import split
    from psr2video.scaleout.tasks import Placement, Settings, upscale_segment

    calls = {"frames": 0}
    real = Upscaler.__call__

    def counting(self, x, *a, **k):
        calls["frames"] += x.shape[0]
        return real(self, x, *a, **k)

    monkeypatch.setattr(Upscaler, "__call__", counting)
    monkeypatch.setattr(Upscaler, "nonfinite", property(lambda self: 2 * calls["frames"]))  # 2 per frame
    src = make_decode_order_clip(tmp_path / "in.avi", n=36)
    packets, tb = split.scan(str(src))
    segs = split.plan(packets, tb, 0.5)
    st = Settings("mks", 2, None, "torch", None, 0, 1, "ffv1", None, None, None)
    results = [upscale_segment(st, Placement(), seg, data, None, 0) for seg, data in split.cut(str(src), segs, {0, 1})]
    for r in results:
        assert r.counts["nonfinite"] == 2 * r.frames and r.counts["fixed_pts"] > 0, r.counts


@pytest.mark.slow  # CI runs it (--run-slow)
def test_counts_are_summed_at_the_end(ray_local, tmp_path: Path) -> None:
    """Scale-out said nothing of the frames whose times were nudged (a single-process run says it once at the
    end); now one summed line, as the single-process run words it."""
    src = make_decode_order_clip(tmp_path / "in.mkv")
    code, err = upscale(str(src), str(tmp_path / "one.mkv"))
    assert code == 0 and "were nudged" in err, err
    code, err = upscale(str(src), str(tmp_path / "many.mkv"), "--workers", "2", "--segment-seconds", SEG)
    lines = [ln for ln in err.splitlines() if "non-increasing timestamps" in ln]
    assert code == 0 and len(lines) == 1 and lines[0].startswith("note: "), err
    assert decoded(tmp_path / "many.mkv")[-1][0] == decoded(tmp_path / "one.mkv")[-1][0]


@pytest.mark.slow  # CI runs it (--run-slow)
def test_hwaccel_on_cpu_workers_is_said(ray_local, clip, tmp_path: Path) -> None:
    """--hwaccel cuda on CPU workers was dropped without a word (a single-process run says NVDEC can't start and
    decodes in software); now it is said once, in the single-process words where this machine has no NVDEC.
    An unknown kind is the single-process one-line error."""
    src, _ = clip
    code, err = upscale(str(src), str(tmp_path / "one.mkv"), "--hwaccel", "cuda", "--device", "cpu")
    assert code == 0, err
    single = [ln for ln in err.splitlines() if "--hwaccel" in ln]
    code, err = upscale(str(src), str(tmp_path / "many.mkv"), "--hwaccel", "cuda", "--device", "cpu",
                        "--workers", "2", "--segment-seconds", SEG)
    multi = [ln for ln in err.splitlines() if "--hwaccel" in ln]
    assert code == 0 and len(multi) == 1 and (multi == single or not single), err
    code, err = upscale(str(src), str(tmp_path / "bad.mkv"), "--hwaccel", "nosuch", "--workers", "2")
    lines = [ln for ln in err.splitlines() if ln.startswith("Error")]
    assert code == 1 and len(lines) == 1 and "unknown --hwaccel 'nosuch'" in lines[0], err


def test_long_last_frame_is_not_a_lost_tail(tmp_path: Path) -> None:
    """A VFR source whose last frame lasts 1.5 s is whole, as the single-process reader says (it knows that frame's
    duration); the scale-out's check had only the frame rate and called it truncated before any work."""
    import av
    import numpy as np

    from psr2video.scaleout import split

    src = tmp_path / "long_last.mkv"
    pts = list(range(0, 1000, 40))
    with av.open(str(src), "w") as o:
        v = o.add_stream("ffv1", rate=25)
        v.width = v.height = 32
        v.pix_fmt = "yuv420p"
        v.time_base = Fraction(1, 1000)
        for i, t in enumerate([*pts, None]):
            fr = None
            if t is not None:
                fr = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i, np.uint8), "rgb24")
                fr.pts, fr.time_base = t, Fraction(1, 1000)
            for p in v.encode(fr):
                p.duration = 1500 if p.pts == pts[-1] else 40
                o.mux(p)
    packets, tb = split.scan(str(src))
    assert split.truncation(str(src), packets, tb) == ""
    code, err = upscale(str(src), str(tmp_path / "one.mkv"))
    assert code == 0 and "input stops" not in err, err  # the single-process run agrees


def test_local_ray_that_fails_to_start_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a busy machine Ray's node can miss its start-up window; ray.init raises a bare Exception, which
    came out as a traceback."""
    import types

    def init(**_: object) -> None:
        raise Exception("The current node timed out during startup. This could happen because some of the Ray "
                        "processes failed to startup.\n(more lines)")

    fake = types.SimpleNamespace(is_initialized=lambda: False, init=init)
    monkeypatch.setitem(sys.modules, "ray", fake)
    src = make_clip(tmp_path / "in.mkv", n=4)
    code, err = upscale(str(src), str(tmp_path / "out.mkv"), "--workers", "2")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert lines[0].startswith("Error: can't start Ray on this machine: The current node timed out"), err
    assert not (tmp_path / "out.mkv").exists()


def _fake_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in for Ray that can't start: what is checked before Ray starts is all a test sees."""
    import types

    def init(**_: object) -> None:
        raise AssertionError("Ray was started; the mistake should have been found before")

    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(is_initialized=lambda: False, init=init))


def test_segment_notes_about_the_cut_container_are_left_out(tmp_path: Path) -> None:
    """A source with non-square pixels into ffv1: every segment said 'non-square pixels ... ffv1 in nut ... use an
    .mp4 / .mov file' (the segment's NUT container, N times); the join says what holds for OUT, once."""
    from psr2video.scaleout import split
    from psr2video.scaleout.tasks import Placement, Settings, upscale_segment

    src = tmp_path / "anamorphic.mkv"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=24)  # the pixel shape in the bitstream: the cut keeps it
        v.width, v.height, v.pix_fmt = 32, 24, "yuv420p"
        v.codec_context.sample_aspect_ratio = Fraction(4, 3)
        v.options = {"preset": "veryfast", "x264-params": "keyint=6:min-keyint=6:scenecut=0:bframes=0"}
        for i in range(12):
            f = av.VideoFrame.from_ndarray(np.full((24, 32, 3), i * 20, np.uint8), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, 24)
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    packets, tb = split.scan(str(src))
    segs = split.plan(packets, tb, 0.25)
    st = Settings("mks", 2, None, "torch", None, 0, 1, "ffv1", None, None, None)
    seg, data = next(iter(split.cut(str(src), segs, {0})))
    r = upscale_segment(st, Placement(), seg, data, None, 6, None, split.source_color(str(src)))
    assert r.frames == 6 and seg.end is not None
    assert not [n for n in r.notes if "non-square" in n or re.search(r"\bnut\b", n)], r.notes


def make_mid_gop_clip(path: Path, skip: int = 5, n: int = 48, bframes: int = 0) -> Path:
    """A capture that starts mid-GOP (a TS recording, an HLS piece, a stream-copied cut): libx264 with a keyframe
    every 12 frames, written from its ``skip``-th packet, so the first packets have no keyframe before them."""
    out = av.open(str(path), "w")
    v = out.add_stream("libx264", rate=24)
    v.width, v.height, v.pix_fmt = 32, 24, "yuv420p"
    v.time_base = v.codec_context.time_base = TB
    v.options = {"preset": "veryfast", "x264-params": f"keyint=12:min-keyint=12:scenecut=0:bframes={bframes}"}
    rng = np.random.default_rng(2)
    packets = []
    for i in range(n):
        f = av.VideoFrame.from_ndarray(rng.integers(0, 256, (24, 32, 3)).astype(np.uint8), format="rgb24")
        f.pts, f.time_base = round(i * 1000 / 24), TB
        packets += v.encode(f)
    packets += v.encode(None)
    for p in packets[skip:]:
        out.mux(p)
    out.close()
    return path


@pytest.mark.parametrize("bframes", [0, 2])
def test_source_that_starts_mid_gop(tmp_path: Path, bframes: int) -> None:
    """The packets before the first keyframe give no frame (no decoder outputs a frame without its references),
    but they were counted for the first segment: 'segment 0 (0.00-1.58 s) upscaled 24 of its 31 frames' where a
    single run writes them all. Each segment now brings back the frames it is expected to, and the joined video
    is the single-process one frame for frame."""
    from psr2video.scaleout import split
    from psr2video.scaleout.driver import expected_frames

    src = make_mid_gop_clip(tmp_path / "midgop.mkv", bframes=bframes)
    packets, tb = split.scan(str(src))
    assert not packets[0].key
    ref = tmp_path / "ref.mkv"
    assert upscale(str(src), str(ref))[0] == 0
    want = decoded(ref)
    segs = split.plan(packets, tb, 0.5, min_segments=2)
    assert sum(expected_frames(packets, segs).values()) == len(want)
    out = tmp_path / "out.mkv"
    frames, _ = scaleout_without_ray(src, out)  # asserts every segment's count
    assert frames == len(want)
    assert_same(out, ref)


def make_edit_list_clip(path: Path, n: int = 36, cut_ms: int = 0, start_ms: int = 0) -> Path:
    """An MP4 (libx264, B-frames) whose edit list leaves out the frames before ``start_ms`` (the pre-roll of a
    stream-copied cut: their times are negative) and the last ``cut_ms`` ms (the edit is shortened in place)."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=24)
        v.width, v.height, v.pix_fmt = 32, 24, "yuv420p"
        v.time_base = v.codec_context.time_base = TB
        v.options = {"preset": "veryfast", "x264-params": "keyint=12:min-keyint=12:scenecut=0:bframes=2"}
        rng = np.random.default_rng(3)
        for i in range(n):
            f = av.VideoFrame.from_ndarray(rng.integers(0, 256, (24, 32, 3)).astype(np.uint8), format="rgb24")
            f.pts, f.time_base = round(i * 1000 / 24) - start_ms, TB
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    return shorten_edit_list(path, cut_ms) if cut_ms else path


def shorten_edit_list(path: Path, ms: int) -> Path:
    """End an MP4's edit list ``ms`` earlier (in place): the frames past its new end are discarded."""
    import struct

    data = bytearray(path.read_bytes())
    at = data.find(b"elst") + 12  # version 0, one entry: its duration (movie time scale: ms)
    data[at:at + 4] = struct.pack(">I", struct.unpack(">I", data[at:at + 4])[0] - ms)
    path.write_bytes(bytes(data))
    return path


def test_frames_the_container_discards_are_not_written(tmp_path: Path) -> None:
    """An MP4 whose edit list ends before its last frame (the shared box_640x480.mp4): a single run's decoder drops
    that frame (the demuxer marks its packet discarded), but a cut keeps no such mark and the segment wrote it:
    456 frames where a single run writes 455 (here 36 for 35). The segments drop it by its time now."""
    from psr2video.scaleout import split

    src = make_edit_list_clip(tmp_path / "edit.mp4", cut_ms=60)
    packets, _ = split.scan(str(src))
    assert sum(p.discard for p in packets) == 1 and not packets[-1].discard  # not the last in decode order
    scaleout_is_single(src, tmp_path, 35)


def scaleout_is_single(src: Path, tmp_path: Path, frames: int) -> None:
    """A scale-out run (two segments at least, no Ray) writes the single-process run's ``frames`` frames."""
    ref, out = tmp_path / "ref.mkv", tmp_path / "out.mkv"
    assert upscale(str(src), str(ref))[0] == 0
    written, _ = scaleout_without_ray(src, out, min_segments=2)
    assert written == len(decoded(ref)) == frames
    assert_same(out, ref)


def test_discarded_last_frame_of_a_decode_order_source(tmp_path: Path) -> None:
    """The shared box_640x480.mp4: times in decode order (pts = dts) and an edit list that ends before the last
    packet. Dropping its frame by its own time after the reader had timed it left the frames before it one time
    off; the cut leaves the discarded packets at the end out, so the frames come out, and are timed, as in a
    single run."""
    from psr2video.scaleout import split

    src = shorten_edit_list(make_decode_order_clip(tmp_path / "decode-order.mp4"), 50)
    packets, _ = split.scan(str(src))
    assert [p.discard for p in packets[-2:]] == [False, True] and split.discarded_tail(packets) == 47
    scaleout_is_single(src, tmp_path, 47)


def test_frames_before_time_zero_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream-copied MP4 cut keeps the frames from the keyframe before its start, at negative times, which NUT
    (the cuts' container) refuses: the cutter's FFmpeg error came out as a traceback after Ray's start. It is one
    line before Ray starts now."""
    src = make_edit_list_clip(tmp_path / "cut.mp4", start_ms=125)
    _fake_ray(monkeypatch)
    code, err = upscale(str(src), str(tmp_path / "out.mkv"), "--workers", "2")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "before time 0" in lines[0], err


@pytest.mark.parametrize(("make", "words"), [
    ("audio", "no video stream in"), ("garbage", "not a readable video file"), ("empty", "not a readable video file"),
    ("moovless", "not a readable video file")])
def test_unreadable_or_videoless_input_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: str,
                                                   words: str) -> None:
    """An audio-only file, garbage, an empty file or an MP4 cut before its moov with --workers: a Python traceback
    (max() of an empty list, av.error.InvalidDataError); now the single run's one line, before Ray starts."""
    src = tmp_path / "in.mkv"
    if make == "audio":
        src = tmp_path / "in.mka"
        with av.open(str(src), "w") as out:
            a = out.add_stream("aac", rate=48000)
            a.layout = "stereo"
            fr = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
            fr.sample_rate, fr.pts = 48000, 0
            for p in [*a.encode(fr), *a.encode(None)]:
                out.mux(p)
    elif make == "moovless":
        src = tmp_path / "in.mp4"
        full = tmp_path / "full.mp4"
        with av.open(str(full), "w") as out:  # the moov is written at the end: cut before it
            v = out.add_stream("libx264", rate=24)
            v.width, v.height, v.pix_fmt = 32, 24, "yuv420p"
            for i in range(24):
                f = av.VideoFrame.from_ndarray(np.full((24, 32, 3), i * 9, np.uint8), format="rgb24")
                f.pts, f.time_base = i, Fraction(1, 24)
                out.mux(v.encode(f))
            out.mux(v.encode(None))
        src.write_bytes(full.read_bytes()[:full.stat().st_size // 2])
    else:
        src.write_bytes(b"" if make == "empty" else b"\x00junk!")
    _fake_ray(monkeypatch)
    code, err = upscale(str(src), str(tmp_path / "out.mkv"), "--workers", "2")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0], err


@pytest.mark.parametrize(("codec", "pix_fmt", "words"), [
    ("libx264", "pal8", "libx264 can't encode --pix-fmt pal8"),
    ("ffv1", "bgr0", "--pix-fmt bgr0 is not a planar YUV/grey format")])
def test_pix_fmt_the_pipeline_refuses_is_one_line_before_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             codec: str, pix_fmt: str, words: str) -> None:
    """--pix-fmt pal8 with --workers: every worker refused it, with Ray's task tracebacks, three times each,
    before the one line. It is checked on the driver now, with the single run's words, before Ray starts."""
    src = make_clip(tmp_path / "in.mkv", n=4)
    _fake_ray(monkeypatch)
    r = CliRunner().invoke(cli, ["upscale", str(src), str(tmp_path / "out.mkv"), "--variant", "mks", "-q",
                                 "--codec", codec, "--pix-fmt", pix_fmt, "--workers", "2"])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1 and words in lines[0], r.output


def test_user_error_in_a_worker_is_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's mistake that only a worker finds (--backend tensorrt on a worker without a GPU) was retried
    three times (retry_exceptions=True); it is raised as SegmentError now, which is not in the classes Ray
    retries (RETRY_ON), also where the library's error is a RuntimeError too (EngineBuildError)."""
    from psr2video.runtime.trt_backend import EngineBuildError
    from psr2video.scaleout import split, tasks
    from psr2video.scaleout.tasks import RETRY_ON, Placement, SegmentError, Settings, upscale_segment

    src = make_clip(tmp_path / "in.mkv", n=12)
    packets, tb = split.scan(str(src))
    seg, data = next(iter(split.cut(str(src), split.plan(packets, tb, 10.0), {0})))
    st = Settings("mks", 2, None, "tensorrt", None, 0, 1, "ffv1", None, None, None)
    with pytest.raises(SegmentError, match="the tensorrt backend needs a CUDA device") as e:
        upscale_segment(st, Placement(), seg, data, None, 12)
    assert not isinstance(e.value, RETRY_ON)

    def build_fails(*_: object) -> None:
        raise EngineBuildError("the engine can't be built for this GPU")

    monkeypatch.setattr(tasks, "_upscaler", build_fails)
    assert isinstance(EngineBuildError("x"), RETRY_ON)  # why it is wrapped
    with pytest.raises(SegmentError, match="can't be built") as e:
        upscale_segment(dataclasses.replace(st, backend="torch"), Placement(), seg, data, None, 12)
    assert not isinstance(e.value, RETRY_ON)


def test_worker_reports_its_segment_frame_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The HUD showed '22/153', '1/129' for 24-frame segments: the pipeline sets its Stats' total to its own guess
    from the cut, over the segment's count. Every report now carries the segment's own count; a progress actor
    that has died is left alone (the segment is still done)."""
    import types

    from psr2video.scaleout import split
    from psr2video.scaleout.tasks import Placement, Settings, upscale_segment

    class Dead(Exception):
        pass

    reports: list[tuple] = []

    def get(ref: object, timeout: float | None = None) -> object:
        if ref == "dead":
            raise Dead("the actor died")
        return ref

    exceptions = types.SimpleNamespace(RayActorError=Dead, GetTimeoutError=TimeoutError, ObjectLostError=KeyError)
    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(get=get, exceptions=exceptions))

    class Actor:
        def __init__(self, dies: bool) -> None:
            self.report = types.SimpleNamespace(remote=lambda *a: "dead" if dies else reports.append(a) or a)

    src = make_clip(tmp_path / "in.mkv", n=24)
    packets, tb = split.scan(str(src))
    segs = split.plan(packets, tb, 0.5)
    st = Settings("mks", 2, None, "torch", None, 0, 1, "ffv1", None, None, None)
    got = dict(split.cut(str(src), segs, {0, 1}))
    r = upscale_segment(st, Placement(), segs[0], got[segs[0]], None, 12, Actor(dies=False))
    assert r.frames == 12 and reports and {a[4] for a in reports} == {12}, reports  # (.., done, total, ..)
    assert reports[-1][3] == 12 and reports[-1][6] is True
    assert upscale_segment(st, Placement(), segs[1], got[segs[1]], None, 12, Actor(dies=True)).frames == 12


def test_hud_lists_only_workers_heard_from_lately() -> None:
    """The table listed every worker pid ever seen as 'idle', exited ones (killed and replaced) included; it lists
    those heard from in the last 30 s now, as the plain line does, and counts a retried segment once."""
    import io
    import time

    from psr2video.scaleout.hud import Board, ScaleoutHud, WorkerState

    now = time.time()
    board = Board(48, 4)
    board.workers = {"h:pid1": WorkerState(1, 0, 0, 12, 0.0, True, now - 120),  # exited long ago
                     "h:pid2": WorkerState(2, 1, 5, 12, 0.0, False, now - 120),  # killed mid-segment 1
                     "h:pid3": WorkerState(3, 1, 7, 12, 2.0, False, now),  # segment 1 again
                     "h:pid4": WorkerState(4, 2, 12, 12, 0.0, True, now - 1)}  # just finished segment 2
    board.finished = {0: 12, 2: 12}
    hud = ScaleoutHud(board, "t", stream=io.StringIO())
    assert hud._table().row_count == 2
    assert board.done == 12 + 12 + 7
    assert "h:pid2" not in board.line() and "h:pid3" in board.line()


def _summary(**kw: object):
    from psr2video.scaleout import Summary
    from psr2video.scaleout.tasks import Placement

    base = dict(frames=240, segments=10, redone=[8, 9], reused=list(range(8)), seconds=16.0, workers=2,
                placement=Placement("cpu", 1), work_dir=Path("w"), upscaled=48)
    return Summary(**{**base, **kw})


def test_summary_speed_is_of_the_frames_upscaled_now(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A resumed run said 'done: 240 frames in 17.3 s (13.8 fps) ... (2 upscaled, 8 resumed)' with 48 frames
    upscaled: the speed counted the resumed frames. And '1 frames'."""
    import psr2video.scaleout as so

    src = make_clip(tmp_path / "in.mkv", n=4)
    _fake_ray(monkeypatch)
    for summary, words in ((_summary(), "done: 240 frames (48 upscaled in this run) in 16.0 s (3.0 fps)"),
                           (_summary(frames=1, segments=1, redone=[0], reused=[], upscaled=1),
                            "done: 1 frame in 16.0 s (0.1 fps) on 2 CPU (1 thread each) worker(s), 1 segment")):
        monkeypatch.setattr(so, "run", lambda *a, s=summary, **k: s)
        code, err = upscale(str(src), str(tmp_path / "out.mkv"), "--workers", "2")
        assert code == 0 and words in err, err


def test_second_ctrl_c_is_one_line_and_exit_130(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second Ctrl-C (while Ray starts) printed click's 'Aborted!' and exit 1; a single run says 'psr2video:
    aborted; partial output removed' and exits 130, and so does scale-out now."""
    import psr2video.scaleout as so

    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    src = make_clip(tmp_path / "in.mkv", n=4)
    _fake_ray(monkeypatch)
    monkeypatch.setattr(so, "run", interrupted)
    code, err = upscale(str(src), str(tmp_path / "out.mkv"), "--workers", "2")
    assert code == 130 and err.strip().splitlines() == ["psr2video: aborted; partial output removed"], err


def test_a_full_disk_in_a_worker_is_retried_not_called_a_mistake(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """User mistakes in a worker are raised as SegmentError so that Ray does not retry them; a worker's full disk
    was wrapped the same way and failed the whole run at once, as if the user had erred. It stays retryable."""
    import errno

    import psr2video.video.writer as W
    from psr2video.scaleout import split
    from psr2video.scaleout.tasks import Placement, SegmentError, Settings, upscale_segment

    def full(self, frame):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(W.Writer, "_encode", full)
    src = make_clip(tmp_path / "in.mkv")
    packets, tb = split.scan(str(src))
    segs = split.plan(packets, tb, 0.5, min_segments=2)
    st = Settings("mks", 2, None, "auto", None, 0, 1, "ffv1", None, None, None)
    seg, data = next(iter(split.cut(str(src), segs, {segs[0].index})))
    with pytest.raises(Exception) as e:
        upscale_segment(st, Placement(), seg, data, None, 10, None, split.source_color(str(src)))
    assert "disk full" in str(e.value) and not isinstance(e.value, SegmentError), repr(e.value)


# 25 fps, a 12.5 fps stretch, a 50 fps one (frames closer than AVI's tick), a 1 s hold; keyframes every 20
_VFR_HOLD = ([i * 40 for i in range(25)] + [1000 + i * 80 for i in range(12)] + [1960 + i * 20 for i in range(25)]
             + [3000, 3040, 3080, 4080, 4120, 4160], 20)
# gaps of 1-3 frames, keyframes every 10: the last cut's own average rate is none
_VFR_GAPS = ([int(t) for t in np.cumsum([0, *[40, 80, 120, 40, 40, 80, 40, 120, 80, 40] * 4])], 10)


@pytest.mark.slow  # CI runs it (--run-slow)
@pytest.mark.parametrize("times, keyint", [_VFR_HOLD, _VFR_GAPS])
def test_vfr_into_avi_joins(ray_local, tmp_path: Path, times: list[int], keyint: int) -> None:
    """AVI stores no pts: a variable-rate source's frames, nudged onto the join's ticks, got a pts before their
    shifted dts and the muxer refused the joined video after all the work; the i-th packet now takes the i-th
    presentation time, as the single-process writer does (each frame on its own tick, in order). And each
    segment's encoder is given the source's frame rate: a cut's own (none, for a short VFR tail) made x264 pick
    another level for it, and the join refused the segments as "encoded with other parameters"."""
    src = tmp_path / "vfr.mkv"
    with av.open(str(src), "w") as o:
        v = o.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 32, 24, "yuv420p"
        v.time_base = v.codec_context.time_base = Fraction(1, 1000)
        v.options = {"preset": "veryfast", "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=3"}
        for i, t in enumerate(times):
            f = av.VideoFrame.from_ndarray(np.full((24, 32, 3), i * 5 % 256, np.uint8), format="rgb24")
            f.pts, f.time_base = int(t), Fraction(1, 1000)
            o.mux(v.encode(f.reformat(format="yuv420p")))
        o.mux(v.encode(None))
    out = tmp_path / "multi.avi"
    r = CliRunner().invoke(cli, ["upscale", str(src), str(out), "--variant", "mks", "-q", "--workers", "2",
                                 "--segment-seconds", "1"])
    assert r.exit_code == 0, r.output
    with av.open(str(out)) as c:
        ticks = [p.dts for p in c.demux(c.streams.video[0]) if p.size]
    assert len(ticks) == len(times) and ticks == sorted(set(ticks))  # (the 50 fps stretch nudged, said)


def _video_timing(path: Path) -> list[tuple[int, int]]:
    """(pts, duration) of the video packets, in presentation order."""
    with av.open(str(path)) as c:
        return sorted((p.pts, p.duration) for p in c.demux(c.streams.video[0]) if p.size)


def make_ms_avi(path: Path, n: int = 72) -> Path:
    """An AVI of 24 fps frames with B-frames on a 1 ms time base (as PyAV writes it: the file's rate is 1000)."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=24)
        v.width, v.height, v.pix_fmt = 32, 24, "yuv420p"
        v.time_base = v.codec_context.time_base = TB
        v.options = {"preset": "veryfast", "x264-params": "keyint=24:min-keyint=24:scenecut=0:bframes=2"}
        for i in range(n):
            f = av.VideoFrame.from_ndarray(np.full((24, 32, 3), i * 3 % 256, np.uint8), format="rgb24")
            f.pts, f.time_base = round(i * 1000 / 24), TB
            out.mux(v.encode(f.reformat(format="yuv420p")))
        out.mux(v.encode(None))
    return path


@pytest.mark.parametrize("name", ["ms.avi", "vfr.mkv"])
def test_joined_frames_last_what_they_last_in_a_single_run(tmp_path: Path, name: str) -> None:
    """A segment's NUT keeps no durations and its demuxer guessed them (none for its first ~20 packets, its average
    frame after them): an AVI source into Matroska gave some frames 1 ms and others 42 ms, and a VFR source's
    60 ms frames 40 ms. The join gives each frame its source packet's duration, as a single-process run does."""
    src = make_ms_avi(tmp_path / name) if name.endswith(".avi") else make_clip(tmp_path / name, n=72)
    multi, single = tmp_path / "multi.mkv", tmp_path / "single.mkv"
    frames, _ = scaleout_without_ray(src, multi, seconds=0.5)
    code, err = upscale(str(src), str(single))
    assert code == 0, err
    assert frames == 72 and _video_timing(multi) == _video_timing(single)
    tags = []
    for f in (multi, single):
        with av.open(str(f)) as c:
            tags.append(c.streams.video[0].metadata.get("DURATION"))
    assert tags[0] == tags[1], tags  # (the last frame's duration: 5.000 for 4.999 s)


@pytest.mark.slow  # CI runs it (--run-slow)
@pytest.mark.parametrize("ext, codec", [("mkv", "ffv1"), ("mp4", "libx264")])
def test_part_end_cuts_the_last_frame_as_a_single_run_does(ray_local, tmp_path: Path, ext: str, codec: str) -> None:
    """--end inside a frame: a single-process run shows the last frame up to the part's end; scale-out kept its
    whole duration (41 ms for 25 ms), and an MP4's video track ran past the part (35329 ticks for 34800): MP4
    ends a track at its last packet in decode order, which the single-process writer makes reach that end."""
    src = make_clip(tmp_path / "in.mkv", n=60)
    single, multi = tmp_path / f"single.{ext}", tmp_path / f"multi.{ext}"
    part = ["--start", "0.5", "--end", "1.93", "--variant", "mks", "--codec", codec, "-q"]
    for out, more in ((single, []), (multi, ["--workers", "2", "--segment-seconds", SEG])):
        r = CliRunner().invoke(cli, ["upscale", str(src), str(out), *part, *more])
        assert r.exit_code == 0, r.output
    got, want = _video_timing(multi), _video_timing(single)
    if codec == "ffv1":
        assert got == want and got[-1][0] + got[-1][1] == 1430, (got[-3:], want[-3:])
    lengths = []
    for f in (single, multi):
        with av.open(str(f)) as c:
            v = c.streams.video[0]
            lengths.append(float(v.duration * v.time_base) if v.duration else v.metadata.get("DURATION"))
    assert lengths[0] == lengths[1] and [p for p, _ in got] == [p for p, _ in want], lengths


def test_long_output_name_is_taken_with_workers(tmp_path: Path) -> None:
    """A single-process run writes an OUT whose name is near the longest a file name can be (its temporary is
    shortened to a digest); with --workers the probe beside OUT and the work folder's lock ('.NAME.psr2video-
    work.lock') were too long, and the run was refused as if OUT could not be written."""
    from psr2video.scaleout.cli import _unwritable
    from psr2video.scaleout.manifest import WorkDir

    out = tmp_path / ("a" * 240 + ".mkv")
    assert _unwritable(str(out)) is None
    with WorkDir(str(out)) as wd:
        assert len(os.fsencode(wd.path.name + ".lock")) <= 255 and wd.path.parent == tmp_path
        wd.path.mkdir()
    assert WorkDir(str(tmp_path / "b.mkv")).path.name == ".b.mkv.psr2video-work"  # short names as they were


@pytest.mark.slow  # CI runs it (--run-slow)
def test_failure_before_any_segment_keeps_no_work_folder(ray_local, clip, tmp_path: Path) -> None:
    """A run that failed before a segment was finished said 'the finished segments are kept in WORK', which held
    only the plan; the folder is removed, and not named."""
    from dataclasses import replace

    from psr2video.scaleout import ScaleoutError, run
    from psr2video.scaleout.manifest import work_dir

    src, _ = clip
    out = tmp_path / "out.mkv"
    job = _job(src, out)
    job.settings = replace(job.settings, backend="tensorrt")  # every worker refuses it
    with pytest.raises(ScaleoutError, match=r"\(segment \d+, [\d.]+-[\d.]+ s\)$") as e:
        run(job, quiet=True)
    assert "kept" not in str(e.value) and not work_dir(str(out)).exists(), str(e.value)


@pytest.mark.slow  # CI runs it (--run-slow)
def test_stopped_run_leaves_no_worker_temporary_files(ray_local, clip, tmp_path: Path) -> None:
    """A stopped run cancelled its tasks and shut Ray down at once: a task still writing its segment was killed
    before it removed its temporary folder (the cut and a .segment.partial.nut in /tmp/psr2video-seg-*, unsaid).
    The run waits for its cancelled tasks now, and they write under the work folder (its 'scratch', emptied by
    the next run), not the system's temporary folder."""
    import tempfile

    from psr2video.scaleout import Interrupted, run
    from psr2video.scaleout.manifest import work_dir

    def system_temps() -> set[Path]:
        return set(Path(tempfile.gettempdir()).glob("psr2video-seg-*"))

    src, _ = clip
    out = tmp_path / "out.mkv"
    wd = work_dir(str(out))
    before = system_temps()
    with pytest.raises(Interrupted, match="run the same command again"):
        run(_job(src, out), quiet=True, stop=_StopAfterFirst(wd / "manifest.json"))
    assert system_temps() <= before and not list((wd / "scratch").iterdir())
    (wd / "scratch" / "psr2video-seg-left").mkdir()  # a killed worker's
    with pytest.raises(Interrupted):
        run(_job(src, out), quiet=True, stop=_StopAfterFirst(wd / "manifest.json"))
    assert not (wd / "scratch" / "psr2video-seg-left").exists()


def test_mpegts_output_has_the_single_process_times(tmp_path: Path) -> None:
    """With B-frames a segment's first packets have no dts in its NUT; the join filled them in a frame duration at
    a time, where the encoder's are the presentation times less its reorder delay: the first dts of an MPEG-TS
    OUT was a tick off, and the muxer's start offset moved every stream of it by 90 ticks (1 ms) from the
    single-process file. A Matroska OUT's video DURATION tag said 5.000 for 4.999 s (NUT's guessed duration)."""
    src = make_clip(tmp_path / "in.mkv", n=48)
    multi, single = tmp_path / "multi.ts", tmp_path / "single.ts"
    scaleout_without_ray(src, multi, codec="libx264")
    r = CliRunner().invoke(cli, ["upscale", str(src), str(single), "--variant", "mks", "--codec", "libx264", "-q"])
    assert r.exit_code == 0, r.output
    times: list[list[object]] = [[], []]
    for k, f in enumerate((multi, single)):
        with av.open(str(f)) as c:
            kinds = [s.type for s in c.streams]
        for i, kind in enumerate(kinds):  # every packet's times; the video's pts (its bits and dts differ at the cuts)
            with av.open(str(f)) as c:
                got = [(p.pts, p.dts) for p in c.demux(c.streams[i]) if p.size]
            times[k].append((kind, sorted(t for t, _ in got) if kind == "video" else got))
    assert "audio" in kinds and times[0] == times[1]


def test_a_video_only_join_keeps_its_chapters(tmp_path: Path) -> None:
    """A video-only source's chapters were dropped by the join once the writer set chapters only where something
    had been muxed: the join's copied video packets counted nowhere (helper-98)."""
    src = make_decode_order_clip(tmp_path / "v.mkv")
    with av.open(str(src)) as i, av.open(str(tmp_path / "vc.mkv"), "w") as o:
        s = o.add_stream_from_template(i.streams.video[0])
        o.set_chapters([{"id": 1, "start": 0, "end": 1000, "time_base": Fraction(1, 1000), "metadata": {"title": "a"}},
                        {"id": 2, "start": 1000, "end": 2000, "time_base": Fraction(1, 1000),
                         "metadata": {"title": "b"}}])
        for p in i.demux(i.streams.video[0]):
            if p.dts is not None:
                p.stream = s
                o.mux(p)
    scaleout_without_ray(tmp_path / "vc.mkv", tmp_path / "out.mkv", codec="libx264")
    with av.open(str(tmp_path / "out.mkv")) as c:
        assert [ch["metadata"].get("title") for ch in c.chapters()] == ["a", "b"]

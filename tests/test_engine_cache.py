"""Engine cache: keys, atomic builds, one build across processes, stale/truncated rebuilds, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from click.testing import CliRunner

from psr2video.models import build_model
from psr2video.runtime.engine_cache import EngineCache, make_key, weights_hash
from psr2video.runtime.export import onnx_fields

FIELDS = {"variant": "realtime", "scale": 2, "precision": "fp16", "weights": "abc", "profile": "1x3x720x1280",
          "opset": 17, "exporter": "torch-2.13", "tensorrt": "10.9.0", "gpu": "NVIDIA H100", "cc": "9.0"}


def _writer(payload: bytes = b"artifact-bytes"):
    calls = []

    def build(tmp):
        calls.append(tmp)
        tmp.write_bytes(payload)

    return build, calls


def test_key_changes_with_every_field():
    base = make_key(FIELDS)
    assert make_key(dict(reversed(list(FIELDS.items())))) == base  # order does not matter
    for k, v in FIELDS.items():
        changed = {**FIELDS, k: (v + 1) if isinstance(v, int) else f"{v}-other"}
        assert make_key(changed) != base, k
    assert make_key({**FIELDS, "ort": "1.32"}) != base


def test_weights_hash_and_onnx_fields_follow_the_inputs():
    torch.manual_seed(0)
    a = build_model("realtime", 2)
    b = build_model("realtime", 2)
    assert weights_hash(a) != weights_hash(b)
    with torch.no_grad():
        b.load_state_dict(a.state_dict())
    assert weights_hash(a) == weights_hash(b)
    d = a.descriptor
    f = onnx_fields(a, d, "fp32")
    assert f["weights"] == weights_hash(a.fuse_for_release()) and f["opset"] == 17 and "exporter" in f
    assert make_key(f) != make_key(onnx_fields(a, d, "fp16"))
    assert make_key(f) != make_key(onnx_fields(a, d, "fp32", opset=18))
    # ParagonSR2's fp16 file has float I/O whatever fp16_io says (float32 base path): one file, one key
    assert make_key(onnx_fields(a, d, "fp16")) == make_key(onnx_fields(a, d, "fp16", fp16_io=False))
    plain = d.with_(float_base=False)
    assert make_key(onnx_fields(a, plain, "fp16")) != make_key(onnx_fields(a, plain, "fp16", fp16_io=False))
    assert make_key(f) != make_key(onnx_fields(build_model("realtime", 3), build_model("realtime", 3).descriptor,
                                               "fp32"))


def test_build_once_then_hit(tmp_path):
    cache = EngineCache(tmp_path)
    build, calls = _writer()
    p1 = cache.get_or_build(FIELDS, "trt", ".engine", build)
    p2 = cache.get_or_build(FIELDS, "trt", ".engine", build)
    assert p1 == p2 and len(calls) == 1 and p1.read_bytes() == b"artifact-bytes"
    assert p1.name.startswith("realtime_x2_fp16_trt-") and p1.suffix == ".engine"
    meta = json.loads(cache.meta_path(p1).read_text())
    assert meta["fields"] == FIELDS and meta["size"] == len(b"artifact-bytes") and "build_seconds" in meta
    other = cache.get_or_build({**FIELDS, "gpu": "NVIDIA L4"}, "trt", ".engine", build)
    assert other != p1 and len(calls) == 2


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_meta"])
def test_damaged_artifact_is_rebuilt_with_a_message(tmp_path, damage):
    cache = EngineCache(tmp_path)
    build, calls = _writer(b"x" * 1000)
    p = cache.get_or_build(FIELDS, "onnx", ".onnx", build)
    if damage == "truncate":
        p.write_bytes(p.read_bytes()[:300])
    elif damage == "flip":
        p.write_bytes(b"y" + p.read_bytes()[1:])
    else:
        cache.meta_path(p).unlink()
    assert cache.check(p).problem is not None
    messages = []
    p2 = cache.get_or_build(FIELDS, "onnx", ".onnx", build, echo=messages.append)
    assert p2 == p and len(calls) == 2 and p.read_bytes() == b"x" * 1000
    assert any("stale" in m and "rebuilding" in m for m in messages)
    assert cache.check(p).problem is None


def test_stale_rebuild_is_said_without_an_echo(tmp_path, caplog):
    """A caller with no echo (upscale's ONNX Runtime path) still hears why it waits: a warning, not silence."""
    cache = EngineCache(tmp_path)
    build, calls = _writer(b"x" * 1000)
    p = cache.get_or_build(FIELDS, "onnx", ".onnx", build)
    p.write_bytes(p.read_bytes()[:300])
    with caplog.at_level("WARNING", logger="psr2video.engine_cache"):
        cache.get_or_build(FIELDS, "onnx", ".onnx", build)
    assert len(calls) == 2 and any("is stale (truncated" in r.getMessage() for r in caplog.records)


def test_failed_build_leaves_nothing(tmp_path):
    cache = EngineCache(tmp_path)

    def boom(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("builder crashed")

    with pytest.raises(RuntimeError, match="crashed"):
        cache.get_or_build(FIELDS, "trt", ".engine", boom)
    assert cache.entries() == []
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_invalidate_then_rebuild(tmp_path):
    cache = EngineCache(tmp_path)
    build, calls = _writer()
    p = cache.get_or_build(FIELDS, "trt", ".engine", build)
    cache.invalidate(p, "deserialisation failed")
    assert not p.exists()
    cache.get_or_build(FIELDS, "trt", ".engine", build)
    assert len(calls) == 2


@pytest.mark.slow  # CI runs it (--run-slow); the default suite stays under 90 s
def test_two_processes_build_once(tmp_path):
    """Both processes ask for the same artifact at once; the lock makes the second wait and reuse it."""
    counter = tmp_path / "builds.txt"
    script = textwrap.dedent(f"""
        import os, sys, time
        from pathlib import Path
        from psr2video.runtime.engine_cache import EngineCache
        fields = {FIELDS!r}
        def build(tmp):
            with open({str(counter)!r}, "a") as f:
                f.write(str(os.getpid()) + "\\n")
            time.sleep(1.5)
            tmp.write_bytes(b"engine" * 1000)
        print(EngineCache({str(tmp_path / "cache")!r}).get_or_build(fields, "trt", ".engine", build))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs[0] == outs[1]
    assert len(counter.read_text().split()) == 1


def test_engine_cli_list_build_clear(tmp_path, monkeypatch):
    from psr2video.cli import cli

    monkeypatch.setenv("PSR2VIDEO_CACHE", str(tmp_path))
    run = CliRunner().invoke
    r = run(cli, ["engine", "build", "--variant", "realtime", "--untrained", "--profile", "480p,720p",
                  "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "[1/1]" in r.output and "shape-independent" in r.output and "done in" in r.output
    r = run(cli, ["engine", "list", "--verify"])
    assert r.exit_code == 0 and r.output.count("[ok]") == 2 and "ort-cpu" in r.output
    arts = sorted((tmp_path / "engines").glob("*.onnx"))
    arts[0].write_bytes(arts[0].read_bytes()[:100])
    r = run(cli, ["engine", "list"])
    assert "STALE" in r.output
    r = run(cli, ["engine", "clear", "--stale"])
    assert "removed 1 stale" in r.output
    r = run(cli, ["engine", "clear"])
    assert r.exit_code == 0 and "removed 1 artifact" in r.output
    r = run(cli, ["engine", "build", "--untrained", "--backend", "tensorrt", "--device", "cpu"])
    assert r.exit_code == 1 and "cannot build TensorRT engines here" in r.output
    r = run(cli, ["engine", "build", "--untrained", "--shape", "12xfoo"])
    assert r.exit_code == 1 and "WIDTHxHEIGHT" in r.output


@pytest.mark.parametrize("sidecar", ["null", "[]", "3", '"text"', '{"fields": []}'])
def test_a_sidecar_that_is_json_but_not_ours_is_unreadable_metadata(tmp_path, monkeypatch, sidecar):
    """JSON that is not an object made every run, `engine list` and `engine clear` traceback: it is unreadable
    metadata, so the artifact is rebuilt, listed as stale and cleared."""
    from psr2video.cli import cli

    cache = EngineCache(tmp_path / "engines")
    build, calls = _writer()
    p = cache.get_or_build(FIELDS, "onnx", ".onnx", build)
    cache.meta_path(p).write_text(sidecar)
    assert cache.check(p).problem == "unreadable metadata"
    assert cache.find("onnx", lambda f: True) == []
    monkeypatch.setenv("PSR2VIDEO_CACHE", str(tmp_path))
    r = CliRunner().invoke(cli, ["engine", "list"])
    assert r.exit_code == 0 and "STALE: unreadable metadata" in r.output, r.output
    assert cache.get_or_build(FIELDS, "onnx", ".onnx", build, echo=lambda m: None) == p and len(calls) == 2
    cache.meta_path(p).write_text(sidecar)
    r = CliRunner().invoke(cli, ["engine", "clear", "--stale"])
    assert r.exit_code == 0 and "removed 1 stale" in r.output and not p.exists(), r.output


def test_two_modules_with_the_same_weights_do_not_share_an_export(tmp_path):
    """A bare model= module was keyed by its state dict alone: a Sigmoid net ran the cached ReLU net's graph."""
    from torch import nn

    from psr2video import Upscaler

    torch.manual_seed(0)
    a = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.ReLU(), nn.PixelShuffle(2))
    b = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.Sigmoid(), nn.PixelShuffle(2))
    b.load_state_dict(a.state_dict())
    assert weights_hash(a) == weights_hash(b)
    x = torch.rand(1, 3, 16, 16)
    for net in (a, b):
        on_torch = Upscaler(variant="mine", scale=2, model=net, backend="torch", device="cpu")(x)
        on_ort = Upscaler(variant="mine", scale=2, model=net, backend="onnxruntime", device="cpu")(x)
        assert (on_torch - on_ort).abs().max().item() < 1e-5
    # ParagonSR2 is described by its ArchSpec: the same variant name built with other blocks is another model
    small, big = build_model("realtime", 2), build_model("realtime", 2, blocks=2)
    assert onnx_fields(small, small.descriptor, "fp32")["module"] != onnx_fields(big, big.descriptor, "fp32")["module"]


def _pictures(folder, seed: int, n: int = 2):
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_int8_calibration_is_keyed_by_content_and_prebuilt_files_are_used(tmp_path):
    """Two calibration folders of the same name and count shared a key; and a run that names no calibration (the
    Upscaler, upscale) never found what `engine build --calibration X` had built. Now the label is the pictures'
    content, and such a run uses the int8 file prebuilt for the model."""
    from psr2video.runtime.export import cached_onnx, calibration_label
    from psr2video.runtime.ort_backend import ORTRunner

    a, b = _pictures(tmp_path / "A" / "frames", 1), _pictures(tmp_path / "B" / "frames", 2)
    assert calibration_label(a) != calibration_label(b)
    assert calibration_label(a) == calibration_label(_pictures(tmp_path / "C" / "frames", 1))
    torch.manual_seed(0)
    net = build_model("realtime", 2).fuse_for_release()
    d = net.descriptor
    cache = EngineCache(tmp_path / "engines")
    say = []
    built = cached_onnx(net, d, "int8", cache, calibration=a, echo=say.append)
    assert cached_onnx(net, d, "int8", cache, calibration=b, echo=say.append) != built  # other pictures: rebuilt
    later = cached_onnx(net, d, "int8", cache, calibration=a, echo=say.append)
    assert later == built and sum("building" in m for m in say) == 2
    # no calibration named: the newest int8 file prebuilt for this model (B's), not a third one
    from psr2video.runtime.backends import ORTBackend

    n = len(say)
    runner = ORTRunner(ORTBackend(), net, d, "int8", torch.device("cpu"), cache=cache, echo=say.append)
    assert cache.check(runner.onnx_path).meta["fields"]["calibration"] == calibration_label(b)
    assert not any("building ONNX realtime" in m for m in say[n:])
    other = build_model("realtime", 2).fuse_for_release()  # another model: nothing prebuilt, default pictures
    assert onnx_fields(other, other.descriptor, "int8", cache=cache)["calibration"] == calibration_label(None)


def test_engine_build_int8_calibration_is_what_a_later_run_uses(tmp_path, monkeypatch):
    """The prebuild command must make what runs use: `engine build -p int8 --calibration X` on the CPU, then an
    int8 Upscaler of the same model (it names no calibration) loads those artifacts and builds nothing."""
    from psr2video import Upscaler
    from psr2video.cli import cli
    from psr2video.runtime.export import calibration_label

    monkeypatch.setenv("PSR2VIDEO_CACHE", str(tmp_path))
    frames = _pictures(tmp_path / "frames", 3)
    r = CliRunner().invoke(cli, ["engine", "build", "-v", "realtime", "--untrained", "-p", "int8", "--calibration",
                                 str(frames), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    cache = EngineCache(tmp_path / "engines")
    before = {e.path.name for e in cache.entries()}
    assert len(before) == 2  # the int8 ONNX and its ONNX Runtime CPU graph
    torch.manual_seed(0)  # what `--untrained` builds
    up = Upscaler("realtime", 2, model=build_model("realtime", 2), backend="onnxruntime", precision="int8",
                  device="cpu")
    assert {e.path.name for e in cache.entries()} == before
    assert cache.check(up.runner.onnx_path).meta["fields"]["calibration"] == calibration_label(frames)


def test_an_unwritable_cache_builds_in_a_temp_folder_with_a_note(tmp_path, monkeypatch, caplog):
    # PSR2VIDEO_CACHE=/proc/x gave a bare "No such file or directory: /proc/psr" and no run: the cache only saves
    # time, so the build goes to a temporary folder for the process, said once
    import tempfile

    from psr2video.runtime import engine_cache

    (tmp_path / "file").write_text("")
    monkeypatch.setenv("PSR2VIDEO_CACHE", str(tmp_path / "file" / "cache"))
    monkeypatch.setattr(engine_cache, "_TEMP", [])
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    build, calls = _writer()
    with caplog.at_level("WARNING", logger="psr2video.engine_cache"):
        p = EngineCache().get_or_build(FIELDS, "onnx", ".onnx", build)
        assert EngineCache().get_or_build(FIELDS, "onnx", ".onnx", build) == p  # built once, said once
    assert p.is_relative_to(tmp_path / "tmp") and p.read_bytes() == b"artifact-bytes" and len(calls) == 1
    notes = [r.getMessage() for r in caplog.records if "can't write the cache folder" in r.getMessage()]
    assert len(notes) == 1 and str(tmp_path / "file" / "cache") in notes[0] and "$PSR2VIDEO_CACHE" in notes[0]


def test_an_unwritable_cache_is_one_line_where_the_cache_is_the_point(tmp_path, monkeypatch):
    from psr2video.errors import PsrError

    (tmp_path / "file").write_text("")
    monkeypatch.setenv("PSR2VIDEO_CACHE", str(tmp_path / "file" / "cache"))
    with pytest.raises(PsrError) as e:
        EngineCache(fallback=False).get_or_build(FIELDS, "onnx", ".onnx", _writer()[0])
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "file" / "cache") in msg and "$PSR2VIDEO_CACHE" in msg


def test_what_a_build_found_is_kept_in_the_sidecar_not_the_key(tmp_path):
    """``found``: facts learnt while building (a foreign export's batch finding, a rewrite's opset), kept for
    readers that must not open the artifact; the key (and so the path) is the same with or without them."""
    cache = EngineCache(tmp_path)
    fields = {"variant": "v", "scale": 2, "precision": "fp32"}
    p = cache.get_or_build(fields, "onnx", ".onnx", _writer()[0], found=lambda: {"fixed_batch": 1, "opset": 17})
    assert p == cache.path_for(fields, "onnx", ".onnx")
    (e,) = cache.find("onnx", lambda f: f == fields)
    assert e.meta["found"] == {"fixed_batch": 1, "opset": 17} and e.meta["fields"] == fields

"""On-disk cache of built artifacts: exported ONNX, ONNX Runtime optimised models, TensorRT engines.

Location: ``paths.engines_dir()`` (``$PSR2VIDEO_CACHE/engines``, else the user cache folder's
``psr2video/engines``). Each artifact ``NAME`` has a sidecar ``NAME.json`` holding the key fields, its
size and SHA-256, written last: an artifact without a valid sidecar, or whose size or hash disagrees, is
stale or truncated and is rebuilt with a message.

Builds are atomic (``fileio.atomic_path``: temp file in the same folder, fsync, rename) and serialised
per artifact with a ``filelock`` lock, so two processes asking for the same artifact build it once: the
second one waits for the lock and then finds the finished file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock
from torch import nn

from ..fileio import atomic_path, sha256_file, write_atomic
from ..paths import CacheError, cache_problem, engines_dir

log = logging.getLogger("psr2video.engine_cache")

CACHE_FORMAT = 1
META_SUFFIX = ".json"
LOCK_SUFFIX = ".lock"


def weights_hash(model: nn.Module) -> str:
    """SHA-256 (first 16 hex digits) of the model's state dict as float32 on the CPU (what is exported):
    names, shapes, dtypes and values."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu()
        t = (t.float() if t.is_floating_point() else t).contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def make_key(fields: dict) -> str:
    """Stable 20-hex-digit key of the key fields (every field matters; order does not)."""
    blob = json.dumps({"cache_format": CACHE_FORMAT, **fields}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


LABEL_BYTES = 80  # the readable part of an artifact's name; the key makes it unique


def short_label(label: str, limit: int = LABEL_BYTES) -> str:
    """``label`` cut to ``limit`` UTF-8 bytes (the middle elided), so an artifact's name, its sidecar, lock and
    temporary file stay under the file systems' 255-byte limit whatever the model file is called (a variant is
    a foreign model's file name: ``2x_<200 characters>.pth`` failed on every non-torch backend)."""
    raw = label.encode()
    if len(raw) <= limit:
        return label
    half = (limit - 2) // 2
    head = raw[:half].decode(errors="ignore")
    tail = raw[-half:].decode(errors="ignore")
    return f"{head}..{tail}"


@dataclass
class Entry:
    path: Path
    meta: dict | None
    problem: str | None  # None = valid

    @property
    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0


_TEMP: list[Path] = []  # this process's stand-in for a cache folder it can't write (removed at exit)
_NOTED: set[Path] = set()  # the unwritable cache folders already said


def _temp_dir() -> Path:
    if not _TEMP:
        import atexit

        _TEMP.append(Path(tempfile.mkdtemp(prefix="psr2video-cache-")))
        atexit.register(shutil.rmtree, _TEMP[0], True)
    return _TEMP[0]


class EngineCache:
    """A folder of artifacts keyed by everything that could change their bytes.

    A cache folder that can't be made or written only costs time: with ``fallback`` (the default) builds go to
    a temporary folder for this process, said in one line; without it (``engine build``, whose point is the
    cache) it is a one-line ``CacheError`` naming the folder and $PSR2VIDEO_CACHE."""

    def __init__(self, root: str | Path | None = None, fallback: bool = True) -> None:
        self.dir = Path(root) if root is not None else engines_dir()
        self.fallback = fallback

    def __repr__(self) -> str:
        return f"EngineCache({self.dir})"

    # naming -----------------------------------------------------------------------------------------
    def path_for(self, fields: dict, kind: str, suffix: str) -> Path:
        """Artifact path: ``{variant}_x{scale}_{precision}_{kind}-{key}{suffix}`` (readable and unique)."""
        key = make_key({**fields, "kind": kind})
        label = "_".join(str(fields[k]) if k != "scale" else f"x{fields[k]}"
                         for k in ("variant", "scale", "precision") if k in fields)
        return self.dir / f"{short_label(label)}_{kind}-{key}{suffix}"

    @staticmethod
    def lock_path(path: Path) -> Path:
        return path.with_name(f".{path.name}{LOCK_SUFFIX}")

    @staticmethod
    def meta_path(path: Path) -> Path:
        return path.with_name(path.name + META_SUFFIX)

    # validation -------------------------------------------------------------------------------------
    def check(self, path: Path, full_hash: bool = True) -> Entry:
        """Valid when the sidecar exists, parses, and its size (and SHA-256) match the artifact."""
        mp = self.meta_path(path)
        if not path.exists():
            return Entry(path, None, "missing")
        if not mp.exists():
            return Entry(path, None, "no metadata (an interrupted build?)")
        try:
            meta = json.loads(mp.read_text())
        except (OSError, ValueError):
            return Entry(path, None, "unreadable metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("fields", {}), dict):  # JSON, but not ours
            return Entry(path, None, "unreadable metadata")
        size = path.stat().st_size
        if meta.get("cache_format") != CACHE_FORMAT:
            return Entry(path, meta, f"cache format {meta.get('cache_format')} != {CACHE_FORMAT}")
        if size != meta.get("size"):
            return Entry(path, meta, f"truncated or changed ({size} bytes, expected {meta.get('size')})")
        if full_hash and sha256_file(path) != meta.get("sha256"):
            return Entry(path, meta, "content hash mismatch")
        return Entry(path, meta, None)

    def invalidate(self, path: Path, reason: str) -> None:
        """Drop an artifact a consumer could not load (e.g. TensorRT deserialisation failed)."""
        log.warning("cache: %s is unusable (%s); it will be rebuilt", path.name, reason)
        for p in (self.meta_path(path), path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    # the one entry point ------------------------------------------------------------------------------
    def get_or_build(self, fields: dict, kind: str, suffix: str, build: Callable[[Path], None],
                     describe: str | None = None, echo: Callable[[str], None] | None = None,
                     found: Callable[[], dict] | None = None) -> Path:
        """Return the artifact for ``fields``; build it (once, across processes) when absent or stale.

        ``build(tmp_path)`` must write the artifact to ``tmp_path``; it is renamed into place only when
        the build returns normally. ``found()``: what the build found out about the artifact (not part of its
        key), kept in the sidecar as ``found`` for readers that must not open the artifact to learn it.
        """
        say = echo or (lambda m: log.info(m))
        path = self.path_for(fields, kind, suffix)
        if self.check(path).problem is None:
            return path
        if not self._writable(echo):
            path = self.path_for(fields, kind, suffix)  # in the temporary folder now
        with FileLock(self.lock_path(path)):
            entry = self.check(path)
            if entry.problem is None:  # another process finished it while we waited
                return path
            if entry.problem != "missing":  # said even without an echo: a rebuild can take minutes
                (echo or log.warning)(f"cache: {path.name} is stale ({entry.problem}); rebuilding")
            say(f"building {describe or kind} -> {path}")
            t0 = time.perf_counter()
            with atomic_path(path) as tmp:
                build(tmp)
                if not tmp.exists() or tmp.stat().st_size == 0:
                    raise RuntimeError(f"the {kind} build wrote nothing")
                with contextlib.suppress(FileNotFoundError):
                    self.meta_path(path).unlink()
            seconds = time.perf_counter() - t0
            meta = {"cache_format": CACHE_FORMAT, "kind": kind, "fields": fields, "size": path.stat().st_size,
                    "sha256": sha256_file(path), "build_seconds": round(seconds, 3), "created": time.time(),
                    "python": sys.version.split()[0], "pid": os.getpid()}
            if found is not None:
                meta["found"] = found()
            write_atomic(self.meta_path(path), json.dumps(meta, indent=1, sort_keys=True, default=str))
            say(f"built {path.name} in {seconds:.1f} s ({meta['size'] / 2**20:.2f} MiB)")
        return path

    def _writable(self, echo: Callable[[str], None] | None) -> bool:
        """Make the cache folder and try a write there; True when it works. Otherwise switch to this process's
        temporary folder with a note (``fallback``) or raise ``CacheError``."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.dir, prefix=".write-test."):
                pass
            return True
        except OSError as e:
            if not self.fallback:
                raise CacheError(cache_problem(self.dir, e)) from None
            temp = _temp_dir()
            if self.dir not in _NOTED:  # once per folder and process, not at every model
                _NOTED.add(self.dir)
                (echo or log.warning)(f"note: {cache_problem(self.dir, e)}; building in {temp} for this run only")
            self.dir = temp
            return False

    def find(self, kind: str, match: Callable[[dict], bool]) -> list[Entry]:
        """Valid artifacts of ``kind`` whose key fields satisfy ``match`` (e.g. engines for any profile)."""
        out = []
        for e in self.entries(full_hash=False):
            if e.problem is None and e.meta and e.meta.get("kind") == kind and match(e.meta.get("fields", {})):
                out.append(e)
        return out

    # listing / clearing --------------------------------------------------------------------------------
    def entries(self, full_hash: bool = False) -> list[Entry]:
        if not self.dir.is_dir():
            return []
        out = []
        for p in sorted(self.dir.iterdir()):
            if p.name.startswith(".") or p.name.endswith((META_SUFFIX, LOCK_SUFFIX)) or p.name == "timing":
                continue
            if p.is_file():
                out.append(self.check(p, full_hash=full_hash))
        return out

    def clear(self, stale_only: bool = False) -> int:
        """Remove artifacts (all, or only stale ones), their sidecars, locks and leftover temp files."""
        n = 0
        if not self.dir.is_dir():
            return 0
        for e in self.entries(full_hash=stale_only):
            if stale_only and e.problem is None:
                continue
            for p in (e.path, self.meta_path(e.path), self.lock_path(e.path)):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            n += 1
        for p in self.dir.iterdir():
            if p.is_dir() and not stale_only and p.name in ("timing", "ort-tensorrt"):
                shutil.rmtree(p, ignore_errors=True)  # TensorRT timing caches, ORT's TensorRT-EP engines
                n += 1
            elif p.name.endswith(".tmp") or (not stale_only and p.name.endswith((META_SUFFIX, LOCK_SUFFIX))):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        return n

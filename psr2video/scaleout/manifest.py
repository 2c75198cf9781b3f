"""Resume: a work folder next to the output holds the finished segments and a manifest of what they are.

``.OUT.psr2video-work/manifest.json`` records the source (path, size, mtime), the settings that decide the
output bytes, the segment plan, and for every finished segment its file name, SHA-256 and frame count. A run
with the same source, settings and plan keeps every segment whose file is there with its hash and redoes the
rest; anything else (other settings, a changed source) starts the folder afresh. The manifest is written
after each finished segment (temporary file + rename), and a lock keeps two runs out of one folder.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import MISSING, asdict, dataclass, field, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ..fileio import beside, sha256_file, write_atomic
from .split import Segment
from .tasks import SegmentResult, Settings, sha256

# 2: segments time their frames from the source's dts and timestamp guess (SourceTiming); a folder of version-1
# segments is started afresh rather than joined with segments timed the other way
VERSION = 2
SCRATCH = "scratch"  # the workers' temporary folders (tasks._scratch)


class WorkDirBusy(Exception):
    """Another run holds the work folder."""


LOCK = ".lock"  # the work folder's lock file: its name and this


def work_dir(output: str) -> Path:
    """``.OUT.psr2video-work`` beside OUT (a digest of OUT's name where the name of its lock would be too long)."""
    return beside(Path(output), ".psr2video-work", len(LOCK), keep_ext=False)


@dataclass
class Manifest:
    source: dict[str, Any]
    settings: dict[str, Any]
    plan: list[list[Any]]  # [index, start, end, first, last] per segment
    done: dict[str, dict[str, Any]] = field(default_factory=dict)  # str(index) -> file, sha256, frames
    version: int = VERSION

    @staticmethod
    def plan_of(segments: list[Segment]) -> list[list[Any]]:
        return [[s.index, s.start, s.end, s.first, s.last] for s in segments]

    def same_job(self, other: Manifest) -> bool:
        return (self.version, self.source, self.settings, self.plan) == (
            other.version, other.source, other.settings, other.plan)

    def same_source(self, other: Manifest) -> bool:
        """The same source and output settings (the plan may differ: another --workers or --segment-seconds)."""
        return (self.version, self.source, self.settings) == (other.version, other.source, other.settings)


def settings_record(settings: Settings | dict[str, Any]) -> dict[str, Any]:
    """The settings as the manifest compares them: a setting added later (tta, size) is left out at its default,
    so a work folder made before it existed (or recorded it at its default, as tta was) resumes instead of
    starting afresh. Takes the settings or a manifest's record of them."""
    record = asdict(settings) if not isinstance(settings, dict) else dict(settings)
    defaults = {f.name: f.default for f in fields(Settings) if f.default is not MISSING}
    return {k: v for k, v in record.items() if not (k in defaults and v == defaults[k])}


class WorkDir:
    """The work folder of one output: finished segments, the manifest, a lock."""

    def __init__(self, output: str) -> None:
        self.path = work_dir(output)
        self._lock = FileLock(str(self.path) + LOCK)
        self.manifest: Manifest | None = None
        self.reset_note = ""
        self.keep_plan = False  # kept by a failure that finished no segment too (a stop: it says where the folder is)

    def __enter__(self) -> WorkDir:
        try:
            self._lock.acquire(timeout=0.5)
        except Timeout:
            raise WorkDirBusy(f"another psr2video run is using {self.path}") from None
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is not None and self.manifest is not None and not self.manifest.done and not self.keep_plan:
            self.remove()  # a failed run that finished no segment: nothing to resume from (and not said)
        self._lock.release()
        Path(self._lock.lock_file).unlink(missing_ok=True)

    def open(self, source: dict[str, Any], settings: Settings, segments: list[Segment]) -> set[int]:
        """Load or start the manifest; the indices of the segments already done (file present, hash right)."""
        want = Manifest(source, settings_record(settings), Manifest.plan_of(segments))
        have = self._load()
        if have is not None and not have.same_job(want):
            if have.done and have.same_source(want):  # only the plan differs: its finished segments stay valid
                self.reset_note = (f"note: keeping the segment plan of {self.path} ({len(have.plan)} segments, made "
                                   "with another --workers or --segment-seconds) and its finished segments")
            else:
                self.reset_note = (f"note: {self.path} was made with other settings or another source; starting "
                                   "afresh")
                have = None
        if have is None:
            if self.path.exists():
                shutil.rmtree(self.path)
            self.path.mkdir(parents=True)
            have = want
        self.manifest = have
        done = set()
        for key, rec in list(have.done.items()):
            f = self.path / rec["file"]
            if f.is_file() and sha256_file(f) == rec["sha256"]:
                done.add(int(key))
            else:
                del have.done[key]
        for f in self.path.iterdir():  # leftovers of an interrupted write, and of workers killed mid-segment
            if f.name.endswith(".tmp"):
                f.unlink()
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir()
        self._save()
        return done

    @property
    def scratch(self) -> Path:
        """Where the workers on this machine write a segment's cut and output while they work (``tasks._scratch``)."""
        return self.path / SCRATCH

    def segments(self, time_base: Fraction) -> list[Segment]:
        """The plan the folder's segments were made for."""
        assert self.manifest is not None
        return [Segment(int(i), start, end, int(first), int(last), time_base)
                for i, start, end, first, last in self.manifest.plan]

    def _load(self) -> Manifest | None:
        try:
            raw = json.loads((self.path / "manifest.json").read_text())
            raw["settings"] = settings_record(raw["settings"])
            return Manifest(**raw)
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def _save(self) -> None:
        assert self.manifest is not None
        write_atomic(self.path / "manifest.json", json.dumps(asdict(self.manifest), indent=1))

    def add(self, res: SegmentResult) -> None:
        """Keep a finished segment (file first, then the manifest entry that vouches for it)."""
        assert self.manifest is not None
        name = f"segment-{res.index:05d}.nut"
        write_atomic(self.path / name, res.data)
        self.manifest.done[str(res.index)] = {"file": name, "sha256": sha256(res.data), "frames": res.frames,
                                              "worker": res.worker, "counts": dict(res.counts)}
        self._save()

    def file(self, index: int) -> Path:
        assert self.manifest is not None
        return self.path / self.manifest.done[str(index)]["file"]

    def frames(self, index: int) -> int:
        assert self.manifest is not None
        return int(self.manifest.done[str(index)]["frames"])

    def counts(self, index: int) -> dict[str, int]:
        """A finished segment's summary counts (SegmentResult.counts; none in a folder from an older version)."""
        assert self.manifest is not None
        return dict(self.manifest.done[str(index)].get("counts") or {})

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

"""Shared fixtures: the validation data beside the checkout (skip cleanly when it is absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PSR2VIDEO_DATA", ROOT.parent / "shared" / "data"))

torch.set_num_threads(min(2, os.cpu_count() or 1))


def data_dir(*parts: str) -> Path:
    p = DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"test data not found at {p} (set PSR2VIDEO_DATA to ../shared/data)")
    return p


@pytest.fixture(scope="session")
def val_root() -> Path:
    return data_dir("val")

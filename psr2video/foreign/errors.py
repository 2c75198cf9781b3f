"""The one error type of foreign models."""

from __future__ import annotations

from ..models.registry import WeightsError


class ForeignModelError(WeightsError):
    """A model file psr2video can't (or won't) run; the message says why in one line."""

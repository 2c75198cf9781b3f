"""Training for psr2video models: data, degradations, losses, MUNet + R3GAN, and the trainer.

Entry points: ``psr2video train --config FILE`` and ``python -m psr2video.train``.
"""

from __future__ import annotations

__all__ = ["load_config", "Trainer"]


def __getattr__(name: str):
    if name in ("load_config", "Trainer"):
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(name)

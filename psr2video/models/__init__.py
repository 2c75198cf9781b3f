"""The ParagonSR2 model family, its Magic Kernel Sharp 2021 base, and the variant registry."""

from .magic import MagicKernelSharp2021
from .paragonsr2 import ArchSpec, ParagonSR2
from .registry import (
    BASELINES,
    SCALES,
    SPECS,
    VARIANTS,
    ModelDescriptor,
    WeightsError,
    build_model,
    list_shipped,
    load_model,
    read_metadata,
    save_weights,
)

__all__ = [
    "BASELINES", "SCALES", "SPECS", "VARIANTS", "ArchSpec", "MagicKernelSharp2021", "ModelDescriptor",
    "ParagonSR2", "WeightsError", "build_model", "list_shipped", "load_model", "read_metadata",
    "save_weights",
]

"""Scale out: one long video on every GPU of a machine or a Ray cluster, resumable.

``split`` cuts the source's video at keyframes (stream copy), ``tasks`` upscales one segment per Ray task
with the single-process pipeline, ``manifest`` keeps finished segments for resuming, ``join`` copies the
segments and the source's other streams into the output, ``driver`` drives it and ``hud`` shows it.
Ray is optional (``pip install 'psr2video[ray]'``); nothing here imports it until a run starts.
"""

from .driver import RAY_HINT, Interrupted, Job, ScaleoutError, Summary, run
from .tasks import Settings

__all__ = ["RAY_HINT", "Interrupted", "Job", "ScaleoutError", "Settings", "Summary", "run"]

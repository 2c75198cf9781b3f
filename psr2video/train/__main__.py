"""``python -m psr2video.train --config FILE`` (same as ``psr2video train``)."""

from ..commands.train import train

if __name__ == "__main__":
    train(prog_name="python -m psr2video.train")

"""Weight-set descriptions for the panel, from metadata.json alone (no TensorFlow needed, so they can be
listed before TensorFlow is installed). :mod:`DIRVNetLib.io.weights` loads and verifies a set when a
registration runs."""

from DIRVNetLib.io.weights import WeightSetInfo, describe, read_info
from DIRVNetLib.io.weights import bundled_infos as bundled

__all__ = ["WeightSetInfo", "bundled", "describe", "read_info"]

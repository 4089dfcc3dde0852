"""The DIRV-Net model: configuration, activations, fields of experts, variational unit, network.

``NetworkConfig`` imports without TensorFlow (so weight sets can be listed where TensorFlow is not
installed yet, e.g. a fresh Slicer); ``DIRVNet`` and ``NetworkOutput`` load it on first use.
"""

from DIRVNetLib.model.config import NetworkConfig

__all__ = ["NetworkConfig", "DIRVNet", "NetworkOutput"]


def __getattr__(name):
    if name in ("DIRVNet", "NetworkOutput"):
        from DIRVNetLib.model import network

        return getattr(network, name)
    raise AttributeError(f"module 'DIRVNetLib.model' has no attribute '{name}'")

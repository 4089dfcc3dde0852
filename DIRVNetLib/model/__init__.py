"""The DIRV-Net model: configuration, activations, fields of experts, variational unit, network."""

from DIRVNetLib.model.config import NetworkConfig
from DIRVNetLib.model.network import DIRVNet, NetworkOutput

__all__ = ["NetworkConfig", "DIRVNet", "NetworkOutput"]

"""Memory estimate of one registration, checked against what the machine has free."""

import os

from DIRVNetLib.errors import InsufficientMemoryError

GIB = 1024**3


def estimated_bytes(padded_shape, config):
    """Rough peak bytes of the network on a padded working grid (float32 tensors alive in one unit at
    the finest level: images, warped image, residual, gradients, flow, filter responses, and the
    interpolation indices and weights of every corner), with a 1.5 safety factor."""
    voxels = 1
    for n in padded_shape:
        voxels *= n
    n = config.ndim
    floats_per_voxel = 8 + 4 * n + 3 * config.data_filters + 3 * 2**n
    return int(1.5 * 4 * floats_per_voxel * voxels)


def available_bytes():
    """Free memory (MemAvailable on Linux), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(padded_shape, config):
    """Raise :class:`InsufficientMemoryError` (saying how much is needed) if the estimate exceeds
    the free memory."""
    needed = estimated_bytes(padded_shape, config)
    free = available_bytes()
    if free is not None and needed > free:
        raise InsufficientMemoryError(
            f"registering a {'x'.join(map(str, padded_shape))} working grid needs about {needed / GIB:.1f} GiB "
            f"of memory but only {free / GIB:.1f} GiB is free; register on a coarser grid (working_spacing / "
            "--working-spacing) or free memory"
        )
    return needed

"""DIRVNetLib: DIRV-Net deformable registration core (TensorFlow), usable outside Slicer.

Conventions (see docs/architecture.md): arrays are in numpy/SimpleITK order ([z, y, x] for 3D); inside the
network displacements are in voxels of the working grid, at every public boundary they are physical
millimetres in LPS; resampling convention warped(x) = moving(x + u(x)), u defined on the fixed grid.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the API module imports TensorFlow: loaded on the first call only
    from DIRVNetLib.io.images import ImageInput
    from DIRVNetLib.registration.api import RegistrationResult

__version__ = "0.1.0"

# TensorFlow turns its oneDNN CPU kernels on by itself only on CPUs with AVX-512 VNNI or AMX; on AVX2-only
# CPUs they make the 3D network about 2x faster (docs/performance.md). TensorFlow reads this once, when it
# is imported, so it is set here, before any DIRVNetLib module imports it; a value the user set is kept.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def register(
    fixed: ImageInput,
    moving: ImageInput,
    weights: str | os.PathLike[str] | None = None,
    device: str = "auto",
    **options: Any,
) -> RegistrationResult:
    """Register ``moving`` to ``fixed``; see :func:`DIRVNetLib.registration.api.register`."""
    from DIRVNetLib.registration.api import register as _register

    return _register(fixed, moving, weights=weights, device=device, **options)

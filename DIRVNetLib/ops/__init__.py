"""TensorFlow operators shared by the network, training and registration; 2D and 3D from one code path.

Tensors are channels-last, ``[B, *S, C]`` with ``S`` the spatial shape in array order ([z, y, x] in 3D).
Displacements ``[B, *S, N]`` are in voxels; component ``i`` moves along array axis ``i``.
"""

from DIRVNetLib.ops.bspline import (
    bspline_adjoint,
    bspline_interpolate,
    control_grid_shape,
    upsample_control_grid,
)
from DIRVNetLib.ops.filters import GRADIENT_SCHEMES, binomial_downsample, image_gradient
from DIRVNetLib.ops.warp import warp

__all__ = [
    "bspline_adjoint",
    "bspline_interpolate",
    "control_grid_shape",
    "upsample_control_grid",
    "binomial_downsample",
    "image_gradient",
    "GRADIENT_SCHEMES",
    "warp",
]

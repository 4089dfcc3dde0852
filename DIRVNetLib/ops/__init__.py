"""TensorFlow operators shared by the network, training and registration; 2D and 3D from one code path.

Tensors are channels-last, ``[B, *S, C]`` with ``S`` the spatial shape in array order ([z, y, x] in 3D).
Displacements ``[B, *S, N]`` are in voxels; component ``i`` moves along array axis ``i``.

Importing this package does not import TensorFlow (``NetworkConfig`` needs ``GRADIENT_SCHEMES`` where
TensorFlow is not installed, e.g. a fresh Slicer); the operators load their module on first use.
"""

GRADIENT_SCHEMES = ("forward", "central")
"""Finite-difference schemes of :func:`image_gradient`."""

_OPERATORS = {  # operator -> its module (full names: tools/package_files.py finds them)
    "bspline_adjoint": "DIRVNetLib.ops.bspline",
    "bspline_interpolate": "DIRVNetLib.ops.bspline",
    "bspline_matrix": "DIRVNetLib.ops.bspline",
    "control_grid_shape": "DIRVNetLib.ops.bspline",
    "upsample_control_grid": "DIRVNetLib.ops.bspline",
    "binomial_downsample": "DIRVNetLib.ops.filters",
    "image_gradient": "DIRVNetLib.ops.filters",
    "resample_axes": "DIRVNetLib.ops.resize",
    "upsample_flow": "DIRVNetLib.ops.resize",
    "compiled_warp": "DIRVNetLib.ops.warp",
    "warp": "DIRVNetLib.ops.warp",
}

__all__ = [*_OPERATORS, "GRADIENT_SCHEMES"]


def __getattr__(name):
    if name in _OPERATORS:
        import importlib

        module = importlib.import_module(_OPERATORS[name])
        # Bind the module's operators here: importing a submodule set the package attribute of the same
        # name (``warp``) to the submodule.
        globals().update({op: getattr(module, op) for op, home in _OPERATORS.items() if home == _OPERATORS[name]})
        return globals()[name]
    raise AttributeError(f"module 'DIRVNetLib.ops' has no attribute '{name}'")

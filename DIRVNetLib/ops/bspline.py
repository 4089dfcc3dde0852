"""Multi-linear (degree-1) B-spline interpolation from a control grid, its exact adjoint, and the
control-grid upsampling between pyramid levels.

Control point ``k`` sits on dense voxel ``k * s`` along every axis (``s`` = control spacing in voxels),
so a dense axis of length ``n`` needs ``(n - 1) // s + 2`` control points. The operator is applied
separably: one small interpolation matrix per axis, so the adjoint is the same product transposed.
"""

import string

import tensorflow as tf


def control_grid_shape(spatial_shape, spacing):
    """Control-grid shape for a dense ``spatial_shape`` and control ``spacing`` (voxels)."""
    return [(n - 1) // spacing + 2 for n in spatial_shape]


def _hat_matrix(n_out, n_in, step, dtype):
    """``[n_out, n_in]`` matrix ``max(0, 1 - |i / step - k|)``: linear interpolation at ``i / step``."""
    rows = tf.cast(tf.range(n_out), dtype)[:, tf.newaxis] / float(step)
    cols = tf.cast(tf.range(n_in), dtype)[tf.newaxis, :]
    return tf.nn.relu(1.0 - tf.abs(rows - cols))


def _apply_per_axis(x, matrices, transpose):
    """Contract spatial axis ``i`` of ``x`` ([B, *S, C]) with ``matrices[i]`` (or its transpose)."""
    ndim = len(matrices)
    letters = string.ascii_lowercase[:ndim]
    for axis, matrix in enumerate(matrices):
        src = "z" + letters + "y"
        dst = src.replace(letters[axis], "w")
        mat = letters[axis] + "w" if transpose else "w" + letters[axis]
        x = tf.einsum(f"{src},{mat}->{dst}", x, matrix)
    return x


def bspline_interpolate(control, spacing, spatial_shape):
    """Dense field ``[B, *spatial_shape, C]`` from control values ``[B, *K, C]`` (K = control shape)."""
    control = tf.convert_to_tensor(control)
    ndim = len(spatial_shape)
    control_shape = tf.shape(control)[1 : 1 + ndim]
    matrices = [_hat_matrix(spatial_shape[i], control_shape[i], spacing, control.dtype) for i in range(ndim)]
    return _apply_per_axis(control, matrices, transpose=False)


def bspline_adjoint(dense, spacing, control_shape):
    """Exact adjoint of :func:`bspline_interpolate`: ``[B, *S, C]`` -> ``[B, *control_shape, C]``."""
    dense = tf.convert_to_tensor(dense)
    ndim = len(control_shape)
    spatial = tf.shape(dense)[1 : 1 + ndim]
    matrices = [_hat_matrix(spatial[i], control_shape[i], spacing, dense.dtype) for i in range(ndim)]
    return _apply_per_axis(dense, matrices, transpose=True)


def upsample_control_grid(control, fine_control_shape):
    """Control displacement of the next finer pyramid level (same control spacing in voxels).

    Coarse control point ``k`` coincides with fine control point ``2k``; values in between are linear,
    so the coarse dense field is reproduced exactly, and displacements (voxels) are multiplied by 2.
    """
    control = tf.convert_to_tensor(control)
    ndim = len(fine_control_shape)
    coarse = tf.shape(control)[1 : 1 + ndim]
    matrices = [_hat_matrix(fine_control_shape[i], coarse[i], 2, control.dtype) for i in range(ndim)]
    return 2.0 * _apply_per_axis(control, matrices, transpose=False)

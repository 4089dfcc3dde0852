"""Multi-linear (degree-1) B-spline interpolation from a control grid, its exact adjoint, and the
control-grid upsampling between pyramid levels.

Control point ``k`` sits on dense voxel ``k * s`` along every axis (``s`` = control spacing in voxels),
so a dense axis of length ``n`` needs ``(n - 1) // s + 2`` control points. The operator is applied
separably, one axis at a time, on blocks of ``s`` dense voxels: voxel ``k s + j`` is
``(1 - j / s) c[k] + (j / s) c[k + 1]`` (``c[K] = 0`` past the last control point), so the adjoint is
the same per-axis sums transposed (why this form: docs/notes/benchmarks.md, "Speed and memory").
"""

import numpy as np
import tensorflow as tf


def control_grid_shape(spatial_shape, spacing):
    """Control-grid shape for a dense ``spatial_shape`` and control ``spacing`` (voxels)."""
    return [(n - 1) // spacing + 2 for n in spatial_shape]


def bspline_matrix(n, spacing):
    """The interpolation of :func:`bspline_interpolate` along one axis as a matrix ``[n, K]`` (numpy float64;
    ``K`` control points for ``n`` dense voxels): dense voxel ``k s + j`` is ``(1 - j / s) c[k] + (j / s) c[k + 1]``."""
    voxels = np.arange(n)
    lower, fraction = voxels // spacing, (voxels % spacing) / spacing
    matrix = np.zeros((n, control_grid_shape([n], spacing)[0]))
    matrix[voxels, lower] = 1.0 - fraction
    matrix[voxels, lower + 1] = fraction
    return matrix


def _take(x, axis, start, stop):
    """``x`` restricted to ``start:stop`` along ``axis``."""
    return x[(slice(None),) * axis + (slice(start, stop),)]


def _block_weights(step, axis, rank, dtype):
    """``j / step`` for ``j = 0 .. step - 1``, shaped to broadcast along the block axis ``axis + 1``."""
    shape = [1] * (rank + 1)
    shape[axis + 1] = step
    return tf.reshape(tf.range(step, dtype=dtype) / float(step), shape)


def _interpolate_axis(x, axis, step, n):
    """Linear interpolation along ``axis`` of ``x`` (``K`` control points) at dense voxels ``0 .. n - 1``
    (``n <= K step``)."""
    paddings = [[0, 0]] * x.shape.rank
    paddings[axis] = [0, 1]
    extended = tf.pad(x, paddings)  # c[K] = 0
    count = tf.shape(x)[axis]
    lower = tf.expand_dims(_take(extended, axis, 0, count), axis + 1)
    upper = tf.expand_dims(_take(extended, axis, 1, count + 1), axis + 1)
    t = _block_weights(step, axis, x.shape.rank, x.dtype)
    blocks = lower + t * (upper - lower)  # [..., K, step, ...]
    shape = tf.shape(x)
    dense = tf.reshape(blocks, tf.concat([shape[:axis], [count * step], shape[axis + 1 :]], axis=0))
    return _take(dense, axis, 0, n)


def _adjoint_axis(y, axis, step, count):
    """Adjoint of :func:`_interpolate_axis`: ``y`` (``n`` dense voxels along ``axis``) -> ``count``
    control points."""
    shape = tf.shape(y)
    paddings = [[0, 0]] * y.shape.rank
    paddings[axis] = [0, count * step - shape[axis]]  # to K whole blocks
    blocks = tf.reshape(
        tf.pad(y, paddings), tf.concat([shape[:axis], [count, step], shape[axis + 1 :]], axis=0)
    )  # [..., K, step, ...]
    t = _block_weights(step, axis, y.shape.rank, y.dtype)
    to_upper = tf.reduce_sum(blocks * t, axis=axis + 1)  # the share of c[k + 1]
    to_lower = tf.reduce_sum(blocks, axis=axis + 1) - to_upper  # the share of c[k]
    shift = [[0, 0]] * y.shape.rank
    shift[axis] = [1, 0]
    return to_lower + tf.pad(_take(to_upper, axis, 0, count - 1), shift)


def bspline_interpolate(control, spacing, spatial_shape):
    """Dense field ``[B, *spatial_shape, C]`` from control values ``[B, *K, C]`` (K = control shape)."""
    x = tf.convert_to_tensor(control)
    for axis, n in enumerate(spatial_shape):
        x = _interpolate_axis(x, axis + 1, spacing, n)
    return x


def bspline_adjoint(dense, spacing, control_shape):
    """Exact adjoint of :func:`bspline_interpolate`: ``[B, *S, C]`` -> ``[B, *control_shape, C]``."""
    y = tf.convert_to_tensor(dense)
    for axis, count in enumerate(control_shape):
        y = _adjoint_axis(y, axis + 1, spacing, count)
    return y


def upsample_control_grid(control, fine_control_shape):
    """Control displacement of the next finer pyramid level (same control spacing in voxels).

    Coarse control point ``k`` coincides with fine control point ``2k``; values in between are linear,
    so the coarse dense field is reproduced exactly, and displacements (voxels) are multiplied by 2.
    """
    return 2.0 * bspline_interpolate(control, 2, fine_control_shape)

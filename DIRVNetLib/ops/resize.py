"""Fields carried between grids that share origin and direction (voxel 0 on voxel 0), one axis at a time:
the coarse pass's flow onto the working grid, a displacement onto the fixed grid."""

import tensorflow as tf


def _along_axes(field, ratios, spatial_shape):
    x = tf.convert_to_tensor(field)
    for axis, (n, ratio) in enumerate(zip(spatial_shape, ratios), start=1):
        last = x.shape[axis] - 1
        position = tf.minimum(tf.range(n, dtype=tf.float64) * float(ratio), float(last))  # index in x
        lower = tf.floor(position)
        shape = [1] * x.shape.rank
        shape[axis] = n
        weight = tf.reshape(tf.cast(position - lower, x.dtype), shape)
        lower = tf.cast(lower, tf.int32)
        upper = tf.minimum(lower + 1, last)
        x = tf.gather(x, lower, axis=axis) * (1.0 - weight) + tf.gather(x, upper, axis=axis) * weight
    return x


@tf.function(jit_compile=True, autograph=False)
def resample_axes(field, ratios, spatial_shape):
    """``field`` ``[B, *K, C]`` on a grid of ``spatial_shape`` ``[B, *spatial_shape, C]`` whose voxel ``i`` lies at
    ``field``'s continuous index ``i * ratios[a]`` along every spatial axis ``a`` (the ratio of the new spacing to
    ``field``'s; the same origin and direction). Multi-linear, one axis at a time; beyond ``field``'s last voxel
    along an axis, that voxel's values along that axis. Values unchanged. One XLA cluster, traced per ratios,
    shape and dtype."""
    return _along_axes(field, ratios, spatial_shape)


@tf.function(jit_compile=True, autograph=False)
def upsample_flow(flow, factor, spatial_shape):
    """``flow`` ``[B, *K, N]`` in voxels of a grid ``factor`` times coarser than the target along every axis,
    with the target's origin (voxel 0 on voxel 0) and direction, as ``coarser_reference`` (io/resample.py)
    makes it, on the target grid of ``spatial_shape``: ``[B, *spatial_shape, N]`` in the target's voxels
    (the values times ``factor``), interpolated as :func:`resample_axes`. One XLA cluster, traced per factor
    and shape (several times faster than the operations one by one)."""
    return _along_axes(flow, [1.0 / factor] * len(spatial_shape), spatial_shape) * float(factor)

"""Fields carried between grids that share origin and direction (voxel 0 on voxel 0), one axis at a time:
the coarse pass's flow onto the working grid, a displacement onto the fixed grid."""

import functools

import tensorflow as tf


def _along_axes(field, ratios, spatial_shape, scale):
    x = tf.convert_to_tensor(field)
    for axis, (n, ratio) in enumerate(zip(spatial_shape, ratios), start=1):
        last = x.shape[axis] - 1
        position = tf.minimum(tf.range(n, dtype=tf.float64) * ratio, float(last))  # index in x
        lower = tf.floor(position)
        shape = [1] * x.shape.rank
        shape[axis] = n
        weight = tf.reshape(tf.cast(position - lower, x.dtype), shape)
        lower = tf.cast(lower, tf.int32)
        upper = tf.minimum(lower + 1, last)
        x = tf.gather(x, lower, axis=axis) * (1.0 - weight) + tf.gather(x, upper, axis=axis) * weight
    return x * scale if scale != 1.0 else x


@functools.lru_cache(maxsize=32)
def _cluster(ratios, spatial_shape, scale):
    """:func:`_along_axes` for one pair of grids as one XLA cluster, traced once per input dtype and shape. Its
    own ``functools.partial`` per pair of grids: TensorFlow counts tracings per function, so one function for
    all would be retraced for every new pair and set off its retracing warning."""
    along = functools.partial(_along_axes, ratios=ratios, spatial_shape=spatial_shape, scale=scale)
    return tf.function(along, jit_compile=True, autograph=False)


def resample_axes(field, ratios, spatial_shape):
    """``field`` ``[B, *K, C]`` on a grid of ``spatial_shape`` ``[B, *spatial_shape, C]`` whose voxel ``i`` lies at
    ``field``'s continuous index ``i * ratios[a]`` along every spatial axis ``a`` (the ratio of the new spacing to
    ``field``'s; the same origin and direction). Multi-linear, one axis at a time; beyond ``field``'s last voxel
    along an axis, that voxel's values along that axis. Values unchanged. One XLA cluster."""
    return _cluster(tuple(float(r) for r in ratios), tuple(int(n) for n in spatial_shape), 1.0)(field)


def upsample_flow(flow, factor, spatial_shape):
    """``flow`` ``[B, *K, N]`` in voxels of a grid ``factor`` times coarser than the target along every axis,
    with the target's origin (voxel 0 on voxel 0) and direction, as ``coarser_reference`` (io/resample.py)
    makes it, on the target grid of ``spatial_shape``: ``[B, *spatial_shape, N]`` in the target's voxels
    (the values times ``factor``), interpolated as :func:`resample_axes`. One XLA cluster (several times
    faster than the operations one by one)."""
    ratios = (1.0 / factor,) * len(spatial_shape)
    return _cluster(ratios, tuple(int(n) for n in spatial_shape), float(factor))(flow)

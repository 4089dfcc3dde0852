"""A flow on a coarser grid carried onto the finer grid it was made from (the coarse pass's field)."""

import tensorflow as tf


@tf.function(jit_compile=True, autograph=False)
def upsample_flow(flow, factor, spatial_shape):
    """``flow`` ``[B, *K, N]`` in voxels of a grid ``factor`` times coarser than the target along every axis,
    with the target's origin (voxel 0 on voxel 0) and direction, as ``coarser_reference`` (io/resample.py)
    makes it, on the target grid of ``spatial_shape``: ``[B, *spatial_shape, N]`` in the target's voxels
    (the values times ``factor``). Multi-linear, one axis at a time; beyond the coarse grid the nearest
    coarse vector along that axis. One XLA cluster, traced per factor and shape (several times faster
    than the operations one by one)."""
    x = tf.convert_to_tensor(flow)
    for axis, n in enumerate(spatial_shape, start=1):
        last = x.shape[axis] - 1
        position = tf.minimum(tf.range(n, dtype=tf.float64) / float(factor), float(last))  # coarse index
        lower = tf.floor(position)
        shape = [1] * x.shape.rank
        shape[axis] = n
        weight = tf.reshape(tf.cast(position - lower, x.dtype), shape)
        lower = tf.cast(lower, tf.int32)
        upper = tf.minimum(lower + 1, last)
        x = tf.gather(x, lower, axis=axis) * (1.0 - weight) + tf.gather(x, upper, axis=axis) * weight
    return x * float(factor)

"""Backward (pull) linear warping, differentiable with respect to the image and the displacement."""

import itertools

import tensorflow as tf


def identity_grid(spatial_shape, ndim, dtype=tf.float32):
    """Voxel coordinates ``[*S, N]`` of a grid of shape ``spatial_shape`` (array order)."""
    axes = [tf.cast(tf.range(spatial_shape[i]), dtype) for i in range(ndim)]
    return tf.stack(tf.meshgrid(*axes, indexing="ij"), axis=-1)


def warp(image, flow):
    """Resample ``image`` at ``x + flow(x)``: ``out[b, x] = image[b, x + flow[b, x]]``.

    image: ``[B, *S, C]``; flow: ``[B, *S, N]`` displacement in voxels, component ``i`` along array
    axis ``i``. Multi-linear interpolation; positions outside the image take the nearest border value
    (coordinates are clamped, so the gradient with respect to the flow is zero there).
    Returns ``[B, *S, C]``.
    """
    image = tf.convert_to_tensor(image)
    flow = tf.convert_to_tensor(flow, dtype=image.dtype)
    ndim = flow.shape[-1]
    shape = tf.shape(image)
    batch, spatial, channels = shape[0], shape[1 : 1 + ndim], shape[-1]
    coords = identity_grid(spatial, ndim, flow.dtype)[tf.newaxis] + flow  # [B, *S, N]

    lower, upper, weight_upper = [], [], []
    for axis in range(ndim):
        top = tf.cast(spatial[axis] - 1, coords.dtype)
        c = tf.clip_by_value(coords[..., axis], 0.0, top)
        c0 = tf.floor(c)
        weight_upper.append(c - c0)
        c0 = tf.cast(c0, tf.int32)
        lower.append(c0)
        upper.append(tf.minimum(c0 + 1, spatial[axis] - 1))

    # Row-major strides of the flattened [B * prod(S), C] image.
    strides = [tf.reduce_prod(spatial[axis + 1 :]) for axis in range(ndim)]
    voxels = tf.reduce_prod(spatial)
    flat = tf.reshape(image, [-1, channels])
    base = tf.reshape(tf.range(batch) * voxels, [-1] + [1] * ndim)

    out = 0.0
    for corner in itertools.product((0, 1), repeat=ndim):
        index = base
        weight = 1.0
        for axis, bit in enumerate(corner):
            index = index + (upper[axis] if bit else lower[axis]) * strides[axis]
            weight = weight * (weight_upper[axis] if bit else 1.0 - weight_upper[axis])
        out = out + tf.gather(flat, index) * weight[..., tf.newaxis]
    return out


compiled_warp = tf.function(warp, jit_compile=True, autograph=False)
""":func:`warp` as one XLA cluster, for calls outside a compiled graph (several times faster on a CPU)."""

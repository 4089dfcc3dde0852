"""Image gradients and the binomial image pyramid."""

import numpy as np
import tensorflow as tf

from DIRVNetLib.ops import GRADIENT_SCHEMES

_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0], dtype=np.float32) / 16.0


def convolve(x, kernels, strides=1, padding="SAME"):
    """Channels-last 2D/3D correlation of ``x`` ``[B, *S, C_in]`` with ``kernels`` ``[*k, C_in, C_out]``.

    (Calls conv2d/conv3d with an explicit data format: TensorFlow's eager Conv3D gradient needs it.)
    """
    ndim = len(kernels.shape) - 2
    if isinstance(strides, int):
        strides = [strides] * ndim
    strides = [1, *strides, 1]
    if ndim == 2:
        return tf.nn.conv2d(x, kernels, strides, padding, data_format="NHWC")
    return tf.nn.conv3d(x, kernels, strides, padding, data_format="NDHWC")


def image_gradient(image, scheme="forward"):
    """Finite-difference gradient of a ``[B, *S, 1]`` image, mirrored at the borders.

    scheme "forward": ``I[x + e_i] - I[x]`` (zero at the last index; it is centred half a voxel ahead
    of ``x``); "central": ``(I[x + e_i] - I[x - e_i]) / 2`` (centred on ``x``; half the one-sided
    difference at the first and last index). Returns ``[B, *S, N]``, component ``i`` along array axis
    ``i``, in intensity per voxel.
    """
    if scheme not in GRADIENT_SCHEMES:
        raise ValueError(f"gradient scheme must be one of {GRADIENT_SCHEMES}, got '{scheme}'")
    image = tf.convert_to_tensor(image)
    ndim = image.shape.rank - 2
    before = 1 if scheme == "central" else 0
    parts = []
    for axis in range(1, ndim + 1):
        paddings = [[0, 0]] * (ndim + 2)
        paddings[axis] = [before, 1]
        padded = tf.pad(image, paddings, mode="SYMMETRIC")
        ahead = [0] * (ndim + 2)
        ahead[axis] = before + 1
        behind = [0] * (ndim + 2)
        difference = tf.slice(padded, ahead, tf.shape(image)) - tf.slice(padded, behind, tf.shape(image))
        parts.append(0.5 * difference if scheme == "central" else difference)
    return tf.concat(parts, axis=-1)


def binomial_downsample(image):
    """Smooth with the normalised binomial kernel [1, 4, 6, 4, 1]/16 and keep every second voxel.

    image: ``[B, *S, C]`` (reflect padding; every axis needs at least 3 voxels).
    Output voxel ``i`` is centred on input voxel ``2i``; shape ``[B, *ceil(S / 2), C]``.
    """
    image = tf.convert_to_tensor(image)
    ndim = image.shape.rank - 2
    channels = image.shape[-1]
    # Channels into the batch so that one single-channel kernel serves every channel.
    perm = [0, ndim + 1] + list(range(1, ndim + 1))
    x = tf.transpose(image, perm)
    shape = tf.shape(x)
    x = tf.reshape(x, tf.concat([[-1], shape[2:], [1]], axis=0))
    for axis in range(ndim):
        kernel_shape = [1] * ndim + [1, 1]
        kernel_shape[axis] = 5
        kernel = tf.constant(_BINOMIAL.reshape(kernel_shape), dtype=x.dtype)
        paddings = [[0, 0]] * (ndim + 2)
        paddings[axis + 1] = [2, 2]
        strides = [1] * ndim
        strides[axis] = 2
        x = convolve(tf.pad(x, paddings, mode="REFLECT"), kernel, strides, padding="VALID")
    out_spatial = tf.shape(x)[1 : 1 + ndim]
    x = tf.reshape(x, tf.concat([[-1, channels], out_spatial], axis=0))
    inverse = [0] + list(range(2, ndim + 2)) + [1]
    return tf.transpose(x, inverse)

"""Same-size convolution computed on the 2^N polyphase components of an image (a speed device).

A correlation with an odd ``k``-tap kernel of a ``[B, *S, C]`` image with even ``S`` equals a
correlation of its polyphase components (``space_to_depth``: ``[B, *S/2, 2^N C]``) with a
``k'``-tap kernel (``k' = 2 ceil(c/2) + 1``, ``c = k // 2``) mapping ``2^N C_in`` to ``2^N C_out``
channels, followed by ``depth_to_space``: more multiply-adds than the direct form, in the wide-channel
shape CPU convolution libraries run best (docs/notes/benchmarks.md, "Speed and memory"). Zero padding
("SAME") carries over exactly because every axis is even. Used for the 3D data-term field of
experts (:mod:`DIRVNetLib.model.foe`), whose activations apply to the polyphase responses directly.
"""

import functools
import string

import numpy as np
import tensorflow as tf


def space_to_depth(x):
    """``[B, *S, C]`` (every ``S`` even) -> ``[B, *S/2, 2^N C]``; channel ``(p_1, ..., p_N, c)``
    (row-major) holds voxel ``2 X + p`` of channel ``c``."""
    x = tf.convert_to_tensor(x)
    ndim = x.shape.rank - 2
    channels = x.shape[-1]
    shape = tf.shape(x)
    split = [shape[0]]
    for axis in range(ndim):
        split += [shape[1 + axis] // 2, 2]
    x = tf.reshape(x, split + [channels])
    perm = [0] + [1 + 2 * a for a in range(ndim)] + [2 + 2 * a for a in range(ndim)] + [2 * ndim + 1]
    x = tf.transpose(x, perm)
    return tf.reshape(x, tf.concat([[shape[0]], shape[1 : 1 + ndim] // 2, [channels * 2**ndim]], axis=0))


def depth_to_space(x):
    """Inverse of :func:`space_to_depth`: ``[B, *S, 2^N C]`` -> ``[B, *2S, C]``."""
    x = tf.convert_to_tensor(x)
    ndim = x.shape.rank - 2
    channels = x.shape[-1] // 2**ndim
    shape = tf.shape(x)
    x = tf.reshape(x, tf.concat([shape[: 1 + ndim], [2] * ndim, [channels]], axis=0))
    perm = [0]
    for axis in range(ndim):
        perm += [1 + axis, 1 + ndim + axis]
    x = tf.transpose(x, perm + [2 * ndim + 1])
    return tf.reshape(x, tf.concat([[shape[0]], shape[1 : 1 + ndim] * 2, [channels]], axis=0))


@functools.cache
def _phase_selection(size):
    """``sel[d, q, p, t] = 1`` where tap ``t`` of a ``size``-tap kernel links output phase ``p`` to input
    phase ``q`` at coarse offset ``d - r`` (``t = 2 (d - r) + q - p + c``)."""
    c = size // 2
    r = -(-c // 2)
    sel = np.zeros((2 * r + 1, 2, 2, size), np.float32)
    for d in range(2 * r + 1):
        for q in range(2):
            for p in range(2):
                t = 2 * (d - r) + q - p + c
                if 0 <= t < size:
                    sel[d, q, p, t] = 1.0
    return sel


def polyphase_kernels(kernels):
    """``[*k, C_in, C_out]`` (odd ``k``, equal on every axis) -> ``[*k', 2^N C_in, 2^N C_out]``."""
    kernels = tf.convert_to_tensor(kernels)
    ndim = kernels.shape.rank - 2
    size = int(kernels.shape[0])
    sel = tf.constant(_phase_selection(size), kernels.dtype)
    letters = iter(string.ascii_letters)
    d, q, p, t = ([next(letters) for _ in range(ndim)] for _ in range(4))
    i, o = next(letters), next(letters)
    operands = [f"{d[a]}{q[a]}{p[a]}{t[a]}" for a in range(ndim)] + ["".join(t) + i + o]
    result = "".join(d) + "".join(q) + i + "".join(p) + o
    poly = tf.einsum(",".join(operands) + "->" + result, *([sel] * ndim), kernels)
    coarse = sel.shape[0]
    return tf.reshape(poly, [coarse] * ndim + [kernels.shape[-2] * 2**ndim, kernels.shape[-1] * 2**ndim])


def polyphase_applicable(spatial_shape, kernel_size):
    """Whether the polyphase form pays: 3D, every axis even (static sizes) and kernels of at least 5
    taps (docs/notes/benchmarks.md, "Speed and memory")."""
    return len(spatial_shape) == 3 and kernel_size >= 5 and all(n is not None and n % 2 == 0 for n in spatial_shape)

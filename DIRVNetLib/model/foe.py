"""The field-of-experts operator ``FoE(x) = sum_k K_k^T phi_k(K_k * x)``."""

import tensorflow as tf

from DIRVNetLib.model.activations import ACTIVATION_FUNCTIONS
from DIRVNetLib.ops.filters import convolve
from DIRVNetLib.ops.polyphase import depth_to_space, polyphase_applicable, polyphase_kernels, space_to_depth


def zero_mean(kernels):
    """Projection of ``[*k, 1, F]`` kernels onto zero mean (constant inputs give no response)."""
    ndim = len(kernels.shape) - 2
    return kernels - tf.reduce_mean(kernels, axis=list(range(ndim)), keepdims=True)


def field_of_experts(x, kernels, values, vrange, activation, centred=False):
    """Gradient of the learned energy ``sum_k rho_k(K_k * x)`` for a ``[B, *S, 1]`` input.

    kernels: ``[*k, 1, F]``; values: ``[F, knots]`` activation parameters (phi_k = rho_k'); centred:
    use ``phi_k(z) - phi_k(0)``. Convolutions use zero padding ("SAME"). Where the polyphase form
    pays (:func:`polyphase_applicable`) the whole operator runs on polyphase components: the
    activations apply to the polyphase responses, with no reshuffling between ``K`` and ``K^T``.
    Returns ``[B, *S, 1]``.
    """
    ndim = len(kernels.shape) - 2
    polyphase = polyphase_applicable(x.shape[1 : 1 + ndim], kernels.shape[0])
    responses = convolve_filters(x, kernels, polyphase)
    activated = _activate(responses, channel_values(values, ndim, polyphase), vrange, activation, centred)
    return adjoint_convolution(activated, kernels, polyphase)


def channel_values(values, ndim, polyphase=False):
    """The ``[F, knots]`` activation parameters per response channel of :func:`convolve_filters`."""
    # A tensor, not a variable: a variable passed into the XLA function got wrong gradients under
    # MirroredStrategy (Testing/Python/test_training_strategy.py).
    values = tf.convert_to_tensor(values)
    return tf.tile(values, [2**ndim, 1]) if polyphase else values  # channel (phase, filter) -> filter


def convolve_filters(x, kernels, polyphase=False):
    """``K x``: the responses ``[B, *S, F]`` of ``[B, *S, 1]`` ``x`` to odd ``[*k, 1, F]`` kernels; with
    ``polyphase``, the same values as ``[B, *S/2, 2^N F]`` polyphase responses (channel = phase * F
    + filter, phases as :func:`space_to_depth`)."""
    if polyphase:
        return convolve(space_to_depth(x), polyphase_kernels(kernels))
    return convolve(x, kernels)


def adjoint_convolution(y, kernels, polyphase=False):
    """``K^T y``, the exact adjoint of :func:`convolve_filters` (same ``polyphase``): the sum over filters
    of each response correlated with its flipped kernel. Returns ``[B, *S, 1]``.

    Without polyphase: in 2D a depthwise correlation summed over filters; in 3D, with no depthwise 3D
    convolution in TensorFlow, a correlation with the channels swapped (docs/notes/benchmarks.md, "Speed
    and memory")."""
    if polyphase:
        return depth_to_space(convolve(y, polyphase_kernels(_adjoint_kernels(kernels))))
    if len(kernels.shape) == 4:
        flipped = tf.reverse(kernels, axis=[0, 1])
        per_filter = tf.nn.depthwise_conv2d(y, tf.transpose(flipped, [0, 1, 3, 2]), [1, 1, 1, 1], "SAME")
        return tf.reduce_sum(per_filter, axis=-1, keepdims=True)
    return convolve(y, _adjoint_kernels(kernels))


def _adjoint_kernels(kernels):
    """``[*k, 1, F]`` -> ``[*k, F, 1]``: flipped, channels swapped (correlation with them is ``K^T``)."""
    ndim = len(kernels.shape) - 2
    flipped = tf.reverse(kernels, axis=list(range(ndim)))
    return tf.transpose(flipped, list(range(ndim)) + [ndim + 1, ndim])


@tf.function(jit_compile=True, autograph=False)  # XLA fuses the gathers and the arithmetic
def _activate(responses, values, vrange, activation, centred):
    """The activations ``phi_k`` applied to ``[..., F]`` responses (``phi_k(z) - phi_k(0)`` if centred)."""
    phi = ACTIVATION_FUNCTIONS[activation]
    activated = phi(responses, values, vrange)
    if centred:
        activated = activated - phi(tf.zeros([1, values.shape[0]], responses.dtype), values, vrange)
    return activated


def componentwise_field_of_experts(field, kernels, values, vrange, activation, centred=False):
    """Apply one single-channel FoE to every component of a ``[B, *S, N]`` field independently."""
    ndim = field.shape.rank - 2
    components = field.shape[-1]
    perm = [0, ndim + 1] + list(range(1, ndim + 1))
    x = tf.transpose(field, perm)  # [B, N, *S]
    shape = tf.shape(x)
    x = tf.reshape(x, tf.concat([[-1], shape[2:], [1]], axis=0))
    y = field_of_experts(x, kernels, values, vrange, activation, centred)
    y = tf.reshape(y, tf.concat([[-1, components], shape[2:]], axis=0))
    return tf.transpose(y, [0] + list(range(2, ndim + 2)) + [1])

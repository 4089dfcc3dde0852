"""One variational unit: a learned gradient step on data term + regulariser."""

import dataclasses

import tensorflow as tf

from DIRVNetLib.model.foe import componentwise_field_of_experts, field_of_experts, zero_mean
from DIRVNetLib.ops import bspline_adjoint, bspline_interpolate, image_gradient, warp


@dataclasses.dataclass
class UnitParameters:
    """Learned parts of one unit (tensors or variables).

    data_kernels ``[*k_d, 1, F_d]`` and data_values ``[F_d, knots]``: data-term FoE;
    reg_kernels ``[*k_r, 1, F_r]`` (used zero-mean) and reg_values ``[F_r, knots]``: regulariser FoE;
    alpha: step size (scalar, used as ``|alpha|``).
    """

    data_kernels: tf.Tensor
    data_values: tf.Tensor
    reg_kernels: tf.Tensor
    reg_values: tf.Tensor
    alpha: tf.Tensor

    NAMES = ("data_kernels", "data_values", "reg_kernels", "reg_values", "alpha")


def variational_unit(
    control, fixed, moving, params, spacing, activation, data_range, reg_range, centred=False, gradient="forward"
):
    """``d <- d - |alpha| * (B^T[grad W * FoE_data(W - F)] / s^N + FoE_reg(d))`` with ``W = M o (x + B d)``.

    control: ``[B, *K, N]`` control displacement (voxels of this level); fixed, moving: ``[B, *S, 1]``;
    spacing: control spacing ``s`` (voxels); activation, data_range, reg_range, centred, gradient (the
    finite-difference scheme of ``grad W``): as in :class:`NetworkConfig`. The division by ``s^N``
    (voxels per control cell) keeps the step sizes comparable across spacings and dimensions. Returns
    the updated control displacement.
    """
    residual, image_grad = _warp_residual(control, fixed, moving, spacing, gradient)
    data_foe = field_of_experts(residual, params.data_kernels, params.data_values, data_range, activation, centred)
    data_gradient = _data_gradient(image_grad, data_foe, control, spacing)
    reg_gradient = componentwise_field_of_experts(
        control, zero_mean(params.reg_kernels), params.reg_values, reg_range, activation, centred
    )
    return control - tf.abs(params.alpha) * (data_gradient + reg_gradient)


# The pointwise and gather-based operators run under XLA, the convolutions outside it
# (docs/notes/benchmarks.md, "Speed and memory").


def _spatial_shape(tensor):
    ndim = tensor.shape.rank - 2
    shape = tf.shape(tensor)
    return [shape[1 + i] for i in range(ndim)]


def _warp_residual(control, fixed, moving, spacing, scheme):
    """``W - F`` ``[B, *S, 1]`` and ``grad W`` ``[B, *S, N]`` (finite differences ``scheme``) with
    ``W = M o (x + B d)``.

    Two XLA clusters, not one, so that XLA does not recompute the warp's gathers for every neighbour
    the finite differences read."""
    warped = _warped_moving(control, moving, spacing, _spatial_shape(fixed))
    return _residual_and_gradient(warped, fixed, scheme)


@tf.function(jit_compile=True, autograph=False)
def _warped_moving(control, moving, spacing, spatial_shape):
    """``M o (x + B d)`` ``[B, *S, 1]`` on a dense grid of ``spatial_shape``."""
    return warp(moving, bspline_interpolate(control, spacing, spatial_shape))  # flow [B, *S, N] in voxels


@tf.function(jit_compile=True, autograph=False)
def _residual_and_gradient(warped, fixed, scheme):
    return warped - fixed, image_gradient(warped, scheme)


@tf.function(jit_compile=True, autograph=False)
def _data_gradient(gradient, data_foe, control, spacing):
    """``B^T[grad W * FoE_data(W - F)] / s^N`` on the control grid of ``control``."""
    ndim = control.shape[-1]
    return bspline_adjoint(gradient * data_foe, spacing, _spatial_shape(control)) / float(spacing**ndim)

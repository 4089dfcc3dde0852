"""Operators: warping against SimpleITK, B-spline adjoint, upsampling, gradients, pyramid."""

import numpy as np
import pytest
import SimpleITK as sitk
import tensorflow as tf

from DIRVNetLib.data.deformations import smooth_random_field
from DIRVNetLib.ops import (
    binomial_downsample,
    bspline_adjoint,
    bspline_interpolate,
    bspline_matrix,
    control_grid_shape,
    image_gradient,
    upsample_control_grid,
    warp,
)
from DIRVNetLib.ops.filters import convolve
from DIRVNetLib.ops.polyphase import depth_to_space, polyphase_kernels, space_to_depth


def _sitk_warp(array, flow):
    """SimpleITK linear resampling of ``array`` (unit spacing) at x + flow (array component order)."""
    image = sitk.GetImageFromArray(array)
    field = sitk.GetImageFromArray(flow[..., ::-1].astype(np.float64), isVector=True)
    transform = sitk.DisplacementFieldTransform(field)
    return sitk.GetArrayFromImage(sitk.Resample(image, image, transform, sitk.sitkLinear, -1.0))


@pytest.mark.parametrize("dimension", [2, 3])
def test_warp_matches_simpleitk_linear_resampling(dimension, t1_volume, t1_slice):
    array = sitk.GetArrayFromImage(t1_slice if dimension == 2 else t1_volume[30:90, 30:90, 20:44])
    array = array.astype(np.float32) / array.max()
    flow = smooth_random_field(array.shape, 3.0, np.random.default_rng(dimension))
    ours = warp(array[np.newaxis, ..., np.newaxis], flow[np.newaxis]).numpy()[0, ..., 0]
    theirs = _sitk_warp(array, flow)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in array.shape], indexing="ij"), -1)
    target = grid + flow
    inside = np.all((target >= 0) & (target <= np.array(array.shape) - 1), axis=-1)
    assert inside.mean() > 0.8
    np.testing.assert_allclose(ours[inside], theirs[inside], atol=2e-5)


def test_warp_border_is_nearest():
    image = np.arange(12, dtype=np.float32).reshape(1, 3, 4, 1)
    flow = np.zeros((1, 3, 4, 2), np.float32)
    flow[..., 1] = 10.0  # far beyond the last column
    out = warp(image, flow).numpy()
    np.testing.assert_array_equal(out[0, :, :, 0], np.repeat(image[0, :, -1:, 0], 4, axis=1))


@pytest.mark.parametrize("dimension", [2, 3])
@pytest.mark.parametrize("spacing", [2, 3, 4])
def test_bspline_adjoint_identity(dimension, spacing):
    rng = np.random.default_rng(spacing)
    shape = [16, 13, 11][:dimension]
    control_shape = control_grid_shape(shape, spacing)
    x = rng.normal(size=[2, *control_shape, dimension]).astype(np.float32)
    y = rng.normal(size=[2, *shape, dimension]).astype(np.float32)
    bx = bspline_interpolate(x, spacing, shape).numpy()
    bty = bspline_adjoint(y, spacing, control_shape).numpy()
    lhs, rhs = np.vdot(bx.astype(np.float64), y), np.vdot(x.astype(np.float64), bty)
    assert abs(lhs - rhs) <= 1e-5 * max(1.0, abs(lhs))


def test_bspline_interpolates_control_values_and_is_linear_between():
    control = np.random.default_rng(0).normal(size=(1, 5, 6, 2)).astype(np.float32)
    dense = bspline_interpolate(control, 4, [16, 20]).numpy()
    np.testing.assert_allclose(dense[0, ::4, ::4], control[0, :4, :5], atol=1e-6)
    np.testing.assert_allclose(dense[0, 2, 0], 0.5 * (control[0, 0, 0] + control[0, 1, 0]), atol=1e-6)


@pytest.mark.parametrize("n, spacing", [(16, 4), (17, 4), (13, 3), (2, 2), (9, 1)])
def test_bspline_matrix_is_the_interpolation_along_one_axis(n, spacing):
    control = np.random.default_rng(n).normal(size=(1, control_grid_shape([n], spacing)[0], 2)).astype(np.float32)
    dense = bspline_interpolate(control, spacing, [n]).numpy()[0]
    np.testing.assert_allclose(bspline_matrix(n, spacing) @ control[0], dense, atol=1e-6)


@pytest.mark.parametrize("dimension", [2, 3])
def test_control_grid_upsampling_reproduces_coarse_field(dimension):
    spacing = 4
    coarse_shape = [8, 12, 8][:dimension]
    fine_shape = [2 * n for n in coarse_shape]
    control = np.random.default_rng(1).normal(size=[1, *control_grid_shape(coarse_shape, spacing), dimension])
    control = control.astype(np.float32)
    coarse = bspline_interpolate(control, spacing, coarse_shape).numpy()
    fine_control = upsample_control_grid(control, control_grid_shape(fine_shape, spacing))
    fine = bspline_interpolate(fine_control, spacing, fine_shape).numpy()
    even = (slice(None),) + (slice(None, None, 2),) * dimension
    np.testing.assert_allclose(fine[even], 2.0 * coarse, atol=1e-5)


def test_image_gradient_forward_differences():
    ramp = np.add.outer(3.0 * np.arange(4), np.arange(5) ** 2).astype(np.float32)
    grad = image_gradient(ramp[np.newaxis, ..., np.newaxis]).numpy()[0]
    np.testing.assert_allclose(grad[:-1, :, 0], 3.0)
    np.testing.assert_allclose(grad[-1, :, 0], 0.0)
    np.testing.assert_allclose(grad[:, :-1, 1], np.diff(np.arange(5) ** 2)[np.newaxis].repeat(4, 0))
    np.testing.assert_allclose(grad[:, -1, 1], 0.0)


@pytest.mark.parametrize("dimension", [2, 3])
def test_image_gradient_central_differences_are_centred(dimension):
    # A quadratic along every axis: the central difference is its exact derivative at the voxel, 2x,
    # inside; at the first and last index it is half the one-sided difference.
    n = [7, 6, 5][:dimension]
    coords = np.meshgrid(*[np.arange(k, dtype=np.float32) for k in n], indexing="ij")
    image = sum((i + 1.0) * c**2 for i, c in enumerate(coords))
    grad = image_gradient(image[np.newaxis, ..., np.newaxis], "central").numpy()[0]
    for axis in range(dimension):
        inside = (slice(None),) * axis + (slice(1, -1),)
        derivative = (axis + 1.0) * 2 * coords[axis]
        np.testing.assert_allclose(grad[inside + (Ellipsis, axis)], derivative[inside], rtol=1e-6)
        first = (slice(None),) * axis + (0,)
        last = (slice(None),) * axis + (-1,)
        step = np.diff(image, axis=axis)
        np.testing.assert_allclose(grad[first + (Ellipsis, axis)], 0.5 * np.take(step, 0, axis), rtol=1e-6)
        np.testing.assert_allclose(grad[last + (Ellipsis, axis)], 0.5 * np.take(step, -1, axis), rtol=1e-6)


def test_image_gradient_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="gradient scheme"):
        image_gradient(np.zeros((1, 4, 4, 1), np.float32), "backward")


@pytest.mark.parametrize("dimension", [2, 3])
def test_binomial_downsample_keeps_constants_and_linear_ramps(dimension):
    shape = [16, 12, 8][:dimension]
    ramp = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")[0]
    x = np.stack([np.full(shape, 3.0, np.float32), ramp], -1)[np.newaxis]
    out = binomial_downsample(x).numpy()[0]
    assert out.shape[:-1] == tuple(n // 2 for n in shape)
    np.testing.assert_allclose(out[..., 0], 3.0, atol=1e-5)
    interior = out[1:-1, ..., 1]  # reflect padding bends the ramp at the two ends only
    expected = 2.0 * np.arange(1, shape[0] // 2 - 1, dtype=np.float32)
    np.testing.assert_allclose(
        interior, expected.reshape([-1] + [1] * (dimension - 1)) * np.ones_like(interior), atol=1e-5
    )


@pytest.mark.parametrize("dimension", [2, 3])
def test_warp_gradients_match_finite_differences(dimension):
    rng = np.random.default_rng(dimension)
    shape = [5, 6][:dimension] if dimension == 2 else [3, 4, 3]
    image = rng.uniform(size=[1, *shape, 1])
    # Fractional displacements away from integer positions (linear interpolation has kinks there).
    flow = rng.uniform(0.2, 0.8, size=[1, *shape, dimension]) * rng.choice([-1, 1], size=[1, *shape, dimension])
    theoretical, numerical = tf.test.compute_gradient(
        lambda i, f: warp(i, f), [tf.constant(image, tf.float64), tf.constant(flow, tf.float64)], delta=1e-4
    )
    for t, n in zip(theoretical, numerical):
        np.testing.assert_allclose(t, n, atol=1e-6)


@pytest.mark.parametrize(
    "dimension, size, channels_in, channels_out", [(2, 7, 16, 1), (2, 5, 1, 3), (3, 5, 8, 1), (3, 3, 2, 2)]
)
def test_polyphase_convolution_equals_direct_convolution(dimension, size, channels_in, channels_out):
    rng = np.random.default_rng(5)
    x = rng.normal(size=[2] + [12, 10, 8][:dimension] + [channels_in]).astype(np.float32)
    kernels = rng.normal(size=[size] * dimension + [channels_in, channels_out]).astype(np.float32)
    components = space_to_depth(x)
    assert components.shape[-1] == channels_in * 2**dimension
    np.testing.assert_array_equal(depth_to_space(components).numpy(), x)
    poly = depth_to_space(convolve(components, polyphase_kernels(tf.constant(kernels)))).numpy()
    direct = convolve(x, kernels).numpy()
    np.testing.assert_allclose(poly, direct, atol=1e-4 * np.abs(direct).max())


def test_space_to_depth_puts_each_phase_in_its_own_channel():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    components = space_to_depth(x).numpy()
    np.testing.assert_array_equal(components[0, :, :, 0], x[0, 0::2, 0::2, 0])
    np.testing.assert_array_equal(components[0, :, :, 1], x[0, 0::2, 1::2, 0])
    np.testing.assert_array_equal(components[0, :, :, 2], x[0, 1::2, 0::2, 0])

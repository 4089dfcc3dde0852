"""Network parts: configuration, activations, field of experts, variational unit, pyramid network."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

from DIRVNetLib.model import DIRVNet, NetworkConfig
from DIRVNetLib.model.activations import gaussian_rbf, knot_positions, piecewise_linear
from DIRVNetLib.model.foe import _activate, adjoint_convolution, convolve_filters, field_of_experts
from DIRVNetLib.model.unit import UnitParameters, variational_unit


def test_config_json_round_trip_and_validation():
    config = NetworkConfig(ndim=2, levels=2, data_filters=8, activation="rbf", image_gradient="central")
    assert NetworkConfig.from_json(config.to_json()) == config
    assert NetworkConfig.from_dict({"ndim": 2}).image_gradient == "forward"  # weight sets from before the option
    assert json.loads(config.to_json())["data_filters"] == 8
    with pytest.raises(ValueError, match="unknown keys in the network configuration: colour"):
        NetworkConfig.from_dict({"ndim": 2, "colour": "red"})
    with pytest.raises(ValueError, match="ndim must be 2 or 3"):
        NetworkConfig(ndim=4)
    with pytest.raises(ValueError, match="odd"):
        NetworkConfig(data_kernel=4)
    with pytest.raises(ValueError, match="image_gradient must be one of"):
        NetworkConfig(image_gradient="sobel")


def test_size_rule():
    config = NetworkConfig(levels=3, control_spacing=4)
    assert config.size_multiple == 16 and config.min_size == 32
    assert config.padded_shape([181, 217, 20]) == [192, 224, 32]


def test_piecewise_linear_interpolates_knots_and_is_constant_outside():
    values = np.random.default_rng(0).normal(size=(3, 7)).astype(np.float32)
    knots = knot_positions(7, 2.0)
    x = np.linspace(-3, 3, 41, dtype=np.float32)
    out = piecewise_linear(np.repeat(x[:, None], 3, 1), values, 2.0).numpy()
    for f in range(3):
        np.testing.assert_allclose(out[:, f], np.interp(x, knots, values[f]), atol=1e-5)


def test_gaussian_rbf_uses_each_filters_own_weights():
    values = np.random.default_rng(1).normal(size=(2, 5)).astype(np.float32)
    mu, sigma = knot_positions(5, 1.0), 0.5
    x = np.array([[-0.3, 0.7]], np.float32)
    expected = [np.sum(values[f] * np.exp(-((x[0, f] - mu) ** 2) / (2 * sigma**2))) for f in range(2)]
    np.testing.assert_allclose(gaussian_rbf(x, values, 1.0).numpy()[0], expected, rtol=1e-5)


@pytest.mark.parametrize(
    "kernel_shape, image_shape",
    [((3, 3), (9, 8)), ((5, 5), (10, 8)), ((3, 3, 3), (7, 6, 5)), ((5, 5, 5), (8, 6, 10))],
)
def test_field_of_experts_with_identity_activation_is_sum_of_kt_k(kernel_shape, image_shape):
    """2D uses the depthwise adjoint convolution; 3D the direct one for 3 taps or odd shapes, the
    polyphase form for even shapes with 5 taps."""
    rng = np.random.default_rng(2)
    kernels = rng.normal(size=kernel_shape + (1, 2)).astype(np.float32)
    x = rng.normal(size=(1,) + image_shape + (1,)).astype(np.float32)
    identity = np.tile(knot_positions(5, 100.0), (2, 1))  # phi(z) = z on the whole response range
    out = field_of_experts(x, kernels, identity, 100.0, "linear").numpy()
    # <K x, K y> = <x, K^T K y>: K^T is the exact adjoint of K.
    y = rng.normal(size=x.shape).astype(np.float32)
    kx = tf.nn.convolution(x, kernels, padding="SAME").numpy()
    ky = tf.nn.convolution(y, kernels, padding="SAME").numpy()
    assert np.vdot(kx, ky) == pytest.approx(np.vdot(out, y), rel=1e-4)


@pytest.mark.parametrize("activation", ["linear", "rbf"])
def test_field_of_experts_on_polyphase_components_matches_the_direct_form(activation):
    """3D, 5 taps, even shape: the polyphase path gives each filter's responses its own activation."""
    rng = np.random.default_rng(3)
    kernels = tf.constant(rng.normal(0, 0.2, size=(5, 5, 5, 1, 3)), tf.float32)
    values = tf.constant(rng.normal(size=(3, 9)), tf.float32)  # a different nonlinearity per filter
    x = tf.constant(rng.normal(size=(1, 8, 6, 10, 1)), tf.float32)
    direct = adjoint_convolution(_activate(convolve_filters(x, kernels), values, 1.0, activation, True), kernels)
    out = field_of_experts(x, kernels, values, 1.0, activation, centred=True)
    np.testing.assert_allclose(out.numpy(), direct.numpy(), atol=1e-5 * float(tf.reduce_max(tf.abs(direct))))


def _unit_inputs(dimension, rng):
    shape = [8, 8, 8][:dimension]
    control = tf.constant(rng.normal(0, 0.3, size=[1] + [4] * dimension + [dimension]), tf.float64)
    fixed = tf.constant(rng.uniform(size=[1, *shape, 1]), tf.float64)
    moving = tf.constant(rng.uniform(size=[1, *shape, 1]), tf.float64)
    params = UnitParameters(
        data_kernels=tf.constant(rng.normal(0, 0.3, size=(3,) * dimension + (1, 2)), tf.float64),
        data_values=tf.constant(rng.normal(size=(2, 6)), tf.float64),
        reg_kernels=tf.constant(rng.normal(0, 0.3, size=(3,) * dimension + (1, 2)), tf.float64),
        reg_values=tf.constant(rng.normal(size=(2, 6)), tf.float64),
        alpha=tf.constant(0.7, tf.float64),
    )
    return control, fixed, moving, params


@pytest.mark.parametrize("dimension", [2, 3])
def test_variational_unit_gradients_match_finite_differences(dimension):
    control, fixed, moving, params = _unit_inputs(dimension, np.random.default_rng(dimension))

    def unit(alpha, data_kernels, reg_values):
        p = UnitParameters(data_kernels, params.data_values, params.reg_kernels, reg_values, alpha)
        # A scalar of the output keeps the finite-difference check cheap.
        return tf.reduce_sum(tf.sin(variational_unit(control, fixed, moving, p, 4, "rbf", 1.0, 1.0)))

    theoretical, numerical = tf.test.compute_gradient(
        unit, [params.alpha, params.data_kernels, params.reg_values], delta=1e-5
    )
    for t, n in zip(theoretical, numerical):
        np.testing.assert_allclose(t, n, rtol=1e-4, atol=1e-6)


def test_variational_unit_reads_as_the_formula():
    """With a zero regulariser and phi(z) = z, the unit is a gradient step on 1/2 sum (K * (W - F))^2."""
    control, fixed, moving, params = _unit_inputs(2, np.random.default_rng(5))
    identity = tf.constant(np.tile(knot_positions(6, 1e3), (2, 1)), tf.float64)
    p = UnitParameters(
        params.data_kernels, identity, params.reg_kernels, tf.zeros_like(params.reg_values), params.alpha
    )
    out = variational_unit(control, fixed, moving, p, 4, "linear", 1e3, 1.0)
    assert out.shape == control.shape
    assert not np.allclose(out.numpy(), control.numpy())


@pytest.mark.parametrize("gradient", ["forward", "central"])
def test_network_pads_crops_and_reports_every_unit(gradient):
    config = NetworkConfig(
        ndim=2, levels=2, units=2, data_filters=4, reg_filters=4, data_kernel=3, reg_kernel=3, image_gradient=gradient
    )
    network = DIRVNet(config, seed=0)
    rng = np.random.default_rng(0)
    fixed = rng.uniform(size=(1, 21, 19, 1)).astype(np.float32)
    seen = []
    output = network(fixed, fixed[:, ::-1], on_unit=lambda level, unit, control: seen.append((level, unit, control)))
    assert output.flow.shape == (1, 21, 19, 2)
    assert [(level, unit) for level, unit, _ in seen] == [(1, 0), (1, 1), (0, 0), (0, 1)]
    padded = config.padded_shape([21, 19])
    last = network.control_to_flow(seen[-1][2], 0, padded, [21, 19])
    np.testing.assert_allclose(last.numpy(), output.flow.numpy(), atol=1e-5)
    # The compiled (eager) path and the plain graph path agree.
    graph_flow = tf.function(lambda f, m: network(f, m).flow)(fixed, fixed[:, ::-1])
    np.testing.assert_allclose(graph_flow.numpy(), output.flow.numpy(), atol=1e-4)
    # The configured gradient scheme is the one used: the other scheme moves differently.
    other = DIRVNet(dataclasses.replace(config, image_gradient={"forward": "central", "central": "forward"}[gradient]))
    other.set_weights(network.get_weights())
    assert np.abs(other(fixed, fixed[:, ::-1]).flow.numpy() - output.flow.numpy()).max() > 1e-3


def test_network_stops_at_its_finest_level():
    config = NetworkConfig(ndim=2, levels=3, units=2, data_filters=4, reg_filters=4, data_kernel=3, reg_kernel=3)
    network = DIRVNet(config, seed=1)
    rng = np.random.default_rng(1)
    fixed = rng.uniform(size=(1, 33, 30, 1)).astype(np.float32)
    moving = np.roll(fixed, 2, axis=1)
    full = network(fixed, moving)
    seen = []
    output = network(fixed, moving, on_unit=lambda level, unit, control: seen.append((level, unit)), finest_level=1)
    # the coarser levels as in the whole pass, level 0 not run; the flow is level 1's carried to the input grid
    assert seen == [(2, 0), (2, 1), (1, 0), (1, 1)] and sorted(output.level_controls) == [1, 2]
    np.testing.assert_allclose(output.level_controls[1].numpy(), full.level_controls[1].numpy(), atol=1e-6)
    padded = config.padded_shape([33, 30])
    level_one = network.control_to_flow(full.level_controls[1], 1, padded, [33, 30])
    np.testing.assert_allclose(output.flow.numpy(), level_one.numpy(), atol=1e-5)
    assert np.abs(output.flow.numpy() - full.flow.numpy()).max() > 1e-3
    np.testing.assert_allclose(network.final_flow(fixed, moving, 1).numpy(), output.flow.numpy(), atol=1e-4)
    for bad in (-1, 3):
        with pytest.raises(ValueError, match="finest_level must be a pyramid level from 0 to 2"):
            network(fixed, moving, finest_level=bad)


@pytest.mark.parametrize(
    "shape, padded", [((1, 5, 3, 1), [16, 8]), ((1, 7, 20, 1), [7, 21]), ((1, 2, 3, 4, 2), [9, 3, 11])]
)
def test_mirror_padding_repeats_where_the_padding_exceeds_the_size(shape, padded):
    from DIRVNetLib.model.network import _mirror_pad

    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    expected = np.pad(x, [(0, 0)] + [(0, p - n) for p, n in zip(padded, shape[1:-1])] + [(0, 0)], mode="symmetric")
    np.testing.assert_array_equal(_mirror_pad(tf.constant(x), padded).numpy(), expected)


def test_network_registers_images_smaller_than_half_its_minimum_size():
    config = NetworkConfig(
        ndim=2, levels=3, units=1, data_filters=4, reg_filters=4, data_kernel=3, reg_kernel=3, control_spacing=8
    )
    assert min(config.padded_shape([12, 13])) > 2 * 13  # mirrored more than once
    image = np.random.default_rng(1).uniform(size=(1, 12, 13, 1)).astype(np.float32)
    flow = DIRVNet(config, seed=0)(image, image[:, ::-1]).flow.numpy()
    assert flow.shape == (1, 12, 13, 2) and np.isfinite(flow).all() and np.abs(flow).max() > 0


def test_set_weights_names_the_mismatch():
    network = DIRVNet(NetworkConfig(ndim=2, levels=1, units=1, data_filters=2, reg_filters=2))
    weights = network.get_weights()
    weights["level0/unit0/data_kernels"] = np.zeros((5, 5, 1, 2), np.float32)
    with pytest.raises(
        ValueError, match=r"level0/unit0/data_kernels has shape \(5, 5, 1, 2\), expected \(7, 7, 1, 2\)"
    ):
        network.set_weights(weights)
    del weights["level0/unit0/alpha"]
    with pytest.raises(ValueError, match="missing level0/unit0/alpha"):
        network.set_weights(weights)


@pytest.mark.parametrize("centred", [True, False])
def test_centred_activations_leave_an_image_registered_to_itself_in_place(centred):
    config = NetworkConfig(
        ndim=2,
        levels=2,
        units=2,
        data_filters=4,
        reg_filters=4,
        data_kernel=3,
        reg_kernel=3,
        centred_activations=centred,
    )
    network = DIRVNet(config, seed=1)
    weights = network.get_weights()
    for name in weights:
        if name.endswith("_values"):  # activations that are not zero at 0, as trained ones can be
            weights[name] = weights[name] + 0.5
    network.set_weights(weights)
    image = np.random.default_rng(0).uniform(size=(1, 32, 32, 1)).astype(np.float32)
    largest = float(np.abs(network(image, image).flow.numpy()).max())
    if centred:
        assert largest == 0.0
    else:
        assert largest > 1e-3

"""Learned pointwise activations (derivatives of the learned penalties), one per filter.

Both map responses ``x`` of shape ``[..., F]`` with per-filter parameters ``values`` ``[F, K]`` defined
on ``K`` equally spaced knots over ``[-vrange, vrange]``.
"""

import math

import numpy as np
import tensorflow as tf


def knot_positions(knots, vrange):
    """The ``knots`` equally spaced centres over ``[-vrange, vrange]``."""
    return np.linspace(-vrange, vrange, knots, dtype=np.float32)


def piecewise_linear(x, values, vrange):
    """Linear interpolation of ``values[f]`` at ``x[..., f]``; constant beyond the end knots."""
    filters, knots = values.shape[0], values.shape[1]
    t = (tf.clip_by_value(x, -vrange, vrange) + vrange) * ((knots - 1) / (2.0 * vrange))
    left = tf.clip_by_value(tf.floor(t), 0.0, knots - 2.0)
    frac = t - left
    index = tf.cast(left, tf.int32) + tf.range(filters) * knots
    flat = tf.reshape(values, [-1])
    return tf.gather(flat, index) * (1.0 - frac) + tf.gather(flat, index + 1) * frac


def gaussian_rbf(x, values, vrange):
    """``phi_f(x) = sum_j values[f, j] * exp(-(x - mu_j)^2 / (2 sigma^2))``, sigma = knot distance."""
    knots = values.shape[1]
    mu = tf.constant(knot_positions(knots, vrange), dtype=x.dtype)
    sigma = 2.0 * vrange / (knots - 1)
    basis = tf.exp(-tf.square(x[..., tf.newaxis] - mu) / (2.0 * sigma**2))  # [..., F, K]
    return tf.reduce_sum(basis * values, axis=-1)


ACTIVATION_FUNCTIONS = {"linear": piecewise_linear, "rbf": gaussian_rbf}


def initial_values(activation, filters, knots, vrange, slope, rng):
    """Knot values making every activation ``slope * x`` (a quadratic penalty) plus N(0, 0.01) noise.

    (The original initialised the values to pure N(0, 0.01) noise; starting from quadratic penalties
    makes the untrained network a plain gradient scheme and shortens training.)
    """
    mu = knot_positions(knots, vrange)
    target = slope * mu
    if activation == "rbf":
        target = target / math.sqrt(2.0 * math.pi)  # a Gaussian of sigma = knot distance sums to ~2.5 x
    noise = rng.normal(0.0, 0.01, size=(filters, knots))
    return (target[np.newaxis, :] + noise).astype(np.float32)

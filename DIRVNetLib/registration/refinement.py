"""Test-time refinement (instance optimisation) of a flow on one image pair.

Starting from a flow (e.g. the network's), Adam steps on a correction ``c`` held on a control grid
(multi-linear B-spline, one control point every ``control_spacing`` voxels), so that the flow is
``initial + B(c)``, minimise

    E = D(fixed, moving o (x + flow)) + smoothness * R(flow) + landmark_weight * L(flow)

- ``D``: ``"mse"``: mean squared intensity difference, after a linear map of the moving intensities
  fitted once on the starting flow; ``"ncc"``: 1 - mean local squared NCC over ``window``-voxel boxes.
  Images are normalised intensities (about [0, 1]).
- ``R``: diffusion energy, the mean over voxels and axes of the squared forward differences of the
  flow (voxels per voxel).
- ``L``: the landmark term. Point pairs ``(p_i, q_i)`` are given in physical LPS mm (SimpleITK point
  order x, y[, z]): ``p_i`` on the fixed image, ``q_i`` the corresponding point of the moving image.
  With the pull convention ``warped(p) = moving(p + u(p))`` the field should carry ``p_i`` to ``q_i``;
  ``L = mean_i |p_i + u(p_i) - q_i|^2`` in mm^2 (``u`` interpolated linearly at ``p_i``), so
  ``landmark_weight`` is per mm^2 (1.0: a 1 mm miss weighs as much as a similarity loss of 1).

Flows are ``[*S, N]`` in working-grid voxels, component ``i`` along array axis ``i`` (as the network's).
Each step is one compiled graph call; progress and cancel are checked between steps. Figures: docs/performance.md.
"""

import dataclasses
import itertools
import typing

import numpy as np
import tensorflow as tf

from DIRVNetLib.ops import (
    binomial_downsample,
    bspline_adjoint,
    bspline_interpolate,
    control_grid_shape,
    image_gradient,
    warp,
)

SIMILARITIES = ("auto", "mse", "ncc")
_LINEAR_ENOUGH = 0.9  # "auto": MSE when the global NCC after the starting flow is at least this, else local NCC
_BETA1, _BETA2, _EPSILON = 0.9, 0.999, 1e-8  # Adam's defaults
_NCC_EPSILON = 1e-4  # added to the product of the local variances (normalised intensities squared)


@dataclasses.dataclass(frozen=True)
class RefinementSettings:
    """steps: most Adam steps (0: no refinement); similarity: ``"mse"``, ``"ncc"`` or ``"auto"`` (MSE when the
    intensities of the pair are close to linearly related after the starting flow, i.e. the same contrast:
    global NCC >= 0.9; local NCC otherwise); window: box of the
    local NCC (voxels, odd); smoothness: weight of the diffusion energy; learning_rate: Adam's step
    (voxels); control_spacing: voxels between control points of the correction; patience and tolerance:
    stop when the energy has not fallen by ``tolerance`` (relative) for ``patience`` steps;
    landmark_weight: per mm^2 (module docstring); shrink: 1 (the working grid) or 2 (every second voxel
    of it, the images smoothed first: about 4x (2D) or 8x (3D) fewer voxels per step; the correction is
    interpolated back linearly). Energies are reported on the grid refined."""

    steps: int = 50
    similarity: str = "auto"
    window: int = 5
    smoothness: float = 0.03
    learning_rate: float = 0.2
    control_spacing: int = 2
    patience: int = 10
    tolerance: float = 1e-4
    landmark_weight: float = 1.0
    shrink: int = 1

    def __post_init__(self):
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 0:
            raise ValueError(f"refine_steps must be an integer >= 0, got {self.steps!r}")
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"refinement similarity must be one of {SIMILARITIES}, got {self.similarity!r}")
        if not (isinstance(self.window, int) and self.window >= 1 and self.window % 2 == 1):
            raise ValueError(f"refinement window must be an odd number of voxels >= 1, got {self.window!r}")
        if not (isinstance(self.control_spacing, int) and self.control_spacing >= 1):
            raise ValueError(f"refinement control_spacing must be an integer >= 1 voxel, got {self.control_spacing!r}")
        for name in ("smoothness", "landmark_weight", "tolerance"):
            if not float(getattr(self, name)) >= 0:
                raise ValueError(f"refinement {name} must be >= 0, got {getattr(self, name)!r}")
        if self.shrink not in (1, 2):
            raise ValueError(f"refinement shrink must be 1 or 2, got {self.shrink!r}")
        if not float(self.learning_rate) > 0:
            raise ValueError(f"refinement learning_rate must be > 0, got {self.learning_rate!r}")


@dataclasses.dataclass
class Landmarks:
    """Point pairs on a working grid: ``points`` ``[K, N]`` (fixed points, continuous array-order voxel
    indices), ``targets`` ``[K, N]`` (the displacement, voxels, that carries each to its moving point)
    and ``metric`` ``[N, N]`` (squared length in mm^2 of a voxel displacement ``d`` is ``d^T metric d``)."""

    points: np.ndarray
    targets: np.ndarray
    metric: np.ndarray

    @classmethod
    def on_grid(cls, reference, fixed_points, moving_points):
        """Landmarks from pairs in physical LPS mm (``[K, N]`` each) on ``reference``'s grid (a SimpleITK
        image: origin, spacing, direction). Raises ValueError for unpaired points or fixed points outside it."""
        ndim = reference.GetDimension()
        fixed_points = np.asarray(fixed_points, np.float64).reshape(-1, ndim)
        moving_points = np.asarray(moving_points, np.float64).reshape(-1, ndim)
        if len(fixed_points) != len(moving_points):
            raise ValueError(f"landmarks: {len(fixed_points)} fixed points but {len(moving_points)} moving points")
        if not (np.isfinite(fixed_points).all() and np.isfinite(moving_points).all()):
            raise ValueError("landmarks: every coordinate must be a finite number (mm)")

        def index(point):  # continuous index in array order
            return reference.TransformPhysicalPointToContinuousIndex([float(v) for v in point])[::-1]

        points = np.array([index(p) for p in fixed_points]).reshape(-1, ndim)
        targets = np.array([index(q) for q in moving_points]).reshape(-1, ndim) - points
        size = np.array(reference.GetSize()[::-1])
        outside = [i for i, p in enumerate(points) if np.any(p < -0.5) or np.any(p > size - 0.5)]
        if outside:
            raise ValueError(
                f"landmarks: fixed point {outside[0] + 1} ({', '.join(f'{v:.1f}' for v in fixed_points[outside[0]])}"
                " mm LPS) lies outside the fixed image"
            )
        direction = np.array(reference.GetDirection()).reshape(ndim, ndim)
        to_physical = (direction @ np.diag(reference.GetSpacing()))[:, ::-1]  # array-order voxel -> LPS mm
        return cls(
            points.astype(np.float32), targets.astype(np.float32), (to_physical.T @ to_physical).astype(np.float32)
        )

    @classmethod
    def none(cls, ndim):
        return cls(np.zeros((0, ndim), np.float32), np.zeros((0, ndim), np.float32), np.eye(ndim, dtype=np.float32))

    def distances_mm(self, flow):
        """``|p_i + u(p_i) - q_i|`` in mm for a flow ``[*S, N]`` (voxels)."""
        residual = sample(tf.constant(flow), tf.constant(self.points)).numpy() - self.targets
        return np.sqrt(np.einsum("ki,ij,kj->k", residual, self.metric, residual))


def sample(field, points):
    """Multi-linear interpolation of ``field`` ``[*S, C]`` at ``points`` ``[K, N]`` (continuous array-order
    indices, clamped to the grid). Returns ``[K, C]``."""
    ndim = points.shape[-1]
    spatial = tf.shape(field)[:ndim]
    top = tf.cast(spatial - 1, points.dtype)
    clamped = tf.clip_by_value(points, tf.zeros_like(top), top)
    lower = tf.floor(clamped)
    weight_upper = clamped - lower
    lower = tf.cast(lower, tf.int32)
    upper = tf.minimum(lower + 1, spatial - 1)
    out = 0.0
    for corner in itertools.product((0, 1), repeat=ndim):
        bits = tf.constant(corner, tf.int32)
        index = lower * (1 - bits) + upper * bits
        weight = tf.reduce_prod(tf.where(tf.cast(bits, tf.bool), weight_upper, 1.0 - weight_upper), axis=-1)
        out = out + tf.gather_nd(field, index) * weight[:, tf.newaxis]
    return out


def _box_mean(x, window):
    """Mean of ``x`` ``[1, *S, C]`` over ``window``-voxel boxes, mirrored at the borders."""
    ndim = x.shape.rank - 2
    half = window // 2
    padded = tf.pad(x, [[0, 0]] + [[half, half]] * ndim + [[0, 0]], mode="SYMMETRIC")
    pool = tf.nn.avg_pool2d if ndim == 2 else tf.nn.avg_pool3d
    return pool(padded, window, 1, "VALID")


def local_ncc_loss(fixed, warped, window):
    """1 - mean local squared NCC of two ``[1, *S, 1]`` images over ``window``-voxel boxes."""
    mean_f, mean_w = _box_mean(fixed, window), _box_mean(warped, window)
    covariance = _box_mean(fixed * warped, window) - mean_f * mean_w
    variance_f = _box_mean(fixed * fixed, window) - mean_f * mean_f
    variance_w = _box_mean(warped * warped, window) - mean_w * mean_w
    squared_ncc = covariance * covariance / (variance_f * variance_w + _NCC_EPSILON)
    return 1.0 - tf.reduce_mean(squared_ncc)


def _forward_differences(flow, axis):
    before = (slice(None),) * axis
    return flow[before + (slice(1, None),)] - flow[before + (slice(None, -1),)]


def diffusion(flow):
    """Mean squared forward difference of ``flow`` ``[1, *S, N]`` over voxels, axes and components."""
    ndim = flow.shape[-1]
    return sum(tf.reduce_mean(tf.square(_forward_differences(flow, axis))) for axis in range(1, ndim + 1)) / ndim


def diffusion_gradient(flow):
    """Gradient of :func:`diffusion` with respect to ``flow`` (closed form: no tape)."""
    ndim = flow.shape[-1]
    total = 0.0
    for axis in range(1, ndim + 1):
        difference = _forward_differences(flow, axis)
        before, after = [[0, 0]] * (ndim + 2), [[0, 0]] * (ndim + 2)
        before[axis], after[axis] = [1, 0], [0, 1]
        scale = 2.0 / (ndim * tf.cast(tf.size(difference), flow.dtype))
        total += scale * (tf.pad(difference, before) - tf.pad(difference, after))
    return total


def _landmark_term(flow, points, targets, metric):
    """``L`` (module docstring) of a flow ``[1, *S, N]``, mm^2."""
    residual = sample(flow[0], points) - targets
    squared_mm = tf.reduce_sum(tf.matmul(residual, metric) * residual, axis=-1)
    return tf.reduce_sum(squared_mm) / tf.maximum(tf.cast(tf.shape(points)[0], tf.float32), 1.0)


def _data_term(flow, fixed, moving, moving_gradient, similarity, window):
    """``(similarity term, its gradient with respect to the flow)``. MSE: in closed form,
    ``2 / V (warped - fixed) grad(moving)(x + flow)`` (the moving image's central-difference gradient warped
    with it: one gather, no scatter); local NCC: by automatic differentiation through the warp."""
    if similarity == "mse":
        warped_all = warp(tf.concat([moving, moving_gradient], axis=-1), flow)
        residual = warped_all[..., :1] - fixed
        voxels = tf.cast(tf.size(fixed), tf.float32)
        return tf.reduce_mean(tf.square(residual)), 2.0 / voxels * residual * warped_all[..., 1:]
    with tf.GradientTape() as tape:
        tape.watch(flow)
        data = local_ncc_loss(fixed, warp(moving, flow), window)
    return data, tape.gradient(data, flow)


class _Problem(typing.NamedTuple):
    """The tensors of one refinement: the starting flow ``[1, *S, N]``, the images ``[1, *S, 1]`` and the
    moving image's gradient ``[1, *S, N]``, the landmarks (:class:`Landmarks`' fields) and the weights."""

    initial: tf.Tensor
    fixed: tf.Tensor
    moving: tf.Tensor
    moving_gradient: tf.Tensor
    points: tf.Tensor
    targets: tf.Tensor
    metric: tf.Tensor
    smoothness: tf.Tensor
    landmark_weight: tf.Tensor


def _energy_and_gradient(control, problem, similarity, window, spacing, with_landmarks):
    p = problem
    flow = p.initial + bspline_interpolate(control, spacing, p.initial.shape[1:-1])
    data, gradient = _data_term(flow, p.fixed, p.moving, p.moving_gradient, similarity, window)
    energy = data + p.smoothness * diffusion(flow)
    gradient += p.smoothness * diffusion_gradient(flow)
    if with_landmarks:
        with tf.GradientTape() as tape:
            tape.watch(flow)
            landmarks = p.landmark_weight * _landmark_term(flow, p.points, p.targets, p.metric)
        energy += landmarks
        gradient += tape.gradient(landmarks, flow)
    return energy, data, bspline_adjoint(gradient, spacing, control.shape[1:-1]), flow


@tf.function(autograph=False)  # a graph, not XLA: faster here (benchmarks/results/refinement-notes.md)
def _adam_step(control, first, second, step, learning_rate, problem, **static):
    """One Adam step on ``control``; returns the new state and the energy and similarity term before it."""
    energy, data, gradient, _ = _energy_and_gradient(control, problem, **static)
    first = _BETA1 * first + (1.0 - _BETA1) * gradient
    second = _BETA2 * second + (1.0 - _BETA2) * tf.square(gradient)
    corrected = first / (1.0 - _BETA1**step) / (tf.sqrt(second / (1.0 - _BETA2**step)) + _EPSILON)
    return control - learning_rate * corrected, first, second, energy, data


@tf.function(autograph=False)
def _final_flow(control, problem, **static):
    energy, data, _, flow = _energy_and_gradient(control, problem, **static)
    return flow, energy, data


def _matched_intensities(fixed, moving, flow):
    """``(a moving + b, NCC)`` with ``a``, ``b`` the least-squares fit of the fixed intensities by the moving
    image warped with ``flow`` and NCC their global correlation (each image is normalised on its own, so a
    deformation that moves tissue in or out of the view changes the scales; MSE would otherwise deform to
    make up for it)."""
    warped = tf.reshape(warp(moving, flow), [-1])
    target = tf.reshape(fixed, [-1])
    mean_w, mean_f = tf.reduce_mean(warped), tf.reduce_mean(target)
    variance = tf.reduce_mean(tf.square(warped - mean_w))
    covariance = tf.reduce_mean((warped - mean_w) * (target - mean_f))
    slope = covariance / tf.maximum(variance, 1e-12)
    ncc = covariance / tf.maximum(tf.sqrt(variance * tf.reduce_mean(tf.square(target - mean_f))), 1e-12)
    return slope * moving + (mean_f - slope * mean_w), float(ncc)


def refine_flow(fixed, moving, initial, settings, landmarks=None, on_step=None):
    """Refine ``initial`` (``[*S, N]``, voxels) on the pair ``fixed``, ``moving`` (normalised ``[*S]``
    float32 arrays on the same grid) with ``settings`` (:class:`RefinementSettings`); ``landmarks``: a
    :class:`Landmarks` or None. ``on_step(step, energy)`` is called after every step (it may raise to
    cancel). Deterministic. Returns ``(flow [*S, N] float32, info)``; info: steps run, energy and
    similarity term before and after (the energy per step in ``energies``)."""
    ndim = fixed.ndim
    landmarks = landmarks or Landmarks.none(ndim)
    fixed_t = tf.constant(np.asarray(fixed, np.float32)[np.newaxis, ..., np.newaxis])
    moving_t = tf.constant(np.asarray(moving, np.float32)[np.newaxis, ..., np.newaxis])
    initial_t = tf.constant(np.asarray(initial, np.float32)[np.newaxis])
    similarity = settings.similarity
    if similarity != "ncc":
        matched, ncc = _matched_intensities(fixed_t, moving_t, initial_t)
        similarity = "mse" if similarity == "mse" or ncc >= _LINEAR_ENOUGH else "ncc"
        moving_t = matched if similarity == "mse" else moving_t
    full_initial, points, targets, metric = initial_t, landmarks.points, landmarks.targets, landmarks.metric
    if settings.shrink == 2:  # every second voxel of the working grid: voxel vectors halve, mm^2 per voxel^2 x4
        fixed_t, moving_t = binomial_downsample(fixed_t), binomial_downsample(moving_t)
        initial_t = initial_t[(slice(None),) + (slice(None, None, 2),) * ndim] / 2.0
        points, targets, metric = points / 2.0, targets / 2.0, metric * 4.0
    spacing = settings.control_spacing
    control = tf.zeros([1, *control_grid_shape(initial_t.shape[1:-1], spacing), ndim])
    first, second = tf.zeros_like(control), tf.zeros_like(control)
    problem = _Problem(
        initial_t,
        fixed_t,
        moving_t,
        image_gradient(moving_t, "central"),
        tf.constant(points),
        tf.constant(targets),
        tf.constant(metric),
        tf.constant(float(settings.smoothness)),
        tf.constant(float(settings.landmark_weight)),
    )
    static = {
        "similarity": similarity,
        "window": settings.window,
        "spacing": spacing,
        "with_landmarks": len(points) > 0,
    }
    learning_rate = tf.constant(float(settings.learning_rate))
    energies, data_terms = [], []
    best, since_best = np.inf, 0
    for step in range(1, settings.steps + 1):
        control, first, second, energy, data = _adam_step(
            control, first, second, tf.constant(float(step)), learning_rate, problem, **static
        )
        energies.append(float(energy))
        data_terms.append(float(data))
        if on_step is not None:
            on_step(step, energies[-1])
        if energies[-1] < best * (1.0 - settings.tolerance) if best > 0 else energies[-1] < best:
            best, since_best = energies[-1], 0
        else:
            since_best += 1
            if since_best >= settings.patience:
                break
    flow, energy, data = _final_flow(control, problem, **static)
    if settings.shrink == 2:
        flow = full_initial + 2.0 * bspline_interpolate(flow - initial_t, 2, full_initial.shape[1:-1])
    info = {
        "steps": len(energies),
        "energy_before": energies[0] if energies else float(energy),
        "energy_after": float(energy),
        "similarity_before": data_terms[0] if data_terms else float(data),
        "similarity_after": float(data),
        "similarity": similarity,
        "energies": energies,
    }
    return flow[0].numpy(), info

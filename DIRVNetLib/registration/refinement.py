"""Test-time refinement (instance optimisation) of a flow on one image pair.

Starting from a flow (e.g. the network's), steps of an optimiser (Adam, or L-BFGS with a backtracking
line search) on a correction ``c`` held on a control grid (multi-linear B-spline, one control point every
``control_spacing`` voxels), so that the flow is ``initial + B(c)``, minimise

    E = D(fixed, moving o (x + flow)) + smoothness * R(B(c)) + landmark_weight * L(flow)

- ``D``: ``"mse"``: mean squared intensity difference, after a linear map of the moving intensities
  fitted once on the starting flow; ``"ncc"``: 1 - mean local squared NCC over ``window``-voxel boxes.
  Images are normalised intensities (about [0, 1]).
- ``R``: diffusion energy of the correction ``B(c)`` (not of the whole flow: the starting flow is not
  pulled towards a smoother one), the mean over voxels and axes of its squared forward differences
  (voxels per voxel).
- ``L``: the landmark term. Point pairs ``(p_i, q_i)`` are given in physical LPS mm (SimpleITK point
  order x, y[, z]): ``p_i`` on the fixed image, ``q_i`` the corresponding point of the moving image.
  With the pull convention ``warped(p) = moving(p + u(p))`` the field should carry ``p_i`` to ``q_i``;
  ``L = mean_i |p_i + u(p_i) - q_i|^2`` in mm^2 (``u`` interpolated linearly at ``p_i``), so
  ``landmark_weight`` is per mm^2 (1.0: a 1 mm miss weighs as much as a similarity loss of 1).

Flows are ``[*S, N]`` in working-grid voxels, component ``i`` along array axis ``i`` (as the network's).
Adam runs several steps per graph call (one on large grids), L-BFGS one evaluation per call; progress and
cancel are checked between calls. Figures: docs/performance.md.
"""

import dataclasses
import functools
import itertools
import typing

import numpy as np
import tensorflow as tf

from DIRVNetLib.ops import (
    bspline_adjoint,
    bspline_interpolate,
    bspline_matrix,
    compiled_warp,
    control_grid_shape,
    image_gradient,
    warp,
)

SIMILARITIES = ("auto", "mse", "ncc")
OPTIMIZERS = ("adam", "lbfgs")
_LINEAR_ENOUGH = 0.9  # "auto": MSE when the global NCC after the starting flow is at least this, else local NCC
_BETA1, _BETA2, _EPSILON = 0.9, 0.999, 1e-8  # Adam's defaults
_NCC_EPSILON = 1e-4  # added to the product of the local variances (normalised intensities squared)
_LBFGS_MEMORY = 5  # curvature pairs L-BFGS keeps
_ARMIJO = 1e-4  # sufficient decrease of L-BFGS's line search: E(c + t d) <= E(c) + _ARMIJO t grad(E) . d


@dataclasses.dataclass(frozen=True)
class RefinementSettings:
    """steps: most steps (0: no refinement; L-BFGS: evaluations of the energy and its gradient, line-search
    trials included); optimizer: ``"adam"`` (every control point moves about ``learning_rate`` voxels per
    step: steady on large residual displacements) or ``"lbfgs"`` (curvature from the last steps: fewer
    steps where the start is close); similarity: ``"mse"``, ``"ncc"`` or ``"auto"`` (MSE when the
    intensities of the pair are close to linearly related after the starting flow, i.e. the same contrast:
    global NCC >= 0.9; local NCC otherwise); window: box of the local NCC (voxels, odd); smoothness: weight
    of the diffusion energy; learning_rate: Adam's step (voxels), or how far L-BFGS's first step moves the
    control point of the largest gradient; control_spacing: voxels between control points of the
    correction; patience and tolerance: stop when the energy has not fallen by ``tolerance`` (relative) for
    ``patience`` steps; landmark_weight: per mm^2 (module docstring)."""

    steps: int = 50
    optimizer: str = "adam"
    similarity: str = "auto"
    window: int = 5
    smoothness: float = 0.03
    learning_rate: float = 0.2
    control_spacing: int = 2
    patience: int = 10
    tolerance: float = 1e-4
    landmark_weight: float = 1.0

    def __post_init__(self):
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 0:
            raise ValueError(f"refine_steps must be an integer >= 0, got {self.steps!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"refinement optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"refinement similarity must be one of {SIMILARITIES}, got {self.similarity!r}")
        if not (isinstance(self.window, int) and self.window >= 1 and self.window % 2 == 1):
            raise ValueError(f"refinement window must be an odd number of voxels >= 1, got {self.window!r}")
        if not (isinstance(self.control_spacing, int) and self.control_spacing >= 1):
            raise ValueError(f"refinement control_spacing must be an integer >= 1 voxel, got {self.control_spacing!r}")
        for name in ("smoothness", "landmark_weight", "tolerance"):
            if not float(getattr(self, name)) >= 0:
                raise ValueError(f"refinement {name} must be >= 0, got {getattr(self, name)!r}")
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


def _landmark_term(flow, points, targets, metric):
    """``L`` (module docstring) of a flow ``[1, *S, N]``, mm^2."""
    residual = sample(flow[0], points) - targets
    squared_mm = tf.reduce_sum(tf.matmul(residual, metric) * residual, axis=-1)
    return tf.reduce_sum(squared_mm) / tf.maximum(tf.cast(tf.shape(points)[0], tf.float32), 1.0)


@tf.function(jit_compile=True, autograph=False)
def _dense_flow(initial, control, spacing):
    """``initial + B(control)`` ``[1, *S, N]``."""
    return initial + bspline_interpolate(control, spacing, initial.shape[1:-1])


@tf.function(jit_compile=True, autograph=False)
def _flow_and_warped(initial, control, moving_channels, spacing):
    """The flow ``initial + B(control)`` and ``moving_channels`` warped by it."""
    flow = initial + bspline_interpolate(control, spacing, initial.shape[1:-1])
    return flow, warp(moving_channels, flow)


@functools.cache
def _diffusion_factors(spatial_shape, spacing):
    """The factors of ``R(B(c))`` (module docstring) as a quadratic form in ``c``: per axis ``a`` of the dense
    grid, ``B_a^T B_a`` and ``2 w_a (D B_a)^T (D B_a)`` (float32 numpy, control points x control points),
    with ``B_a`` the B-spline interpolation along ``a`` (:func:`~DIRVNetLib.ops.bspline.bspline_matrix`),
    ``D`` the forward difference and ``w_a`` = 1 / (dimensions x forward differences along ``a``, components
    included): the gradient of ``R`` with respect to ``c`` is the sum over ``a`` of ``c`` multiplied along
    every axis ``b`` by ``b``'s first factor, along ``a`` by its second (:func:`_smoothness_terms`)."""
    ndim, voxels = len(spatial_shape), int(np.prod(spatial_shape))
    grams, stiffnesses = [], []
    for n in spatial_shape:
        interpolation = bspline_matrix(n, spacing)
        differences = np.diff(interpolation, axis=0)
        count = (n - 1) * (voxels // n) * ndim
        grams.append((interpolation.T @ interpolation).astype(np.float32))
        stiffnesses.append((2.0 / (ndim * max(count, 1)) * differences.T @ differences).astype(np.float32))
    return tuple(grams), tuple(stiffnesses)


def _along_axes(x, matrices):
    """``x`` ``[1, *K, N]`` multiplied along each spatial axis by that axis's symmetric matrix."""
    letters = "abcdefg"[: x.shape.rank]
    for axis, matrix in enumerate(matrices, start=1):
        x = tf.einsum(f"{letters},{letters[axis]}z->{letters.replace(letters[axis], 'z')}", x, matrix)
    return x


@tf.function(jit_compile=True, autograph=False)
def _smoothness_terms(control, grams, stiffnesses):
    """``(R(B(control)), its gradient with respect to control)`` on the control grid (:func:`_diffusion_factors`:
    the same values as on the dense correction, for a fraction of the work), the energy as
    ``<c, gradient> / 2`` (``R`` is a quadratic form)."""
    gradient = 0.0
    for axis, stiffness in enumerate(stiffnesses):
        gradient += _along_axes(control, grams[:axis] + (stiffness,) + grams[axis + 1 :])
    return 0.5 * tf.reduce_sum(control * gradient), gradient


@tf.function(jit_compile=True, autograph=False)
def _control_gradient(data_gradient, smoothness_gradient, smoothness, spacing):
    """The energy's gradient with respect to the control grid from the similarity term's with respect to the
    flow and the smoothness term's with respect to the control grid."""
    return bspline_adjoint(data_gradient, spacing, smoothness_gradient.shape[1:-1]) + smoothness * smoothness_gradient


def _regularised(control, data, data_gradient, problem, spacing):
    """``(energy, control gradient)`` of ``data + smoothness * R(B(control))``, given the similarity term
    ``data`` and its gradient with respect to the flow."""
    smoothness_energy, smoothness_gradient = _smoothness_terms(control, problem.grams, problem.stiffnesses)
    gradient = _control_gradient(data_gradient, smoothness_gradient, problem.smoothness, spacing)
    return data + problem.smoothness * smoothness_energy, gradient


@tf.function(jit_compile=True, autograph=False)
def _mse_terms(warped_channels, fixed):
    """The MSE and its gradient with respect to the flow, from the warped moving image (channel 0 of
    ``warped_channels``) and the moving image's gradient warped with it (channels 1..N): the gradient is
    ``2 / V (warped - fixed) grad(moving)(x + flow)``, no scatter."""
    residual = warped_channels[..., :1] - fixed
    data = tf.reduce_mean(tf.square(residual))
    return data, 2.0 / tf.cast(tf.size(fixed), tf.float32) * residual * warped_channels[..., 1:]


class _Problem(typing.NamedTuple):
    """The tensors of one refinement: the starting flow ``[1, *S, N]``, the fixed image ``[1, *S, 1]``, the
    moving image (channel 0) with its central-difference gradient (channels 1..N) ``[1, *S, 1 + N]``, the
    landmarks (:class:`Landmarks`' fields), the weights and the smoothness term's factors
    (:func:`_diffusion_factors`)."""

    initial: tf.Tensor
    fixed: tf.Tensor
    moving_channels: tf.Tensor
    points: tf.Tensor
    targets: tf.Tensor
    metric: tf.Tensor
    smoothness: tf.Tensor
    landmark_weight: tf.Tensor
    grams: tuple[tf.Tensor, ...]
    stiffnesses: tuple[tf.Tensor, ...]


def _energy_and_gradient(control, problem, similarity, window, spacing, with_landmarks):
    """``(energy, similarity term, gradient with respect to control, flow)``. Several XLA clusters (flow and
    warp; the similarity term; the smoothness term; the control gradient), not one: in one, XLA recomputes
    the warp's gathers for every consumer. MSE: its gradient in closed form; local NCC: by automatic
    differentiation through the warp."""
    p = problem
    control_shape = control.shape[1:-1]
    if similarity == "mse":
        flow, warped = _flow_and_warped(p.initial, control, p.moving_channels, spacing)
        data, data_gradient = _mse_terms(warped, p.fixed)
    else:
        flow = _dense_flow(p.initial, control, spacing)
        with tf.GradientTape() as tape:
            tape.watch(flow)
            data = local_ncc_loss(p.fixed, warp(p.moving_channels[..., :1], flow), window)
        data_gradient = tape.gradient(data, flow)
    energy, gradient = _regularised(control, data, data_gradient, p, spacing)
    if with_landmarks:
        with tf.GradientTape() as tape:
            tape.watch(flow)
            landmarks = p.landmark_weight * _landmark_term(flow, p.points, p.targets, p.metric)
        energy += landmarks
        gradient += bspline_adjoint(tape.gradient(landmarks, flow), spacing, control_shape)
    return energy, data, gradient, flow


@tf.function(jit_compile=True, autograph=False)
def _adam_update(control, first, second, gradient, step, learning_rate):
    first = _BETA1 * first + (1.0 - _BETA1) * gradient
    second = _BETA2 * second + (1.0 - _BETA2) * tf.square(gradient)
    corrected = first / (1.0 - _BETA1**step) / (tf.sqrt(second / (1.0 - _BETA2**step)) + _EPSILON)
    return control - learning_rate * corrected, first, second


class _Steps(typing.NamedTuple):
    """The graph functions of one refinement configuration (:func:`_steps`)."""

    adam_steps: typing.Callable
    evaluate: typing.Callable
    final_flow: typing.Callable


def _improves(energy, best, tolerance):
    """The stopping rule's test (energies are >= 0): ``energy`` is below ``best`` by more than ``tolerance``
    (relative). Python floats or float64 tensors, so that the graph and :class:`_Trace` decide alike."""
    return energy < best * (1.0 - tolerance)


@functools.cache
def _steps(similarity, window, spacing, with_landmarks):
    """The step functions for one configuration, the configuration closed over so that a call passes
    tensors only (Python arguments cost TensorFlow a cache lookup per call, a large part of a 2D step).
    Each is a graph of XLA clusters, traced once per input shape."""

    def energy_and_gradient(control, problem):
        return _energy_and_gradient(control, problem, similarity, window, spacing, with_landmarks)

    def adam_steps(moments, done, best, since_best, count, learning_rate, tolerance, patience, problem):
        """Up to ``count`` Adam steps from ``moments`` (``(control, first, second)``) after ``done`` steps, in
        one graph loop (a Python loop costs as much again as a 2D step), stopping early by the stopping rule
        from its state ``best`` (float64) and ``since_best`` (:class:`_Trace`'s). Returns the new moments and
        the energy and similarity term before each step run."""

        def body(i, moments, best, since_best, energies, data_terms):
            control, first, second = moments
            energy, data, gradient, _ = energy_and_gradient(control, problem)
            step = tf.cast(done + i + 1, tf.float32)
            moments = _adam_update(control, first, second, gradient, step, learning_rate)
            improved = _improves(tf.cast(energy, tf.float64), best, tolerance)
            best = tf.where(improved, tf.cast(energy, tf.float64), best)
            since_best = tf.where(improved, 0, since_best + 1)
            return i + 1, moments, best, since_best, energies.write(i, energy), data_terms.write(i, data)

        def more(i, moments, best, since_best, energies, data_terms):  # the first step always runs: the
            return (i < count) & ((i == 0) | (since_best < patience))  # caller decided on it

        empty = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
        loop = (tf.constant(0), moments, best, since_best, empty, empty)
        _, moments, _, _, energies, data_terms = tf.while_loop(more, body, loop)
        return moments, energies.stack(), data_terms.stack()

    def evaluate(control, problem):
        """The energy, the similarity term and the energy's gradient with respect to ``control``."""
        return energy_and_gradient(control, problem)[:3]

    def final_flow(control, problem):
        energy, data, _, flow = energy_and_gradient(control, problem)
        return flow, energy, data

    return _Steps(*(tf.function(f, autograph=False) for f in (adam_steps, evaluate, final_flow)))


class _Trace:
    """The energies and similarity terms of the steps so far, ``on_step`` and the stopping rule."""

    def __init__(self, settings, on_step):
        self.settings, self.on_step = settings, on_step
        self.energies, self.data_terms = [], []
        self.best, self.since_best = np.inf, 0

    def record(self, energy, data):
        """Record one step; True when the refinement should stop (the step budget or the stopping rule)."""
        self.energies.append(float(energy))
        self.data_terms.append(float(data))
        if self.on_step is not None:
            self.on_step(len(self.energies), self.energies[-1])
        if _improves(self.energies[-1], self.best, self.settings.tolerance):
            self.best, self.since_best = self.energies[-1], 0
        else:
            self.since_best += 1
        return len(self.energies) >= self.settings.steps or self.since_best >= self.settings.patience


_ADAM_CHUNK_VOXELS = 1 << 19  # Adam steps per graph call: about this many voxels' worth (progress and cancel
_ADAM_CHUNK_STEPS = 10  # are checked between calls), at most this many


def _adam(control, problem, steps, settings, trace):
    """Adam from ``control``; returns the last control grid."""
    chunk = max(1, min(_ADAM_CHUNK_STEPS, _ADAM_CHUNK_VOXELS // int(np.prod(problem.fixed.shape))))
    moments = (control, tf.zeros_like(control), tf.zeros_like(control))
    rule = (
        tf.constant(float(settings.learning_rate)),
        tf.constant(float(settings.tolerance), tf.float64),
        tf.constant(settings.patience),
    )
    stop = settings.steps == 0
    while not stop:
        done = len(trace.energies)
        state = (tf.constant(done), tf.constant(trace.best, tf.float64), tf.constant(trace.since_best))
        count = tf.constant(min(chunk, settings.steps - done))
        moments, energies, data_terms = steps.adam_steps(moments, *state, count, *rule, problem)
        for energy, data in zip(energies.numpy(), data_terms.numpy()):
            stop = trace.record(energy, data)
    return moments[0]


def _dot(a, b):
    return tf.reduce_sum(a * b)


def _lbfgs_direction(gradient, pairs, first_step):
    """The L-BFGS descent direction (two-loop recursion over ``pairs`` of (step, gradient change)); without
    pairs, steepest descent scaled so that its largest component is ``first_step``."""
    return _direction_graph(len(pairs))(gradient, tuple(pairs), first_step)


@functools.cache
def _direction_graph(count):
    """:func:`_direction` as one graph for ``count`` pairs (the recursion's many small operations cost more
    called one by one); one function per count, each traced once per shape (a single function would be
    retraced whenever the count changes). Each wraps its own ``functools.partial``: TensorFlow counts
    tracings per function code object, so functions of :func:`_direction` itself would share one count and
    set off its retracing warning."""
    return tf.function(functools.partial(_direction), autograph=False)


def _direction(gradient, pairs, first_step):
    if not pairs:
        return -gradient * (first_step / tf.maximum(tf.reduce_max(tf.abs(gradient)), 1e-30))
    q, coefficients = gradient, []
    for s, y in reversed(pairs):
        rho = 1.0 / _dot(y, s)
        alpha = rho * _dot(s, q)
        coefficients.append((rho, alpha))
        q = q - alpha * y
    s, y = pairs[-1]
    r = q * (_dot(s, y) / _dot(y, y))
    for (s, y), (rho, alpha) in zip(pairs, reversed(coefficients)):
        r = r + s * (alpha - rho * _dot(y, r))
    return -r


def _lbfgs(control, problem, steps, settings, trace):
    """L-BFGS from ``control`` with a backtracking (Armijo) line search; returns the last accepted control
    grid and its energy and similarity term."""
    energy, data, gradient = steps.evaluate(control, problem)
    stop = trace.record(energy, data)
    energy, data = float(energy), float(data)
    pairs = []
    first_step = tf.constant(float(settings.learning_rate))
    while not stop:
        direction = _lbfgs_direction(gradient, pairs, first_step)
        slope = float(_dot(gradient, direction))
        if not slope < 0:  # the curvature pairs point uphill: start again from steepest descent
            pairs = []
            direction = _lbfgs_direction(gradient, (), first_step)
            slope = float(_dot(gradient, direction))
        t = 1.0
        while not stop:
            trial = control + t * direction
            trial_energy, trial_data, trial_gradient = steps.evaluate(trial, problem)
            stop = trace.record(trial_energy, trial_data)
            if float(trial_energy) <= energy + _ARMIJO * t * slope:
                step, change = trial - control, trial_gradient - gradient
                if float(_dot(step, change)) > 0:
                    pairs = (pairs + [(step, change)])[-_LBFGS_MEMORY:]
                control, gradient = trial, trial_gradient
                energy, data = float(trial_energy), float(trial_data)
                break
            t *= 0.5
    return control, energy, data


def _matched_intensities(fixed, moving, flow):
    """``(a moving + b, NCC)`` with ``a``, ``b`` the least-squares fit of the fixed intensities by the moving
    image warped with ``flow`` and NCC their global correlation (each image is normalised on its own, so a
    deformation that moves tissue in or out of the view changes the scales; MSE would otherwise deform to
    make up for it)."""
    warped = tf.reshape(compiled_warp(moving, flow), [-1])
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
    spacing = settings.control_spacing
    control = tf.zeros([1, *control_grid_shape(initial_t.shape[1:-1], spacing), ndim])
    problem = _Problem(
        initial_t,
        fixed_t,
        tf.concat([moving_t, image_gradient(moving_t, "central")], axis=-1),
        tf.constant(landmarks.points),
        tf.constant(landmarks.targets),
        tf.constant(landmarks.metric),
        tf.constant(float(settings.smoothness)),
        tf.constant(float(settings.landmark_weight)),
        *(tuple(map(tf.constant, factors)) for factors in _diffusion_factors(fixed.shape, spacing)),
    )
    steps = _steps(similarity, settings.window, spacing, len(landmarks.points) > 0)
    trace = _Trace(settings, on_step)
    if settings.optimizer == "lbfgs" and settings.steps:
        control, energy, data = _lbfgs(control, problem, steps, settings, trace)
        flow = _dense_flow(initial_t, control, spacing)
    else:
        control = _adam(control, problem, steps, settings, trace)
        flow, energy, data = steps.final_flow(control, problem)
    energies = trace.energies
    info = {
        "steps": len(energies),
        "energy_before": energies[0] if energies else float(energy),
        "energy_after": float(energy),
        "similarity_before": trace.data_terms[0] if energies else float(data),
        "similarity_after": float(data),
        "similarity": similarity,
        "energies": energies,
    }
    return flow[0].numpy(), info

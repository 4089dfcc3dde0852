"""Random displacement fields (numpy, voxels, array component order): smooth, multi-scale and local."""

import dataclasses

import numpy as np
import SimpleITK as sitk


def smooth_random_field(shape, max_magnitude, rng, control_points=5, affine_scale=0.0):
    """A smooth random displacement ``[*shape, N]`` in voxels whose largest vector has length ``max_magnitude``.

    Random normal values on a ``control_points^N`` grid are resampled with cubic B-splines to ``shape``
    (one component per array axis), then scaled. ``affine_scale`` adds a random linear part
    ``A (x - centre)`` with ``|A_ij| <= affine_scale`` before scaling (small rotation, shear, scale).
    """
    ndim = len(shape)
    coarse = sitk.GetImageFromArray(rng.normal(size=(control_points,) * ndim + (ndim,)), isVector=True)
    coarse.SetSpacing([(n - 1) / (control_points - 1) for n in reversed(shape)])
    reference = sitk.Image([int(n) for n in reversed(shape)], sitk.sitkVectorFloat64, ndim)
    dense = sitk.Resample(coarse, reference, sitk.Transform(), sitk.sitkBSpline)
    field = sitk.GetArrayFromImage(dense)
    if affine_scale > 0:
        matrix = rng.uniform(-affine_scale, affine_scale, size=(ndim, ndim))
        grid = np.stack(np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in shape], indexing="ij"), axis=-1)
        linear = grid @ matrix.T
        field = field / np.abs(field).max() + linear / max(np.abs(linear).max(), 1e-6)
    norm = np.sqrt((field**2).sum(axis=-1)).max()
    return (field * (max_magnitude / max(norm, 1e-12))).astype(np.float32)


def deform_image(image, max_mm, seed, control_points=5):
    """``(fixed, true displacement)`` with ``fixed = image o (p + u(p))`` for a smooth random ``u``
    (vector image on ``image``'s grid, LPS mm) whose longest vector is ``max_mm`` mm.

    Registering ``image`` (moving) to ``fixed`` should recover ``u`` (pull convention). Deterministic
    for a given ``seed``.
    """
    from DIRVNetLib.metrics import displacement_transform

    shape = tuple(reversed(image.GetSize()))
    field = smooth_random_field(shape, 1.0, np.random.default_rng(seed), control_points=control_points)
    physical = field[..., ::-1].astype(np.float64)  # drawn per physical axis (x, y, z)
    physical *= max_mm / np.sqrt((physical**2).sum(-1)).max()
    true = sitk.GetImageFromArray(physical, isVector=True)
    true.CopyInformation(image)
    fixed = sitk.Resample(image, image, displacement_transform(true), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return fixed, true


def gradient_norm(field):
    """Largest Frobenius norm of the displacement gradient ``du/dx`` (central differences) of a
    ``[*shape, N]`` field in voxels; under 1, ``x + u(x)`` cannot fold (``det(I + du/dx) > 0``)."""
    jacobian = np.stack([np.stack(np.gradient(field[..., c]), axis=-1) for c in range(field.shape[-1])], axis=-2)
    return float(np.sqrt((jacobian**2).sum(axis=(-2, -1))).max())


def _capped(field, max_gradient):
    """``field`` scaled down (never up) so that :func:`gradient_norm` is at most ``max_gradient``."""
    norm = gradient_norm(field)
    return field * (max_gradient / norm) if norm > max_gradient else field


def multiscale_random_field(shape, max_magnitude, rng, scales=(3, 6, 12), max_gradient=0.7):
    """A sum of smooth random fields ``[*shape, N]`` (voxels) on control grids of ``scales`` points per
    axis across the image: coarse and fine structure together.

    Each component gets a random share of ``max_magnitude`` and at most ``max_gradient / len(scales)``
    of the displacement gradient, so the sum's largest vector is at most ``max_magnitude`` and its
    gradient norm at most ``max_gradient`` (below 1: it never folds)."""
    field = np.zeros((*shape, len(shape)), np.float64)
    for points in scales:
        component = smooth_random_field(shape, rng.uniform(0.2, 1.0) * max_magnitude, rng, control_points=points)
        field += _capped(component.astype(np.float64), max_gradient / len(scales))
    longest = np.sqrt((field**2).sum(axis=-1)).max()
    if longest > max_magnitude:
        field *= max_magnitude / longest
    return field.astype(np.float32)


def local_bump_field(shape, max_magnitude, rng, bumps=(1, 4), radius=(0.1, 0.3), max_gradient=0.7):
    """A few compactly supported bumps ``[*shape, N]`` (voxels) on a static background: zero outside
    the bumps' balls.

    bumps: ``(low, high)`` number of bumps (inclusive); radius: ``(low, high)`` support radius as a
    fraction of the smallest image side. Each bump moves its ball along a random direction with the
    profile ``(1 - r^2 / R^2)^3``; the largest vector is ``max_magnitude``, or less where the gradient
    norm would exceed ``max_gradient`` (below 1: it never folds)."""
    ndim = len(shape)
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"), axis=-1)
    field = np.zeros((*shape, ndim), np.float64)
    for _ in range(int(rng.integers(bumps[0], bumps[1] + 1))):
        centre = rng.uniform(0.0, 1.0, size=ndim) * (np.asarray(shape) - 1)
        support = rng.uniform(radius[0], radius[1]) * min(shape)
        direction = rng.normal(size=ndim)
        direction /= max(np.linalg.norm(direction), 1e-12)
        profile = np.clip(1.0 - ((grid - centre) ** 2).sum(axis=-1) / support**2, 0.0, None) ** 3
        field += rng.uniform(0.3, 1.0) * profile[..., np.newaxis] * direction
    longest = np.sqrt((field**2).sum(axis=-1)).max()
    if longest > 0:
        field *= max_magnitude / longest
    return _capped(field, max_gradient).astype(np.float32)


FAMILIES = ("smooth", "multiscale", "local", "mixed")
"""Deformation families of :class:`DeformationFamily`; "mixed" draws one of the first three per pair."""


def _pair(values, kind, where):
    if not isinstance(values, (list, tuple)) or len(values) != 2 or not values[0] <= values[1]:
        raise ValueError(f"{where} must be a range [low, high] with low <= high, got {values!r}")
    return tuple(kind(v) for v in values)


@dataclasses.dataclass(frozen=True)
class DeformationFamily:
    """Which random fields deform the training pairs (voxels).

    family: one of :data:`FAMILIES`: "smooth" (:func:`smooth_random_field` with the sampler's control
    points and affine part, the default), "multiscale" (:func:`multiscale_random_field` over
    ``scales``), "local" (:func:`local_bump_field` with ``bumps`` and ``bump_radius``) or "mixed" (each
    pair one of the three, with probabilities proportional to ``weights``, in that order).
    static_fraction: share of local pairs that are nearly static (largest vector drawn in
    ``[0, static_magnitude]`` voxels), so that aligned images are left alone. max_gradient: largest
    displacement-gradient norm of multi-scale and local fields (below 1: they never fold).
    """

    family: str = "smooth"
    weights: tuple[float, ...] = (1.0, 1.0, 1.0)
    scales: tuple[int, ...] = (3, 6, 12)
    bumps: tuple[int, ...] = (1, 4)
    bump_radius: tuple[float, ...] = (0.1, 0.3)
    static_fraction: float = 0.2
    static_magnitude: float = 0.5
    max_gradient: float = 0.7

    def __post_init__(self):
        where = "data.deformation"
        if self.family not in FAMILIES:
            raise ValueError(f"{where}.family '{self.family}' is unknown; choose from {', '.join(FAMILIES)}")
        weights = self.weights
        if not isinstance(weights, (list, tuple)) or len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"{where}.weights must be 3 numbers >= 0 (smooth, multiscale, local), got {weights!r}")
        scales = self.scales
        if (
            not isinstance(scales, (list, tuple))
            or not scales
            or not all(isinstance(s, int) and s >= 2 for s in scales)
        ):
            raise ValueError(f"{where}.scales must be a list of control-point counts >= 2, got {scales!r}")
        object.__setattr__(self, "weights", tuple(float(w) for w in weights))
        object.__setattr__(self, "scales", tuple(scales))
        object.__setattr__(self, "bumps", _pair(self.bumps, int, f"{where}.bumps"))
        object.__setattr__(self, "bump_radius", _pair(self.bump_radius, float, f"{where}.bump_radius"))
        if self.bumps[0] < 1 or not 0 < self.bump_radius[0]:
            raise ValueError(f"{where}: bumps must be >= 1 and bump_radius > 0")
        if not 0 <= self.static_fraction <= 1 or self.static_magnitude < 0:
            raise ValueError(f"{where}: static_fraction must be in [0, 1] and static_magnitude >= 0")
        if not 0 < self.max_gradient < 1:
            raise ValueError(f"{where}.max_gradient must be in (0, 1) (1 or more lets fields fold)")

    def draw(self, shape, magnitude, rng, control_points=5, affine_scale=0.0):
        """A field ``[*shape, N]`` of this family whose largest vector is at most ``magnitude`` voxels
        (exactly ``magnitude`` for "smooth", which draws from ``rng`` just as :func:`smooth_random_field`)."""
        family = self.family
        if family == "mixed":
            family = FAMILIES[int(rng.choice(3, p=np.asarray(self.weights) / sum(self.weights)))]
        if family == "smooth":
            return smooth_random_field(shape, magnitude, rng, control_points=control_points, affine_scale=affine_scale)
        if family == "multiscale":
            return multiscale_random_field(shape, magnitude, rng, self.scales, self.max_gradient)
        if rng.uniform() < self.static_fraction:
            magnitude = rng.uniform(0.0, min(magnitude, self.static_magnitude))
        return local_bump_field(shape, magnitude, rng, self.bumps, self.bump_radius, self.max_gradient)

    def to_dict(self):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

"""Validation-only deformation generators: families the bundled weights were never trained on.

Each generator returns a displacement ``[*shape, N]`` in mm (LPS components x, y[, z]) on an image grid,
given the physical coordinates ``points`` ``[*shape, N]`` of its voxels (:func:`coordinates`), whose
longest vector is ``max_mm``. None of them folds:

``local_bumps``: a few compactly supported bumps, the rest of the image static (exactly zero).
``sliding``: two half-spaces sliding past each other along a plane (a line in 2D): piecewise motion
    with a discontinuous tangential component, volume-preserving.
``multi_scale``: a sum of cubic B-spline fields on control grids 64, 32 and 16 mm apart, finer ones weaker.
"""

import numpy as np
import SimpleITK as sitk

GENERATORS = ("smooth", "local_bumps", "sliding", "multi_scale")


def coordinates(image):
    """Physical coordinates in mm ``[*shape, N]`` (LPS components x, y[, z]) of every voxel of ``image``,
    numpy order (origin, spacing and direction honoured)."""
    shape = tuple(reversed(image.GetSize()))
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)[..., ::-1]
    dimension = image.GetDimension()
    to_physical = np.array(image.GetDirection()).reshape(dimension, dimension) @ np.diag(image.GetSpacing())
    return index @ to_physical.T + np.array(image.GetOrigin())


def _unit(rng, ndim):
    v = rng.normal(size=ndim)
    return v / np.linalg.norm(v)


def bump_profile(s):
    """``(1 - s^2)^3`` for ``s < 1``, 0 beyond: smooth (C2), compact support, steepest slope 1.72 at s = 0.447."""
    return np.where(s < 1.0, np.clip(1.0 - s**2, 0.0, None) ** 3, 0.0)


BUMP_SLOPE = 6.0 / np.sqrt(5.0) * (4.0 / 5.0) ** 2  # max |d/ds bump_profile|


def local_bumps(points, max_mm, rng, count=3, radius_mm=None, inside=None):
    """``count`` non-overlapping bumps ``a_i w(|x - c_i| / R_i) d_i`` (unit direction ``d_i``, profile
    :func:`bump_profile`), zero outside every ball. Centres are drawn among the voxels where ``inside``
    (bool array, numpy order) is true, or anywhere; radii ``R_i`` in mm uniformly from ``radius_mm``
    (default ``(max(15, 3 max_mm), max(25, 5 max_mm))``), at least ``2 * BUMP_SLOPE * a_i`` so that the
    Jacobian determinant stays above 0.5; amplitudes ``a_i`` from ``[0.5, 1] max_mm``, the largest set to
    ``max_mm``. Raises ValueError when the bumps do not fit apart."""
    ndim = points.shape[-1]
    low, high = radius_mm if radius_mm is not None else (max(15.0, 3 * max_mm), max(25.0, 5 * max_mm))
    if not 0 < low <= high:
        raise ValueError(f"radius_mm must be 0 < low <= high, got {radius_mm}")
    amplitudes = rng.uniform(0.5, 1.0, count) * max_mm
    amplitudes[np.argmax(amplitudes)] = max_mm
    radii = np.maximum(rng.uniform(low, high, count), 2 * BUMP_SLOPE * amplitudes)
    candidates = points[inside] if inside is not None else points.reshape(-1, ndim)
    if len(candidates) == 0:
        raise ValueError("local_bumps: the region for the bump centres is empty")
    centres = []
    for radius in radii:
        for _ in range(1000):
            centre = candidates[rng.integers(len(candidates))]
            if all(np.linalg.norm(centre - c) >= radius + r for c, r in centres):
                centres.append((centre, radius))
                break
        else:
            raise ValueError(f"local_bumps: {count} bumps of radius {low:g}-{high:g} mm do not fit apart in the image")
    field = np.zeros(points.shape, np.float64)
    for (centre, radius), amplitude in zip(centres, amplitudes):
        distance = np.linalg.norm(points - centre, axis=-1)
        field += (amplitude * bump_profile(distance / radius))[..., None] * _unit(rng, ndim)
    return field


def sliding(points, spacing, max_mm, rng, width_mm=None, decay_mm=40.0, through=None):
    """``u(x) = sum_k phi_k(d(x)) t_k``: ``d`` the signed distance (mm) to a random plane through a voxel of
    ``through`` (bool array, numpy order; default the image centre), ``t_k`` orthonormal directions in the plane,
    ``phi_k(d) = a_k tanh(d / width) exp(-(d / decay)^2)`` with ``a_k`` in ``[-1, 1]``: the two sides slide
    past each other in opposite directions across a boundary ``width_mm`` thick (default twice
    the largest spacing: as sharp as finite differences on the grid still see without folding) and stand
    still farther away. ``grad u = (sum_k phi_k' t_k) n^T`` with ``t_k`` orthogonal to ``n``: the
    Jacobian determinant is 1 everywhere (no folding, no volume change)."""
    ndim = points.shape[-1]
    width = width_mm if width_mm is not None else 2.0 * max(spacing)
    if through is not None and through.any():
        candidates = points[through]
        origin = candidates[rng.integers(len(candidates))]
    else:
        origin = points.reshape(-1, ndim).mean(axis=0)
    normal = _unit(rng, ndim)
    basis = np.linalg.qr(np.column_stack([normal, rng.normal(size=(ndim, ndim - 1))]))[0]
    tangents = basis[:, 1:].T  # orthonormal, orthogonal to the normal
    d = (points - origin) @ normal
    profile = np.tanh(d / width) * np.exp(-((d / decay_mm) ** 2))
    field = np.zeros(points.shape, np.float64)
    for tangent in tangents:
        field += (rng.uniform(-1.0, 1.0) * profile)[..., None] * tangent
    return field * (max_mm / max(np.sqrt((field**2).sum(-1)).max(), 1e-12))


def _bspline_field(shape, counts, rng):
    """Random normal vectors on a grid of ``counts`` control points (per array axis) spanning ``shape``,
    resampled to ``shape`` with cubic B-splines: ``[*shape, N]``, one component per array axis."""
    ndim = len(shape)
    coarse = sitk.GetImageFromArray(rng.normal(size=tuple(counts) + (ndim,)), isVector=True)
    coarse.SetSpacing([(n - 1) / (c - 1) for n, c in zip(reversed(shape), reversed(counts))])
    reference = sitk.Image([int(n) for n in reversed(shape)], sitk.sitkVectorFloat64, ndim)
    return sitk.GetArrayFromImage(sitk.Resample(coarse, reference, sitk.Transform(), sitk.sitkBSpline))


def multi_scale(shape, spacing, max_mm, rng, control_spacing_mm=(64.0, 32.0, 16.0), weights=(1.0, 0.5, 0.25)):
    """The sum over scales of cubic B-spline fields with random normal control vectors about
    ``control_spacing_mm[i]`` apart (at least 4 per axis), each scaled to longest vector ``weights[i]``, then
    the sum to ``max_mm`` (components along the index axes, as
    :func:`DIRVNetLib.data.deformations.deform_image` draws them)."""
    if len(control_spacing_mm) != len(weights):
        raise ValueError("multi_scale: control_spacing_mm and weights need one entry per scale")
    extents = [(n - 1) * s for n, s in zip(shape, reversed(spacing))]  # array axes
    field = np.zeros(tuple(shape) + (len(shape),))
    for step, weight in zip(control_spacing_mm, weights):
        scale = _bspline_field(shape, [max(4, round(e / float(step)) + 1) for e in extents], rng)
        field += scale * (weight / max(np.sqrt((scale**2).sum(-1)).max(), 1e-12))
    physical = field[..., ::-1]  # array axes (z, y, x) -> x, y[, z]
    return physical * (max_mm / max(np.sqrt((physical**2).sum(-1)).max(), 1e-12))


def draw(generator, image, max_mm, seed, region=None, **options):
    """The displacement (numpy, mm, physical components) of ``generator`` for ``image``'s grid, drawn from
    ``seed``; ``region`` (uint8 image on the grid) is where bump centres or the sliding plane go."""
    rng = np.random.default_rng(seed)
    inside = sitk.GetArrayFromImage(region) > 0 if region is not None else None
    if generator == "local_bumps":
        return local_bumps(coordinates(image), max_mm, rng, inside=inside, **options)
    if generator == "sliding":
        return sliding(coordinates(image), image.GetSpacing(), max_mm, rng, through=inside, **options)
    if generator == "multi_scale":
        return multi_scale(tuple(reversed(image.GetSize())), image.GetSpacing(), max_mm, rng, **options)
    raise ValueError(f"unknown generator '{generator}'; known: {', '.join(GENERATORS[1:])}")


def deform_with(image, field):
    """``(fixed, true displacement)`` with ``fixed = image o (p + u(p))`` for ``field`` (numpy, mm,
    physical components) on ``image``'s grid."""
    from DIRVNetLib.metrics import displacement_transform

    true = sitk.GetImageFromArray(np.asarray(field, np.float64), isVector=True)
    true.CopyInformation(image)
    fixed = sitk.Resample(image, image, displacement_transform(true), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return fixed, true

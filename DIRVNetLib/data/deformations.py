"""Random smooth displacement fields (numpy, voxels, array component order)."""

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

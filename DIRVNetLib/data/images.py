"""Synthetic training images (numpy float32 in [0, 1], array order)."""

import numpy as np
import SimpleITK as sitk


def gradient_chessboard(shape, rng, cell_range=(6, 10)):
    """Chessboard of cells ``cell_range`` voxels wide, each a multi-linear blend of random corner values."""
    ndim = len(shape)
    cell = int(rng.integers(cell_range[0], cell_range[1] + 1))
    corners = rng.uniform(0.0, 1.0, size=tuple(n // cell + 2 for n in shape) + (2,) * ndim)
    index = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    cells = tuple(i // cell for i in index)
    fracs = [(i % cell) / (cell - 1) for i in index]
    image = np.zeros(shape, dtype=np.float64)
    for corner in np.ndindex(*(2,) * ndim):
        weight = np.ones(shape)
        for axis, bit in enumerate(corner):
            weight *= fracs[axis] if bit else 1.0 - fracs[axis]
        image += weight * corners[cells + corner]
    return image.astype(np.float32)


def random_shapes(shape, rng, classes=6, smoothness=4.0, blur=0.7):
    """Label-map-like image: smoothed random fields partitioned into ``classes`` regions of random
    intensity (unseen-contrast robustness), edges blurred with a Gaussian of ``blur`` voxels (0: sharp)."""
    noise = sitk.GetImageFromArray(rng.normal(size=shape + (classes,)).astype(np.float32), isVector=True)
    smooth = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(noise, smoothness))
    labels = np.argmax(smooth, axis=-1)
    intensities = rng.uniform(0.0, 1.0, size=classes)
    image = intensities[labels]
    if blur > 0:
        image = sitk.GetArrayFromImage(
            sitk.SmoothingRecursiveGaussian(sitk.GetImageFromArray(image.astype(np.float32)), blur)
        )
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def bias_field(shape, rng, strength=0.3, control_points=4):
    """A smooth multiplicative field ``exp(b)`` with ``b`` a cubic B-spline of random values on a
    ``control_points^N`` grid, scaled so ``|b| <= strength`` (MR receive-coil inhomogeneity)."""
    ndim = len(shape)
    coarse = sitk.GetImageFromArray(rng.uniform(-1.0, 1.0, size=(control_points,) * ndim).astype(np.float64))
    coarse.SetSpacing([(n - 1) / (control_points - 1) for n in reversed(shape)])
    reference = sitk.Image([int(n) for n in reversed(shape)], sitk.sitkFloat64)
    smooth = sitk.GetArrayFromImage(sitk.Resample(coarse, reference, sitk.Transform(), sitk.sitkBSpline))
    smooth *= strength / max(float(np.abs(smooth).max()), 1e-12)
    return np.exp(smooth).astype(np.float32)


def augment_intensity(image, rng, noise=0.02, gamma=0.3, bias=0.0, saturation=0.0):
    """Random gamma in ``[1 - gamma, 1 + gamma]``, additive Gaussian noise of std ``noise``, clipped;
    with ``bias > 0`` also a random smooth multiplicative bias field of log-amplitude up to ``bias``;
    with ``saturation > 0`` intensities are scaled by up to ``1 + saturation`` before clipping, so the
    brightest parts become plateaus at 1 (like bright fat in a robustly normalised MR). Both are drawn
    after the rest, so at 0 they leave the random stream as it was."""
    g = rng.uniform(1.0 - gamma, 1.0 + gamma)
    out = np.clip(image, 0.0, 1.0) ** g + rng.normal(0.0, noise, size=image.shape)
    if bias > 0:
        out = out * bias_field(image.shape, rng, rng.uniform(0.0, bias))
    if saturation > 0:
        out = out * rng.uniform(1.0, 1.0 + saturation)
    return np.clip(out, 0.0, 1.0).astype(np.float32)

"""Supervised training pairs (fixed, moving, true displacement) by the swap trick.

An image ``I`` and a smooth field ``u`` give ``fixed = I o (x + u)`` and ``moving = I``, so that
``moving(x + u(x)) = fixed(x)`` holds exactly: ``u`` is the ground truth in the pull convention.
"""

import numpy as np
import tensorflow as tf

from DIRVNetLib.data.deformations import DeformationFamily
from DIRVNetLib.data.images import augment_intensity, gradient_chessboard, random_shapes
from DIRVNetLib.ops import warp
from DIRVNetLib.preprocessing import normalise_intensity

SOURCES = ("chessboard", "shapes", "volumes")


def random_patch(volume, shape, rng):
    """A random ``shape`` crop of ``volume`` (mirror-padded first where the volume is smaller).

    For a 2D ``shape`` and a 3D volume, a random axial slice is cropped."""
    if len(shape) == 2 and volume.ndim == 3:
        volume = volume[int(rng.integers(volume.shape[0] // 4, 3 * volume.shape[0] // 4))]
    pad = [(0, max(0, n - v)) for n, v in zip(shape, volume.shape)]
    volume = np.pad(volume, pad, mode="symmetric")
    start = [int(rng.integers(0, v - n + 1)) for n, v in zip(shape, volume.shape)]
    return volume[tuple(slice(s, s + n) for s, n in zip(start, shape))]


def thick_slices(images, rng, max_thickness):
    """``images`` (same shape) as if acquired in thick slices along one random array axis and
    interpolated back to the grid: each is averaged over a slice profile of a random width in
    ``[1, max_thickness]`` voxels (a Gaussian with the variance of that box, edges repeated). The axis
    and width are drawn once, shared by all ``images`` (one protocol for both images of a pair)."""
    axis = int(rng.integers(images[0].ndim))
    width = rng.uniform(1.0, max_thickness)
    sigma = np.sqrt((width**2 - 1.0) / 12.0)  # box of this width, less the voxel's own extent
    radius = int(np.ceil(3.0 * sigma))
    if radius == 0:
        return tuple(images)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    blurred = []
    for image in images:
        pad = [(0, 0)] * image.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(image, pad, mode="edge")
        before = (slice(None),) * axis
        out = sum(w * padded[before + (slice(k, k + image.shape[axis]),)] for k, w in enumerate(taps))
        blurred.append(out.astype(image.dtype))
    return tuple(blurred)


class PairSampler:
    """Draws ``(fixed, moving, field)`` numpy triples of a fixed patch ``shape``.

    sources: names from :data:`SOURCES` drawn uniformly; volumes: real images (numpy, any intensity
    range) used for "volumes"; max_magnitude: the largest displacement is drawn in
    ``[0.1 * max_magnitude, max_magnitude]`` voxels. noise, gamma, bias, saturation: intensity
    augmentation of each image (see :func:`augment_intensity`; bias and saturation are off by default).
    shape_blur: ``(low, high)`` range of the edge blur (voxels) of "shapes" images (fixed 0.7 by default).
    control_points: ``(low, high)`` range (inclusive) of the random field's control points per axis
    across the patch; fewer points give smoother fields (5 by default). slice_thickness: with a value
    above 1, both images of a pair look acquired in slices up to that many voxels thick
    (:func:`thick_slices`; 1, the default, is off). deformation: the family of random fields
    (:class:`DeformationFamily`; default: smooth fields only).
    """

    supervised = True  # batches carry the true field

    def __init__(
        self,
        shape,
        max_magnitude,
        sources=SOURCES,
        volumes=(),
        seed=0,
        affine_scale=0.1,
        noise=0.02,
        gamma=0.3,
        bias=0.0,
        saturation=0.0,
        shape_blur=(0.7, 0.7),
        control_points=(5, 5),
        slice_thickness=1.0,
        deformation=None,
    ):
        unknown = set(sources) - set(SOURCES)
        if unknown:
            raise ValueError(f"unknown training sources {sorted(unknown)}; choose from {SOURCES}")
        if "volumes" in sources and not volumes:
            raise ValueError("training source 'volumes' needs at least one real volume")
        self.shape = tuple(int(n) for n in shape)
        self.max_magnitude = float(max_magnitude)
        self.sources = tuple(sources)
        self.volumes = [normalise_intensity(np.asarray(v, np.float32)) for v in volumes]
        self.affine_scale = affine_scale
        self.augmentation = {
            "noise": float(noise),
            "gamma": float(gamma),
            "bias": float(bias),
            "saturation": float(saturation),
        }
        self.shape_blur = tuple(float(b) for b in shape_blur)
        self.control_points = tuple(int(n) for n in control_points)
        if len(self.control_points) != 2 or not 2 <= self.control_points[0] <= self.control_points[1]:
            raise ValueError(f"control_points must be a range (low, high) with 2 <= low <= high, got {control_points}")
        self.slice_thickness = float(slice_thickness)
        if not self.slice_thickness >= 1.0:
            raise ValueError(f"slice_thickness must be >= 1 voxel (1: off), got {slice_thickness}")
        self.deformation = DeformationFamily() if deformation is None else deformation
        self.rng = np.random.default_rng(seed)

    def image(self):
        source = self.sources[int(self.rng.integers(len(self.sources)))]
        if source == "chessboard":
            return gradient_chessboard(self.shape, self.rng)
        if source == "shapes":
            low, high = self.shape_blur
            return random_shapes(self.shape, self.rng, blur=low if low == high else self.rng.uniform(low, high))
        volume = self.volumes[int(self.rng.integers(len(self.volumes)))]
        return normalise_intensity(random_patch(volume, self.shape, self.rng))

    def sample(self):
        image = self.image()
        magnitude = self.rng.uniform(0.1, 1.0) * self.max_magnitude
        low, high = self.control_points
        points = low if low == high else int(self.rng.integers(low, high + 1))
        field = self.deformation.draw(
            self.shape, magnitude, self.rng, control_points=points, affine_scale=self.affine_scale
        )
        fixed = warp(image[np.newaxis, ..., np.newaxis], field[np.newaxis]).numpy()[0, ..., 0]
        fixed = augment_intensity(fixed, self.rng, **self.augmentation)
        moving = augment_intensity(image, self.rng, **self.augmentation)
        if self.slice_thickness > 1.0:  # drawn last: off, it leaves the random stream as it was
            fixed, moving = thick_slices((fixed, moving), self.rng, self.slice_thickness)
        return fixed, moving, field

    def batch(self, size):
        """Stacked ``[B, *S, 1]`` fixed and moving and ``[B, *S, N]`` fields."""
        triples = [self.sample() for _ in range(size)]
        fixed, moving, field = (np.stack(parts) for parts in zip(*triples))
        return fixed[..., np.newaxis], moving[..., np.newaxis], field

    def batch_for_step(self, seed, step, size):
        """The batch of training ``step``: drawn from ``default_rng([seed, step])`` only, so a resumed
        run sees exactly what an uninterrupted one would."""
        self.rng = np.random.default_rng([int(seed), int(step)])
        return self.batch(size)

    def summary(self):
        """JSON-able description of what this sampler draws (for weight-set metadata)."""
        return {
            "kind": "synthetic deformations (swap trick)",
            "shape": list(self.shape),
            "max_magnitude_voxels": self.max_magnitude,
            "sources": list(self.sources),
            "volumes": [list(v.shape) for v in self.volumes],
            "affine_scale": self.affine_scale,
            "augmentation": self.augmentation,
            "shape_blur": list(self.shape_blur),
            "control_points": list(self.control_points),
            "slice_thickness": self.slice_thickness,
            "deformation": self.deformation.to_dict(),
        }

    def dataset(self, batch_size, seed=None, start=0, stop=None):
        """A ``tf.data.Dataset`` of :meth:`batch` outputs: endless draws from the current random state,
        or, with ``seed``, the batches of steps ``start .. stop - 1`` (see :func:`step_dataset`)."""
        if seed is not None:
            return step_dataset(self, batch_size, seed, start, stop)

        def generate():
            while True:
                yield self.batch(batch_size)

        return tf.data.Dataset.from_generator(generate, output_signature=batch_signature(self, batch_size)).prefetch(2)


def batch_signature(sampler, batch_size):
    """TensorSpecs of ``(fixed, moving, field)`` batches of ``sampler`` (its ``shape``, ``[B, *S, 1|N]``)."""
    ndim = len(sampler.shape)
    return (
        tf.TensorSpec([batch_size, *sampler.shape, 1], tf.float32),
        tf.TensorSpec([batch_size, *sampler.shape, 1], tf.float32),
        tf.TensorSpec([batch_size, *sampler.shape, ndim], tf.float32),
    )


def step_dataset(sampler, batch_size, seed, start=0, stop=None, prefetch=2):
    """``tf.data.Dataset`` of the batches of steps ``start, start + 1, ... stop - 1`` (endless if
    ``stop`` is None) of any sampler with ``batch_for_step(seed, step, size)`` (:class:`PairSampler`,
    :class:`DIRVNetLib.data.folders.PairFolderSampler`). Batches are drawn in a background thread."""

    def generate():
        step = int(start)
        while stop is None or step < stop:
            yield sampler.batch_for_step(seed, step, batch_size)
            step += 1

    dataset = tf.data.Dataset.from_generator(generate, output_signature=batch_signature(sampler, batch_size))
    return dataset.prefetch(prefetch)

"""Training losses, per pyramid level."""

import tensorflow as tf

from DIRVNetLib.ops import bspline_interpolate


def level_ground_truth(true_field, level):
    """The true ``[B, *S, N]`` field (finest voxels) on pyramid ``level``: every ``2^level``-th voxel
    (level voxel ``i`` is centred on finest voxel ``2^level * i``), divided by ``2^level``."""
    ndim = true_field.shape[-1]
    step = 2**level
    return true_field[(slice(None),) + (slice(None, None, step),) * ndim] / float(step)


def supervised_epe(output, true_field, control_spacing):
    """Mean end-point error of every level's last control displacement against the true field.

    Each level's EPE is measured on that level's dense grid and multiplied by ``2^level`` so all are in
    finest-level voxels; returns ``(mean over levels, [EPE of level 0, 1, ...])``.
    """
    per_level = []
    for level in sorted(output.level_controls):
        truth = level_ground_truth(true_field, level)
        spatial = [int(n) for n in truth.shape[1:-1]]
        flow = bspline_interpolate(output.level_controls[level], control_spacing, spatial)
        epe = tf.reduce_mean(tf.norm(flow - truth, axis=-1)) * float(2**level)
        per_level.append(epe)
    return tf.add_n(per_level) / len(per_level), per_level

"""Training losses, per pyramid level: supervised end-point error, unsupervised similarity (local NCC,
MSE) with diffusion smoothness and a folding penalty, and any weighted mix of them (hybrid).

Every term is computed on every level of the pyramid from that level's last control displacement;
the total is the level-weighted mean over levels of ``epe * EPE + similarity_weight * dissimilarity +
smoothness * diffusion + folding * fold`` (see :class:`LossConfig`). With ``unit_epe > 0`` a level's
EPE is a weighted mean over all its units (deep supervision), not only its last unit's; with
``relative_epe`` every pair's EPE is divided by its true field's mean length; with ``overshoot > 0``
every rise of a pair's EPE from one unit to the next, over all levels, is penalised (:func:`overshoot`).
"""

import dataclasses

import tensorflow as tf

from DIRVNetLib.model.config import from_mapping
from DIRVNetLib.model.network import image_pyramid
from DIRVNetLib.ops import bspline_interpolate, warp

SIMILARITIES = ("ncc", "mse")


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
        per_level.append(level_epe(output.level_controls[level], true_field, level, control_spacing))
    return tf.add_n(per_level) / len(per_level), per_level


RELATIVE_FLOOR = 0.25
"""Smallest mean true displacement (finest-level voxels) a relative EPE divides by."""


def level_epe(control, true_field, level, control_spacing, relative=False):
    """EPE (finest-level voxels) of one level's control displacement against the true field.

    relative: instead, every pair's mean EPE divided by its true field's mean length (at least
    :data:`RELATIVE_FLOOR`), averaged over the batch: dimensionless, small deformations count as much
    as large ones.
    """
    return _reduce_epe(*_pair_epe(control, true_field, level, control_spacing), level, relative)


def _pair_epe(control, true_field, level, control_spacing):
    """Every pair's mean EPE and mean true displacement length, ``[B]`` each, in level voxels."""
    truth = level_ground_truth(true_field, level)
    spatial = [int(n) for n in truth.shape[1:-1]]
    flow = bspline_interpolate(control, control_spacing, spatial)
    axes = list(range(1, len(spatial) + 1))
    error = tf.reduce_mean(tf.norm(flow - truth, axis=-1), axis=axes)
    return error, tf.reduce_mean(tf.norm(truth, axis=-1), axis=axes)


def _reduce_epe(error, length, level, relative):
    """:func:`level_epe` from :func:`_pair_epe`'s per-pair values."""
    if not relative:
        return tf.reduce_mean(error) * float(2**level)
    return tf.reduce_mean(error / tf.maximum(length, RELATIVE_FLOOR / 2**level))


def overshoot(output, true_field, control_spacing):
    """Mean over pairs of the summed rises of the EPE along the network's units, coarsest level first,
    starting from the identity: ``sum_k max(0, EPE_k - EPE_(k-1))``. Every unit's field is measured on
    the finest grid (finest-level voxels), so a unit that leaves the field as it was adds nothing, across
    levels too. Zero when no unit moves any pair away from its truth, whatever the final error."""
    axes = list(range(1, true_field.shape.rank - 1))
    spatial = [int(n) for n in true_field.shape[1:-1]]
    previous = tf.reduce_mean(tf.norm(true_field, axis=-1), axis=axes)
    rises = []
    for level in sorted(output.unit_controls, reverse=True):
        scale = 2**level  # level voxels -> finest voxels; the level's control grid spans the finest grid
        for control in output.unit_controls[level]:
            flow = bspline_interpolate(control * float(scale), control_spacing * scale, spatial)
            error = tf.reduce_mean(tf.norm(flow - true_field, axis=-1), axis=axes)
            rises.append(tf.nn.relu(error - previous))
            previous = error
    return tf.reduce_mean(tf.add_n(rises))


def _box_sum(x, window):
    """Sum of ``x`` ``[B, *S, C]`` over a centred ``window``-wide box (zero padding), per channel."""
    ndim = x.shape.rank - 2
    channels = x.shape[-1]
    perm = [0, ndim + 1] + list(range(1, ndim + 1))
    y = tf.transpose(x, perm)  # channels into the batch: one single-channel kernel serves all
    shape = tf.shape(y)
    y = tf.reshape(y, tf.concat([[-1], shape[2:], [1]], axis=0))
    conv = tf.nn.conv2d if ndim == 2 else tf.nn.conv3d
    for axis in range(ndim):
        kernel_shape = [1] * ndim + [1, 1]
        kernel_shape[axis] = window
        y = conv(y, tf.ones(kernel_shape, x.dtype), [1] * (ndim + 2), "SAME")
    y = tf.reshape(y, tf.concat([[-1, channels], shape[2:]], axis=0))
    return tf.transpose(y, [0] + list(range(2, ndim + 2)) + [1])


def local_ncc(a, b, window=9, eps=1e-5):
    """Mean over voxels and batch of the squared local normalised cross-correlation of two
    ``[B, *S, 1]`` images in a ``window``-wide box (VoxelMorph's form; 1 = locally linearly related).
    Boxes at the border hold only the voxels inside the image."""
    stacked = tf.concat([a, b, a * a, b * b, a * b, tf.ones_like(a)], axis=-1)
    sums = _box_sum(stacked, window)
    sa, sb, saa, sbb, sab, n = (sums[..., i : i + 1] for i in range(6))
    cross = sab - sa * sb / n
    var_a = saa - sa * sa / n
    var_b = sbb - sb * sb / n
    return tf.reduce_mean(cross * cross / (var_a * var_b + eps))


def mean_squared(a, b):
    return tf.reduce_mean(tf.square(a - b))


def displacement_gradient(flow):
    """Forward differences ``[B, *S', N, N]`` (``[..., i, j] = d u_i / d x_j``) of a ``[B, *S, N]``
    flow, on the ``S - 1`` interior grid."""
    ndim = flow.shape[-1]
    interior = (slice(None),) + tuple(slice(0, -1) for _ in range(ndim))
    columns = []
    for axis in range(ndim):
        ahead = [slice(None)] + [slice(0, -1)] * ndim
        ahead[axis + 1] = slice(1, None)
        columns.append(flow[tuple(ahead)] - flow[interior])
    return tf.stack(columns, axis=-1)


def diffusion(flow):
    """Diffusion regulariser: mean squared forward difference of every flow component."""
    return tf.reduce_mean(tf.square(displacement_gradient(flow))) * float(flow.shape[-1])


def jacobian_determinant(flow):
    """det(I + grad u) per voxel (forward differences), ``[B, *S - 1]``; <= 0 means folding."""
    ndim = flow.shape[-1]
    return tf.linalg.det(displacement_gradient(flow) + tf.eye(ndim, dtype=flow.dtype))


def folding(flow):
    """Folding penalty: mean of ``max(0, -det(I + grad u))`` (zero while the map is invertible)."""
    return tf.reduce_mean(tf.nn.relu(-jacobian_determinant(flow)))


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Weights of the loss terms. epe: supervised end-point error (needs a true field); similarity:
    "ncc" (1 - local NCC in an ``ncc_window`` box) or "mse"; similarity_weight, smoothness (diffusion),
    folding: weights of the unsupervised terms; level_weights: per-level weights (level 0 = finest),
    default equal; unit_epe: weight of each earlier unit's EPE on a level relative to the level's last
    unit (0: only the last unit is supervised, the method's loss; 1: every unit equally); relative_epe:
    train on every pair's EPE relative to its true field's mean length (:func:`level_epe`) so the loss
    weighs small deformations as much as large ones (the logged ``epe_levelL`` stays absolute);
    overshoot: weight of :func:`overshoot` (finest-level voxels), added to the level mean, which keeps
    the units from moving a pair away from the truth before bringing it back."""

    epe: float = 1.0
    similarity: str = "ncc"
    similarity_weight: float = 0.0
    ncc_window: int = 9
    smoothness: float = 0.0
    folding: float = 0.0
    level_weights: tuple = None
    unit_epe: float = 0.0
    relative_epe: bool = False
    overshoot: float = 0.0

    PRESETS = {
        "supervised": {"epe": 1.0},
        "ncc": {"epe": 0.0, "similarity": "ncc", "similarity_weight": 1.0, "smoothness": 1.0, "folding": 10.0},
        "mse": {"epe": 0.0, "similarity": "mse", "similarity_weight": 1.0, "smoothness": 0.01, "folding": 1.0},
        "hybrid": {"epe": 1.0, "similarity": "ncc", "similarity_weight": 1.0, "smoothness": 1.0, "folding": 10.0},
    }

    def __post_init__(self):
        problems = []
        if self.similarity not in SIMILARITIES:
            problems.append(f"similarity must be one of {SIMILARITIES}, got '{self.similarity}'")
        if min(self.epe, self.similarity_weight, self.smoothness, self.folding, self.unit_epe, self.overshoot) < 0:
            problems.append("loss weights must be >= 0")
        if self.epe + self.similarity_weight == 0:
            problems.append("the loss needs epe > 0 or similarity_weight > 0")
        if self.overshoot > 0 and self.epe == 0:
            problems.append("overshoot needs the true field: set epe > 0")
        if not isinstance(self.relative_epe, bool):
            problems.append(f"relative_epe must be true or false, got {self.relative_epe!r}")
        if self.ncc_window < 1 or self.ncc_window % 2 == 0:
            problems.append(f"ncc_window must be odd and >= 1, got {self.ncc_window}")
        if problems:
            raise ValueError("invalid loss configuration: " + "; ".join(problems))

    @property
    def supervised(self):
        """True where the loss needs the true field."""
        return self.epe > 0

    @property
    def unsupervised(self):
        return self.similarity_weight > 0

    @classmethod
    def from_value(cls, value):
        """From a preset name (:attr:`PRESETS`), None (supervised), or a dict of fields, optionally with
        ``"preset"`` to start from. Unknown names and keys raise ValueError."""
        if value is None:
            value = "supervised"
        if isinstance(value, str):
            value = {"preset": value}
        if not isinstance(value, dict):
            raise ValueError(f"loss must be a preset name {sorted(cls.PRESETS)} or an object, got {value!r}")
        values = dict(value)
        preset = values.pop("preset", None)
        if preset is not None and preset not in cls.PRESETS:
            raise ValueError(f"unknown loss preset '{preset}'; choose from {sorted(cls.PRESETS)}")
        merged = {**cls.PRESETS.get(preset, {}), **values}
        if merged.get("level_weights") is not None:
            merged["level_weights"] = tuple(float(w) for w in merged["level_weights"])
        return from_mapping(cls, merged, "'loss'")

    def to_dict(self):
        values = dataclasses.asdict(self)
        values["level_weights"] = list(self.level_weights) if self.level_weights else None
        return values

    def terms(self, levels):
        """Names of the logged per-level terms, e.g. ``epe_level0``."""
        names = (["epe"] if self.supervised else []) + (
            [self.similarity, "smoothness", "folding"] if self.unsupervised or self.smoothness or self.folding else []
        )
        per_level = [f"{name}_level{level}" for name in names for level in range(levels)]
        return per_level + (["overshoot"] if self.overshoot > 0 else [])


def registration_loss(output, fixed, moving, true_field, config, loss):
    """The training loss of a network ``output`` and its per-level terms.

    fixed, moving: ``[B, *S, 1]`` network inputs; true_field: ``[B, *S, N]`` (ignored unless
    ``loss.epe > 0``); config: the :class:`NetworkConfig`; loss: a :class:`LossConfig`.
    Returns ``(total, {term_levelL: value})``; the logged ``epe_levelL`` is the level's last unit's EPE,
    and with none of ``unit_epe``, ``relative_epe`` and ``overshoot`` the supervised-only loss equals
    :func:`supervised_epe`.
    """
    levels = sorted(output.level_controls)
    spatial = [int(n) for n in fixed.shape[1:-1]]
    padded = config.padded_shape(spatial)
    weights = loss.level_weights or (1.0,) * len(levels)
    if len(weights) != len(levels):
        raise ValueError(f"loss level_weights has {len(weights)} entries but the network has {len(levels)} levels")
    unsupervised = loss.unsupervised or loss.smoothness > 0 or loss.folding > 0
    if unsupervised:
        fixed_pyramid = image_pyramid(fixed, padded, len(levels))
        moving_pyramid = image_pyramid(moving, padded, len(levels))
    terms, totals = {}, []
    for level in levels:
        control = output.level_controls[level]
        total = 0.0
        if loss.supervised:
            error, length = _pair_epe(control, true_field, level, config.control_spacing)
            terms[f"epe_level{level}"] = _reduce_epe(error, length, level, relative=False)
            epe = _reduce_epe(error, length, level, loss.relative_epe)
            earlier = output.unit_controls[level][:-1] if loss.unit_epe > 0 else []
            if earlier:
                earlier_sum = tf.add_n(
                    [level_epe(c, true_field, level, config.control_spacing, loss.relative_epe) for c in earlier]
                )
                epe = (epe + loss.unit_epe * earlier_sum) / (1.0 + loss.unit_epe * len(earlier))
            total += loss.epe * epe
        if unsupervised:
            # The level's image region (the padding is mirrored content the loss must not reward).
            crop = [-(-n // 2**level) for n in spatial]
            level_shape = [int(n) for n in fixed_pyramid[level].shape[1:-1]]
            flow = bspline_interpolate(control, config.control_spacing, level_shape)
            box = (slice(None),) + tuple(slice(0, n) for n in crop)
            warped = warp(moving_pyramid[level], flow)[box]
            target = fixed_pyramid[level][box]
            flow = flow[box]
            if loss.similarity == "ncc":
                dissimilarity = 1.0 - local_ncc(target, warped, min(loss.ncc_window, 2 * (min(crop) // 2) - 1))
            else:
                dissimilarity = mean_squared(target, warped)
            smooth, fold = diffusion(flow), folding(flow)
            terms[f"{loss.similarity}_level{level}"] = dissimilarity
            terms[f"smoothness_level{level}"] = smooth
            terms[f"folding_level{level}"] = fold
            total += loss.similarity_weight * dissimilarity + loss.smoothness * smooth + loss.folding * fold
        totals.append(weights[level] * total)
    total = tf.add_n(totals) / float(sum(weights))
    if loss.overshoot > 0:
        terms["overshoot"] = overshoot(output, true_field, config.control_spacing)
        total += loss.overshoot * terms["overshoot"]
    return total, terms

"""The DIRV-Net pyramid: variational units on a coarse-to-fine image pyramid.

Level 0 is the finest (input resolution), level ``L - 1`` the coarsest; each level starts from the
previous level's control displacement upsampled x2 (linear, values doubled), the coarsest from zero.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from DIRVNetLib.model.activations import initial_values
from DIRVNetLib.model.config import NetworkConfig
from DIRVNetLib.model.unit import UnitParameters, variational_unit
from DIRVNetLib.ops import binomial_downsample, bspline_interpolate, control_grid_shape, upsample_control_grid


@tf.function(autograph=False)  # plain Python control flow only: nothing for autograph to convert
def _compiled_unit(control, fixed, moving, *params, spacing, activation, data_range, reg_range, centred, gradient):
    return variational_unit(
        control, fixed, moving, UnitParameters(*params), spacing, activation, data_range, reg_range, centred, gradient
    )


@tf.function(jit_compile=True, autograph=False)  # fused by XLA (docs/notes/benchmarks.md, "Speed and memory")
def _dense_flow(control, spacing, spatial_shape):
    return bspline_interpolate(control, spacing, spatial_shape)


def _mirror_pad(image, padded_shape):
    """``[B, *S, C]`` ``image`` padded at the end of each spatial axis to ``padded_shape`` by mirroring
    (``tf.pad`` "SYMMETRIC"), repeatedly where the padding exceeds the size (images smaller than half
    the network's minimum size)."""
    for axis, target in enumerate(padded_shape, start=1):
        while image.shape[axis] < target:
            paddings = [[0, 0]] * image.shape.rank
            paddings[axis] = [0, min(target - image.shape[axis], image.shape[axis])]
            image = tf.pad(image, paddings, mode="SYMMETRIC")
    return image


def image_pyramid(image, padded_shape, levels):
    """``[image padded to padded_shape, its binomial downsamplings ...]``, finest first, ``levels`` images."""
    pyramid = [_mirror_pad(image, padded_shape)]
    for _ in range(1, levels):
        pyramid.append(binomial_downsample(pyramid[-1]))
    return pyramid


# Called eagerly, the pyramid and the upsampling run as graphs, not under XLA (docs/notes/benchmarks.md,
# "Speed and memory").
_compiled_pyramid = tf.function(image_pyramid, autograph=False)
_compiled_upsample = tf.function(upsample_control_grid, autograph=False)


def _eager_or_graph(function, compiled):
    """``compiled`` when executing eagerly, ``function`` itself inside a graph being built."""
    return compiled if tf.executing_eagerly() else function


@dataclasses.dataclass
class NetworkOutput:
    """flow: ``[B, *S, N]`` dense displacement in voxels of the input grid (pull convention:
    ``warped(x) = moving(x + flow(x))``). level_controls: ``{level: [B, *K_l, N]}`` the last unit's
    control displacement of every level run, in voxels of that level, on the padded grid. unit_controls:
    ``{level: [after unit 0, unit 1, ...]}`` every unit's control displacement (the last is the level's)."""

    flow: tf.Tensor
    level_controls: dict
    unit_controls: dict


class DIRVNet(tf.Module):
    """DIRV-Net for 2D or 3D single-channel images ``[B, *S, 1]`` (intensities normalised to ~[0, 1]).

    Parameters are separate per level and unit, named ``level{l}/unit{u}/{part}``.
    """

    def __init__(self, config: NetworkConfig, seed=0, data_slope=1.0, reg_slope=0.05, alpha=1.0):
        super().__init__(name="dirvnet")

        self.config = config
        rng = np.random.default_rng(seed)
        c = config
        self.variables_by_name = {}
        for level in range(c.levels):
            for unit in range(c.units):
                parts = {
                    "data_kernels": self._init_kernels(rng, c.data_kernel, c.data_filters),
                    "data_values": initial_values(c.activation, c.data_filters, c.knots, c.data_range, data_slope, rng),
                    "reg_kernels": self._init_kernels(rng, c.reg_kernel, c.reg_filters),
                    "reg_values": initial_values(c.activation, c.reg_filters, c.knots, c.reg_range, reg_slope, rng),
                    "alpha": np.float32(alpha),
                }
                for part, value in parts.items():
                    name = f"level{level}/unit{unit}/{part}"
                    self.variables_by_name[name] = tf.Variable(value, name=name.replace("/", "_"))
        self._final_flow = tf.function(
            lambda fixed, moving, finest_level: self(fixed, moving, finest_level=finest_level).flow, autograph=False
        )

    def _init_kernels(self, rng, size, filters):
        """Normal kernels with std ``(N / F)^(1 / N) / size`` (the method's initialisation)."""
        ndim = self.config.ndim
        std = (ndim / filters) ** (1.0 / ndim) / size
        return rng.normal(0.0, std, size=(size,) * ndim + (1, filters)).astype(np.float32)

    def parameters(self, level, unit):
        """The :class:`UnitParameters` of one unit."""
        return UnitParameters(*(self.variables_by_name[f"level{level}/unit{unit}/{p}"] for p in UnitParameters.NAMES))

    def get_weights(self):
        """``{name: numpy array}`` of every parameter."""
        return {name: v.numpy() for name, v in self.variables_by_name.items()}

    def set_weights(self, arrays):
        """Assign ``{name: array}``; raises ValueError naming missing, unexpected or mis-shaped entries."""
        expected = self.variables_by_name
        problems = [f"missing {n}" for n in sorted(set(expected) - set(arrays))]
        problems += [f"unexpected {n}" for n in sorted(set(arrays) - set(expected))]
        problems += [
            f"{n} has shape {tuple(np.shape(arrays[n]))}, expected {tuple(v.shape)}"
            for n, v in expected.items()
            if n in arrays and tuple(np.shape(arrays[n])) != tuple(v.shape)
        ]
        if problems:
            raise ValueError("weights do not match the network configuration: " + "; ".join(problems[:8]))
        for name, variable in expected.items():
            variable.assign(np.asarray(arrays[name], dtype=np.float32))

    def control_shape(self, padded_shape, level):
        """Control-grid shape of ``level`` for an input padded to ``padded_shape``."""
        return control_grid_shape([n // 2**level for n in padded_shape], self.config.control_spacing)

    def control_to_flow(self, control, level, padded_shape, crop_shape):
        """Dense flow ``[B, *crop_shape, N]`` in input-grid voxels from a control displacement of ``level``."""
        upsample = _eager_or_graph(upsample_control_grid, _compiled_upsample)
        for finer in range(level - 1, -1, -1):
            control = upsample(control, self.control_shape(padded_shape, finer))
        flow = _dense_flow(control, self.config.control_spacing, list(padded_shape))
        return flow[(slice(None),) + tuple(slice(0, n) for n in crop_shape)]

    def _unit(self, control, fixed, moving, level, unit):
        """One unit; eager calls go through one compiled graph shared by all units of a shape."""
        c = self.config
        params = self.parameters(level, unit)
        if tf.executing_eagerly():
            return _compiled_unit(
                control,
                fixed,
                moving,
                *(getattr(params, n) for n in UnitParameters.NAMES),
                spacing=c.control_spacing,
                activation=c.activation,
                data_range=c.data_range,
                reg_range=c.reg_range,
                centred=c.centred_activations,
                gradient=c.image_gradient,
            )
        return variational_unit(
            control,
            fixed,
            moving,
            params,
            c.control_spacing,
            c.activation,
            c.data_range,
            c.reg_range,
            c.centred_activations,
            c.image_gradient,
        )

    def final_flow(self, fixed, moving, finest_level=0):
        """Only the ``flow`` of :meth:`__call__`, the whole pyramid run as one graph (traced once per
        input shape and ``finest_level``): for callers that watch no unit and call often
        (docs/notes/benchmarks.md, "With whole-graph passes")."""
        fixed, moving = tf.convert_to_tensor(fixed, tf.float32), tf.convert_to_tensor(moving, tf.float32)
        return self._final_flow(fixed, moving, int(finest_level))

    def __call__(self, fixed, moving, on_unit=None, finest_level=0):
        """Register ``moving`` to ``fixed`` (both ``[B, *S, 1]``, same shape).

        on_unit: optional ``callable(level, unit, control)`` called after every unit (eager use only;
        e.g. progress, cancel, or keeping intermediate displacements). finest_level: the finest pyramid
        level run (0: every level; ``k``: the units of levels below ``k`` are skipped and the flow is that
        of level ``k``'s last unit). Inputs are padded at the end of each axis (mirror) to the size rule
        and the flow is cropped back.
        """
        c = self.config
        if not 0 <= finest_level < c.levels:
            raise ValueError(f"finest_level must be a pyramid level from 0 to {c.levels - 1}, got {finest_level}")
        fixed = tf.convert_to_tensor(fixed, tf.float32)
        moving = tf.convert_to_tensor(moving, tf.float32)
        spatial = [int(n) for n in fixed.shape[1 : 1 + c.ndim]]
        padded = c.padded_shape(spatial)
        pyramid = _eager_or_graph(image_pyramid, _compiled_pyramid)
        fixed_pyramid = pyramid(fixed, padded, c.levels)
        moving_pyramid = pyramid(moving, padded, c.levels)
        upsample = _eager_or_graph(upsample_control_grid, _compiled_upsample)

        batch = tf.shape(fixed)[0]
        coarsest = self.control_shape(padded, c.levels - 1)
        control = tf.zeros(tf.concat([[batch], coarsest, [c.ndim]], axis=0), tf.float32)
        level_controls, unit_controls = {}, {}
        for level in range(c.levels - 1, finest_level - 1, -1):
            if level < c.levels - 1:
                control = upsample(control, self.control_shape(padded, level))
            unit_controls[level] = []
            for unit in range(c.units):
                control = self._unit(control, fixed_pyramid[level], moving_pyramid[level], level, unit)
                unit_controls[level].append(control)
                if on_unit is not None:
                    on_unit(level, unit, control)
            level_controls[level] = control
        flow = self.control_to_flow(control, finest_level, padded, spatial)
        return NetworkOutput(flow=flow, level_controls=level_controls, unit_controls=unit_controls)

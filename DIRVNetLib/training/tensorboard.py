"""TensorBoard event files of a training run: scalars per level, images of a validation pair
(fixed, moving, warped, differences, displacement components, every unit's displacement) and plots of
the learned activations and potentials, written with ``tf.summary`` (which needs the ``tensorboard``
package, part of the ``train`` extra; view with ``tensorboard --logdir RUN/tensorboard``).
"""

import importlib.util
import weakref

import numpy as np
import tensorflow as tf

from DIRVNetLib.training.plots import activation_figure, figure_png, mid_slice, montage, to_unit_range


class SummaryLogger:
    """Writes TensorBoard summaries into ``log_dir`` (a no-op logger when ``log_dir`` is None)."""

    def __init__(self, log_dir):
        if log_dir and importlib.util.find_spec("tensorboard") is None:
            raise ValueError(
                'TensorBoard summaries need the tensorboard package (pip install "DIRVNet[train]"); '
                'or set "tensorboard": false in the run configuration'
            )
        self.writer = tf.summary.create_file_writer(str(log_dir)) if log_dir else None

    def scalars(self, values, step, prefix=""):
        """``{name: number}`` as scalars ``prefix + name``."""
        if self.writer is None:
            return
        with self.writer.as_default():
            for name, value in values.items():
                tf.summary.scalar(prefix + name, float(value), step=int(step))

    def image(self, tag, image, step):
        """A 2D float image in [0, 1] (``[H, W]``), or PNG bytes."""
        if self.writer is None:
            return
        if isinstance(image, (bytes, bytearray)):
            pixels = tf.io.decode_png(bytes(image))[tf.newaxis]
        else:
            pixels = np.clip(np.asarray(image, np.float32), 0.0, 1.0)[np.newaxis, ..., np.newaxis]
        with self.writer.as_default():
            tf.summary.image(tag, pixels, step=int(step))

    def flush(self):
        if self.writer is not None:
            self.writer.flush()

    def close(self):
        if self.writer is not None:
            self.writer.close()


def log_registration_images(logger, network, fixed, moving, step):
    """Images of one pair (``[1, *S, 1]`` arrays) registered by ``network`` (compiled once per network):

    ``images/pair``: fixed | moving | warped | |fixed - moving| | |fixed - warped|;
    ``images/displacement``: one tile per displacement component (grey = 0, symmetric scale);
    ``units/level{l}``: every unit's displacement on the input grid, rows = components, columns = units.
    3D pairs show the middle axial slice.
    """
    if logger.writer is None:
        return
    config = network.config
    flow, warped, controls = _units_function(network)(tf.constant(fixed, tf.float32), tf.constant(moving, tf.float32))
    order = [(level, unit) for level in range(config.levels - 1, -1, -1) for unit in range(config.units)]
    kept = [(level, unit, control) for (level, unit), control in zip(order, controls)]
    warped = warped.numpy()[0, ..., 0]
    f, m = np.asarray(fixed)[0, ..., 0], np.asarray(moving)[0, ..., 0]
    tiles = [to_unit_range(mid_slice(a)) for a in (f, m)] + [np.clip(mid_slice(warped), 0, 1)]
    tiles += [np.clip(mid_slice(np.abs(f - m)) * 2, 0, 1), np.clip(mid_slice(np.abs(f - warped)) * 2, 0, 1)]
    logger.image("images/pair", montage(tiles, len(tiles)), step)
    flow = flow.numpy()[0]
    limit = max(float(np.abs(flow).max()), 1e-3)
    logger.image(
        "images/displacement",
        montage([to_unit_range(mid_slice(flow[..., c]), True, limit) for c in range(config.ndim)], config.ndim),
        step,
    )
    spatial = list(f.shape)
    padded = config.padded_shape(spatial)
    for level in range(config.levels):
        flows = [network.control_to_flow(c, lv, padded, spatial).numpy()[0] for lv, _, c in kept if lv == level]
        tiles = [to_unit_range(mid_slice(u[..., c]), True, limit) for c in range(config.ndim) for u in flows]
        logger.image(f"units/level{level}", montage(tiles, len(flows)), step)


_UNIT_FUNCTIONS = weakref.WeakKeyDictionary()


def _units_function(network):
    """A compiled ``(fixed, moving) -> (flow, warped, [control after every unit])`` for ``network``
    (the ``on_unit`` hook collects the units' tensors while tracing)."""
    from DIRVNetLib.ops import warp

    if network not in _UNIT_FUNCTIONS:

        @tf.function(autograph=False)
        def run(fixed, moving):
            kept = []
            output = network(fixed, moving, on_unit=lambda level, unit, control: kept.append(control))
            return output.flow, warp(moving, output.flow), kept

        _UNIT_FUNCTIONS[network] = run
    return _UNIT_FUNCTIONS[network]


def log_activation_plots(logger, network, step, dpi=72):
    """``activations``: one figure of the learned activations and potentials of every level and unit."""
    if logger.writer is None:
        return
    figure = activation_figure(network.get_weights(), network.config)
    logger.image("activations", figure_png(figure, dpi=dpi), step)

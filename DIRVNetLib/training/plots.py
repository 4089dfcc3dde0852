"""Figures of a network's learned parts: activation functions phi (the learned penalty derivatives)
and potentials rho = integral of phi (the learned penalties), per level, unit and term; plus image
montages for TensorBoard. Matplotlib (Agg) only; returns figures or PNG bytes."""

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from DIRVNetLib.model.activations import ACTIVATION_FUNCTIONS  # noqa: E402

TERMS = (("data", "data_values", "data_range"), ("reg", "reg_values", "reg_range"))


def activation_curves(values, vrange, activation, points=201, extend=1.25):
    """``(x, phi, rho)``: every filter's activation ``phi[f]`` on ``points`` inputs over
    ``[-extend * vrange, extend * vrange]`` and its potential ``rho[f](x) = integral_0^x phi[f]``
    (trapezoid rule; ``rho(0) = 0``). values: ``[F, knots]``."""
    values = np.asarray(values, np.float32)
    x = np.linspace(-extend * vrange, extend * vrange, points, dtype=np.float32)
    inputs = np.repeat(x[:, np.newaxis], values.shape[0], axis=1)  # [points, F]
    phi = np.asarray(ACTIVATION_FUNCTIONS[activation](inputs, values, float(vrange))).T  # [F, points]
    steps = 0.5 * (phi[:, 1:] + phi[:, :-1]) * np.diff(x)[np.newaxis]
    rho = np.concatenate([np.zeros((phi.shape[0], 1)), np.cumsum(steps, axis=1)], axis=1)
    rho -= rho[:, [points // 2]]  # x[points // 2] == 0 for an odd number of points
    return x, phi, rho


def activation_figure(weights, config, levels=None, title=None):
    """Figure of the activations phi (top row of each level) and potentials rho (bottom row) of every
    unit's data term and regulariser; columns: units x (data, reg). One line per filter (legend); the
    panels of one row and term share their y-scale, so units compare at a glance. ``weights``:
    ``{name: array}``; title: first line of the figure's title (e.g. the weight set's name and checksum).
    """
    levels = list(range(config.levels)) if levels is None else list(levels)
    rows, cols = 2 * len(levels), 2 * config.units
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 1.6 * rows + 0.9), squeeze=False)
    units = {"data": "intensity", "reg": "voxels"}
    for r, level in enumerate(levels):
        for unit in range(config.units):
            for t, (term, key, range_key) in enumerate(TERMS):
                values = weights[f"level{level}/unit{unit}/{key}"]
                x, phi, rho = activation_curves(values, getattr(config, range_key), config.activation)
                for row, curves, what in ((2 * r, phi, "phi"), (2 * r + 1, rho, "rho")):
                    ax = axes[row, 2 * unit + t]
                    if unit:  # one y-scale per row and term
                        ax.sharey(axes[row, t])
                    lines = ax.plot(x, curves.T, linewidth=0.8)
                    for i, line in enumerate(lines):
                        line.set_label(f"filter {i + 1}")
                    ax.axhline(0, color="0.7", linewidth=0.5)
                    ax.tick_params(labelsize=5)
                    if row == 0:
                        ax.set_title(f"unit {unit} {term}", fontsize=7)
                    if row == rows - 1:
                        ax.set_xlabel(f"{term} filter response ({units[term]})", fontsize=6)
                    if unit == 0:
                        ax.set_ylabel(f"level {level} {what}(x)", fontsize=7)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize=5, ncol=min(len(labels), 8), frameon=False)
    heading = f"learned activations phi and potentials rho = integral of phi ({config.activation})"
    fig.suptitle(f"{title}\n{heading}" if title else heading, fontsize=9, x=0.02, ha="left")
    fig.subplots_adjust(
        left=0.6 / (1.9 * cols), right=0.99, bottom=0.35 / rows + 0.03, top=1 - 0.75 / rows, wspace=0.4, hspace=0.45
    )
    return fig


def figure_png(fig, dpi=90):
    """PNG bytes of ``fig`` (closed afterwards)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


def mid_slice(array):
    """A 2D view of a spatial array (``[*S]``): itself in 2D, the middle axial slice in 3D."""
    array = np.asarray(array)
    return array if array.ndim == 2 else array[array.shape[0] // 2]


def to_unit_range(array, symmetric=False, limit=None):
    """``array`` scaled to [0, 1]: min..max, or ``-limit..limit`` around 0.5 when ``symmetric``."""
    array = np.asarray(array, np.float32)
    if symmetric:
        limit = limit or max(float(np.abs(array).max()), 1e-6)
        return np.clip(0.5 + 0.5 * array / limit, 0.0, 1.0)
    lo, hi = float(array.min()), float(array.max())
    return (array - lo) / max(hi - lo, 1e-6)


def montage(tiles, columns, gap=2):
    """One ``[H, W]`` image of equally shaped 2D tiles in rows of ``columns`` (white gaps)."""
    h, w = tiles[0].shape
    rows = -(-len(tiles) // columns)
    out = np.ones((rows * (h + gap) - gap, columns * (w + gap) - gap), np.float32)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = tile
    return out

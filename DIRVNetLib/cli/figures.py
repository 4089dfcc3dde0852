"""QA figure of a registration, in patient orientation as Slicer's slice views show it.

Rows: axial, coronal, sagittal (one axial row for a 2D image), through the region the registration
changed most or a given point; columns: fixed, moving, warped, differences, checkerboard, |u| (mm),
Jacobian determinant. Orientation and conventions: :mod:`DIRVNetLib.io.orientation`.
"""

from dataclasses import replace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from DIRVNetLib.io.atomic import atomic_path  # noqa: E402
from DIRVNetLib.io.orientation import anatomical_slices  # noqa: E402
from DIRVNetLib.metrics import jacobian_determinant, largest_displacement_point  # noqa: E402
from DIRVNetLib.preprocessing import normalise_intensity  # noqa: E402


def checkerboard(a, b, tiles=8):
    """Alternate ``tiles`` x ``tiles`` squares of two equally shaped 2D arrays."""
    rows, cols = np.indices(a.shape)
    mask = ((rows * tiles // a.shape[0]) + (cols * tiles // a.shape[1])) % 2 == 0
    return np.where(mask, a, b)


def _like(array, reference):
    image = sitk.GetImageFromArray(np.asarray(array, dtype=np.float32))
    image.CopyInformation(reference)
    return image


def draw_view(axis, view, cmap, limits, edge_letters=True):
    """Show one :class:`~DIRVNetLib.io.orientation.SliceView` on a matplotlib axis at its physical
    aspect, with the patient direction at each edge; returns the image artist (for a colour bar)."""
    width, height = view.size_mm
    artist = axis.imshow(
        view.array, cmap=cmap, vmin=limits[0], vmax=limits[1], interpolation="nearest", extent=(0, width, height, 0)
    )
    axis.set_facecolor("black")
    axis.set_xticks([])
    axis.set_yticks([])
    if edge_letters:
        style = dict(
            transform=axis.transAxes,
            color="yellow",
            fontsize=7,
            fontweight="bold",
            bbox=dict(facecolor="black", alpha=0.6, pad=0.5, edgecolor="none"),
        )
        for edge, (x, y, ha, va) in {
            "top": (0.5, 0.99, "center", "top"),
            "bottom": (0.5, 0.01, "center", "bottom"),
            "left": (0.01, 0.5, "left", "center"),
            "right": (0.99, 0.5, "right", "center"),
        }.items():
            axis.text(x, y, view.edges[edge], ha=ha, va=va, **style)
    return artist


def write_qa_figure(
    path, fixed, moving_on_fixed, warped, displacement, point=None, convention="radiological", title=None
):
    """PNG written whole to ``path``: rows axial, coronal, sagittal (2D: axial) through ``point`` (LPS mm;
    None: the point of largest smoothed |u|), columns fixed, moving, warped, |fixed - moving|,
    |fixed - warped|, checkerboard fixed/warped, |u| (mm), Jacobian determinant. Images are SimpleITK
    images on the fixed grid; intensities are normalised (1st/99th percentile -> 0/1, "a.u.").
    ``convention``: "radiological" (patient's right on the screen's left, as Slicer) or "neurological".
    ``title``: a first line above the figure's own (convention and slice point)."""
    f, m, w = (normalise_intensity(sitk.GetArrayFromImage(i)) for i in (fixed, moving_on_fixed, warped))
    magnitude = np.linalg.norm(sitk.GetArrayViewFromImage(displacement), axis=-1)
    if point is None:
        point = largest_displacement_point(displacement)
    images = {
        "fixed": f,
        "moving": m,
        "warped": w,
        "|fixed - moving|": np.abs(f - m),
        "|fixed - warped|": np.abs(f - w),
        "|u|": magnitude,
        "Jacobian determinant": jacobian_determinant(displacement, np.float32),
    }
    views = {name: anatomical_slices(_like(array, fixed), point, convention) for name, array in images.items()}
    u_max = max(float(np.nanmax(v.array)) for v in views["|u|"]) or 1.0
    columns = [  # title, image name (None: checkerboard), colour map, limits, colour-bar label
        ("fixed", "fixed", "gray", (0, 1), "intensity (a.u.)"),
        ("moving", "moving", "gray", (0, 1), "intensity (a.u.)"),
        ("warped", "warped", "gray", (0, 1), "intensity (a.u.)"),
        ("|fixed - moving|", "|fixed - moving|", "magma", (0, 0.5), "difference (a.u.)"),
        ("|fixed - warped|", "|fixed - warped|", "magma", (0, 0.5), "difference (a.u.)"),
        ("checkerboard fixed/warped", None, "gray", (0, 1), "intensity (a.u.)"),
        ("displacement |u|", "|u|", "viridis", (0, u_max), "|u| (mm)"),
        ("Jacobian determinant", "Jacobian determinant", "RdBu_r", (0, 2), "det J (1 = volume kept)"),
    ]
    rows = len(views["fixed"])
    figure, axes = plt.subplots(
        rows, len(columns), figsize=(2.3 * len(columns), 2.5 * rows + 0.9), squeeze=False, layout="constrained"
    )
    for r in range(rows):
        for c, (column_title, name, cmap, limits, _) in enumerate(columns):
            if name is None:
                view = replace(views["fixed"][r], array=checkerboard(views["fixed"][r].array, views["warped"][r].array))
            else:
                view = views[name][r]
            artist = draw_view(axes[r, c], view, cmap, limits)
            if r == 0:
                axes[r, c].set_title(column_title, fontsize=8)
            if c == 0:
                axes[r, c].set_ylabel(f"{view.view}\n{view.label}", fontsize=8)
            if r == rows - 1:
                bar = figure.colorbar(artist, ax=axes[:, c], location="bottom", fraction=0.05, shrink=0.9)
                bar.set_label(columns[c][4], fontsize=7)
                bar.ax.tick_params(labelsize=6)
    where = ", ".join(f"{v:.1f}" for v in point)
    figure.suptitle(
        ("" if title is None else title + "\n")
        + f"{convention} convention (patient's {'right' if convention == 'radiological' else 'left'} on "
        f"the screen's left); slices through LPS ({where}) mm",
        fontsize=8,
    )
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100, format="png")
    plt.close(figure)
    return point

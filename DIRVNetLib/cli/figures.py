"""QA figure of a registration: fixed, moving, warped, differences, checkerboard, Jacobian map."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from DIRVNetLib.preprocessing import normalise_intensity  # noqa: E402
from DIRVNetLib.io.atomic import atomic_path  # noqa: E402
from DIRVNetLib.metrics import jacobian_determinant  # noqa: E402

AXIS_NAMES = {0: "axial (k)", 1: "coronal (j)", 2: "sagittal (i)"}


def _slices(array, ndim):
    """Mid-slices along every array axis (one 2D slice for a 2D image)."""
    if ndim == 2:
        return [("2D", array)]
    return [(AXIS_NAMES[a], np.take(array, array.shape[a] // 2, axis=a)) for a in range(3)]


def checkerboard(a, b, tiles=8):
    """Alternate ``tiles`` x ``tiles`` squares of two equally shaped 2D arrays."""
    rows, cols = np.indices(a.shape)
    mask = ((rows * tiles // a.shape[0]) + (cols * tiles // a.shape[1])) % 2 == 0
    return np.where(mask, a, b)


def write_qa_figure(path, fixed, moving_on_fixed, warped, displacement):
    """PNG of mid-slices (rows: axes; columns: fixed, moving, warped, |F - M|, |F - W|, checkerboard
    F/W, Jacobian determinant) written whole to ``path``. Images are SimpleITK images on the fixed grid.
    Slices are shown in array order with the first index at the top (no flipping)."""
    ndim = fixed.GetDimension()
    f, m, w = (normalise_intensity(sitk.GetArrayFromImage(i)) for i in (fixed, moving_on_fixed, warped))
    jac = jacobian_determinant(displacement)
    columns = [
        ("fixed", f, "gray", (0, 1)),
        ("moving", m, "gray", (0, 1)),
        ("warped", w, "gray", (0, 1)),
        ("|fixed - moving|", np.abs(f - m), "magma", (0, 0.5)),
        ("|fixed - warped|", np.abs(f - w), "magma", (0, 0.5)),
        ("checkerboard fixed/warped", None, "gray", (0, 1)),
        ("Jacobian determinant", jac, "RdBu_r", (0, 2)),
    ]
    rows = _slices(f, ndim)
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(2.3 * len(columns), 2.4 * len(rows)), squeeze=False)
    for r, (axis_name, _) in enumerate(rows):
        for c, (title, array, cmap, (lo, hi)) in enumerate(columns):
            if array is None:
                data = checkerboard(_slices(f, ndim)[r][1], _slices(w, ndim)[r][1])
            else:
                data = _slices(array, ndim)[r][1]
            image = axes[r, c].imshow(data, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(title, fontsize=8)
            if c == 0:
                axes[r, c].set_ylabel(axis_name, fontsize=8)
            if title == "Jacobian determinant":
                fig.colorbar(image, ax=axes[r, c], fraction=0.046)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)

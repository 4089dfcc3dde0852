"""QA views in patient orientation: a marker in a known octant shows in the same place of every panel,
whatever the direction matrix (LPS, RAS, permuted, oblique), and the QA figure renders."""

import numpy as np
import pytest
import SimpleITK as sitk

from DIRVNetLib.cli.figures import write_qa_figure
from DIRVNetLib.io.orientation import anatomical_slices, display_grid
from DIRVNetLib.metrics import largest_displacement_point


def rotation(axis, degrees):
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


DIRECTIONS = {
    "LPS": np.eye(3),
    "RAS": np.diag([-1.0, -1.0, 1.0]),
    "LIP (permuted, flipped)": np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]),
    "PSR (permuted)": np.array([[0.0, 0, -1], [1, 0, 0], [0, 1, 0]]),
    "oblique": rotation(2, 20) @ rotation(0, 15) @ rotation(1, -10),
}

SIZE = 41  # voxels per axis, 1.5 mm spacing: a 60 mm cube centred on the origin, a voxel at 15 mm
SPACING = 1.5
MARKER_LPS = np.array([15.0, -15.0, 15.0])  # patient left (L > 0), anterior (P < 0), superior (S > 0)


def volume_with_marker(direction):
    """A cube centred on the LPS origin with ``direction``, dim background and a bright ball at the
    left-anterior-superior point ``MARKER_LPS``."""
    image = sitk.Image([SIZE] * 3, sitk.sitkFloat32)
    image.SetSpacing([SPACING] * 3)
    image.SetDirection(direction.ravel().tolist())
    centre_index = np.array([(SIZE - 1) / 2.0] * 3)
    image.SetOrigin((-(direction * SPACING) @ centre_index).tolist())
    index = np.indices([SIZE] * 3)[::-1].reshape(3, -1).T  # (x, y, z) index of every voxel, numpy order
    points = (direction * SPACING) @ index.T + np.array(image.GetOrigin())[:, None]
    bright = np.linalg.norm(points.T - MARKER_LPS, axis=1) < 6.0
    values = np.where(bright, 100.0, 10.0).reshape([SIZE] * 3).astype(np.float32)
    marked = sitk.GetImageFromArray(values)
    marked.CopyInformation(image)
    return marked


def marker_position(view):
    """Where the marker lies in a view: (row, column) of its centroid as fractions of the panel's
    height and width (0 = top / left)."""
    array = np.nan_to_num(view.array)
    rows, cols = np.nonzero(array > 55.0)
    assert rows.size, f"no marker in the {view.view} view"
    return np.array([(rows.mean() + 0.5) / array.shape[0], (cols.mean() + 0.5) / array.shape[1]])


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_marker_in_the_same_place_of_every_panel(name):
    views = anatomical_slices(volume_with_marker(DIRECTIONS[name]), point=MARKER_LPS)
    assert [v.view for v in views] == ["axial", "coronal", "sagittal"]
    where = {v.view: marker_position(v) for v in views}
    # axial: anterior at the top, the patient's left on the screen's right (radiological)
    assert where["axial"][0] < 0.45 and where["axial"][1] > 0.55
    # coronal: superior at the top, left on the right
    assert where["coronal"][0] < 0.45 and where["coronal"][1] > 0.55
    # sagittal: superior at the top, anterior on the left
    assert where["sagittal"][0] < 0.45 and where["sagittal"][1] < 0.45
    if name != "oblique":  # the oblique grid covers the rotated cube's corners: see the test below
        reference = {v.view: marker_position(v) for v in anatomical_slices(volume_with_marker(np.eye(3)), MARKER_LPS)}
        for view in where:
            np.testing.assert_allclose(where[view], reference[view], atol=0.03)
        assert {v.view: v.label for v in views} == {
            "axial": "S 15.0 mm",
            "coronal": "A 15.0 mm",
            "sagittal": "L 15.0 mm",
        }
    assert views[0].edges == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
    assert views[1].edges == {"top": "S", "bottom": "I", "left": "R", "right": "L"}
    assert views[2].edges == {"top": "S", "bottom": "I", "left": "A", "right": "P"}


def test_oblique_views_are_centred_like_the_straight_ones():
    """Panels of the oblique volume cover a larger box, so compare positions in mm from the centre."""
    for view in anatomical_slices(volume_with_marker(DIRECTIONS["oblique"]), MARKER_LPS):
        row, col = marker_position(view)
        width, height = view.size_mm
        offset = np.array([(col - 0.5) * width, (0.5 - row) * height])  # mm right of and above the centre
        expected = {"axial": (15, 15), "coronal": (15, 15), "sagittal": (-15, 15)}[view.view]
        # the oblique grid's centre is the rotated cube's centre (the origin) within half a voxel
        np.testing.assert_allclose(offset, expected, atol=2.0)
        assert view.position_mm == pytest.approx({"axial": 15, "coronal": -15, "sagittal": 15}[view.view], abs=1.0)


def test_neurological_convention_mirrors_left_and_right():
    image = volume_with_marker(DIRECTIONS["RAS"])
    radiological = anatomical_slices(image, MARKER_LPS)
    neurological = anatomical_slices(image, MARKER_LPS, convention="neurological")
    for r, n in zip(radiological, neurological):
        if r.view == "sagittal":
            np.testing.assert_array_equal(r.array, n.array)
            assert r.edges == n.edges
        else:
            np.testing.assert_array_equal(r.array[:, ::-1], n.array)
            assert (n.edges["left"], n.edges["right"]) == ("L", "R")
    with pytest.raises(ValueError, match="convention"):
        anatomical_slices(image, convention="left")


def test_permuted_directions_are_shown_exactly():
    reference = anatomical_slices(volume_with_marker(np.eye(3)), MARKER_LPS)
    for name in ("RAS", "LIP (permuted, flipped)", "PSR (permuted)"):
        image = volume_with_marker(DIRECTIONS[name])
        grid, exact = display_grid(image)
        assert exact and grid.GetDirection() == tuple(np.eye(3).ravel())
        np.testing.assert_allclose(grid.GetOrigin(), [-30.0] * 3, atol=1e-9)
        for view, expected in zip(anatomical_slices(image, MARKER_LPS), reference):
            np.testing.assert_array_equal(view.array, expected.array)  # the same voxels, no interpolation
    assert not display_grid(volume_with_marker(DIRECTIONS["oblique"]))[1]


def test_2d_image_is_one_axial_view():
    array = np.full((30, 40), 10.0, np.float32)
    array[2:6, 30:36] = 100.0
    image = sitk.GetImageFromArray(array)
    # RAS axes: the image spans x -39..0, y -29..0 mm; the marker (x -35..-30, y -5..-2) is at its right
    # (most negative x) and posterior (largest y) side
    image.SetDirection((-1.0, 0.0, 0.0, -1.0))
    (view,) = anatomical_slices(image)
    assert view.view == "axial" and view.position_mm is None
    row, col = marker_position(view)
    assert row > 0.55 and col < 0.45  # posterior at the bottom, the patient's right on the screen's left


def test_largest_displacement_point_finds_the_moved_region():
    field = np.zeros((24, 24, 24, 3), np.float32)
    field[4:10, 14:20, 2:8] = (3.0, 0.0, 0.0)  # x 2-7, y 14-19, z 4-9 (index)
    displacement = sitk.GetImageFromArray(field, isVector=True)
    displacement.SetSpacing((2.0, 2.0, 2.0))
    point = largest_displacement_point(displacement, smoothing_mm=2.0)
    np.testing.assert_allclose(point, (9.0, 33.0, 13.0), atol=2.1)


@pytest.mark.parametrize("dimension", [2, 3])
def test_qa_figure_renders(tmp_path, dimension):
    if dimension == 3:
        fixed = volume_with_marker(DIRECTIONS["oblique"])
    else:
        fixed = sitk.GetImageFromArray(np.random.default_rng(0).uniform(0, 1, (32, 36)).astype(np.float32))
    field = np.zeros(tuple(reversed(fixed.GetSize())) + (dimension,), np.float32)
    field[..., 0] = 1.0
    displacement = sitk.GetImageFromArray(field, isVector=True)
    displacement.CopyInformation(fixed)
    path = tmp_path / "qa.png"
    point = write_qa_figure(path, fixed, fixed, fixed, displacement)
    assert len(point) == dimension
    figure = sitk.ReadImage(str(path))
    assert figure.GetSize()[0] > 1000 and figure.GetSize()[1] > (600 if dimension == 3 else 250)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qa.png"]

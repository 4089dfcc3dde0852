"""Point files (Slicer markups JSON, fcsv, CSV) and point pairs, in LPS mm."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from test_metrics import POINTS_LPS, write_fcsv, write_mrk_json

from DIRVNetLib.errors import PointsError
from DIRVNetLib.io.points import point_pairs, read_points


def test_read_points_formats_agree(tmp_path):
    ras = POINTS_LPS * np.array([-1.0, -1.0, 1.0])
    files = [
        write_mrk_json(tmp_path / "a.mrk.json", POINTS_LPS, "LPS"),
        write_mrk_json(tmp_path / "b.mrk.json", ras, "RAS"),
        write_fcsv(tmp_path / "c.fcsv", ras, "RAS"),
        write_fcsv(tmp_path / "d.fcsv", ras, "0"),
        write_fcsv(tmp_path / "e.fcsv", POINTS_LPS, "LPS"),
        write_fcsv(tmp_path / "f.fcsv", POINTS_LPS, "1"),
    ]
    (tmp_path / "g.csv").write_text("\n".join(",".join(map(str, p)) for p in POINTS_LPS))
    (tmp_path / "h.csv").write_text(
        "label,x,y,z\n" + "\n".join(f"P{i},{p[0]},{p[1]},{p[2]}" for i, p in enumerate(POINTS_LPS))
    )
    files += [tmp_path / "g.csv", tmp_path / "h.csv"]
    for path in files:
        points = read_points(path)
        assert points.shape == (4, 3), path
        np.testing.assert_allclose(points, POINTS_LPS, err_msg=str(path))


def test_read_points_2d(tmp_path):
    (tmp_path / "p.csv").write_text("x,y\n1.5,2.5\n-3,4\n")
    np.testing.assert_allclose(read_points(tmp_path / "p.csv"), [[1.5, 2.5], [-3, 4]])
    flat = write_mrk_json(tmp_path / "flat.mrk.json", [[1.0, 2.0, 0.0], [3.0, 4.0, 0.0]], "LPS")
    np.testing.assert_allclose(read_points(flat, dimension=2), [[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="dimension mismatch"):
        read_points(write_mrk_json(tmp_path / "3d.mrk.json", POINTS_LPS, "LPS"), dimension=2)


def test_read_points_errors_name_the_file(tmp_path):
    bad = tmp_path / "broken.mrk.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="broken.mrk.json"):
        read_points(bad)
    with pytest.raises(ValueError, match="missing.fcsv"):
        read_points(tmp_path / "missing.fcsv")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("1,2,3\n4,5\n")
    with pytest.raises(ValueError, match="ragged.csv"):
        read_points(ragged)
    (tmp_path / "points.xyz").write_text("1 2 3\n")
    with pytest.raises(ValueError, match="points.xyz"):
        read_points(tmp_path / "points.xyz")


@pytest.mark.parametrize(
    "storage_class, suffix",
    [("vtkMRMLMarkupsJsonStorageNode", ".mrk.json"), ("vtkMRMLMarkupsFiducialStorageNode", ".fcsv")],
)
@pytest.mark.parametrize("system", ["LPS", "RAS"])
def test_files_written_by_slicer_read_back_in_lps(tmp_path, storage_class, suffix, system):
    """Slicer's own storage nodes (slicer-core) write the files; points are placed in RAS, as Slicer holds them."""
    slicer = pytest.importorskip("slicer")
    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "F")
    for p in POINTS_LPS:
        node.AddControlPoint(float(-p[0]), float(-p[1]), float(p[2]))
    storage = scene.AddNode(getattr(slicer, storage_class)())  # a bare scene has not registered the class
    storage.SetCoordinateSystem(getattr(storage, f"CoordinateSystem{system}"))
    path = tmp_path / f"points{suffix}"
    storage.SetFileName(str(path))
    assert storage.WriteData(node)
    text = path.read_text()
    assert system in text
    np.testing.assert_allclose(read_points(path), POINTS_LPS, atol=1e-6)


def test_micrometre_markups_are_converted_to_mm(tmp_path):
    path = write_mrk_json(tmp_path / "um.mrk.json", POINTS_LPS * 1000.0, "LPS")
    document = json.loads(path.read_text())
    document["markups"][0]["coordinateUnits"] = "um"
    path.write_text(json.dumps(document))
    np.testing.assert_allclose(read_points(path), POINTS_LPS)
    document["markups"][0]["coordinateUnits"] = "inch"
    path.write_text(json.dumps(document))
    with pytest.raises(PointsError, match="um.mrk.json.*coordinateUnits"):
        read_points(path)


def test_undefined_control_point_is_an_error(tmp_path):
    path = write_mrk_json(tmp_path / "u.mrk.json", POINTS_LPS, "LPS")
    document = json.loads(path.read_text())
    document["markups"][0]["controlPoints"][1]["positionStatus"] = "undefined"
    path.write_text(json.dumps(document))
    with pytest.raises(PointsError, match="u.mrk.json: control point 1 .*no defined position"):
        read_points(path)


def fixed_image():
    image = sitk.Image([40, 40, 40], sitk.sitkFloat32)
    image.SetOrigin((-30.0, 0.0, -10.0))
    image.SetSpacing((1.5, 1.5, 1.5))
    return image


def test_point_pairs_from_files_and_arrays(tmp_path):
    fixed = POINTS_LPS + np.array([0.0, 0.0, 10.0])
    moving = fixed + 2.0
    fixed_file = write_fcsv(tmp_path / "fixed.fcsv", fixed * [-1, -1, 1], "RAS")
    got_fixed, got_moving = point_pairs(fixed_file, moving, fixed_image())
    np.testing.assert_allclose(got_fixed, fixed)
    np.testing.assert_allclose(got_moving, moving)


def test_point_pair_errors_name_the_problem(tmp_path):
    image = fixed_image()
    fixed = POINTS_LPS + np.array([0.0, 0.0, 10.0])
    short = write_mrk_json(tmp_path / "short.mrk.json", fixed[:3], "LPS")
    with pytest.raises(PointsError, match="unpaired points: fixed points holds 4 points but .*short.mrk.json holds 3"):
        point_pairs(fixed, short, image)
    with pytest.raises(PointsError, match="moving points holds 2D points but the images are 3D"):
        point_pairs(fixed, fixed[:, :2], image)
    outside = fixed.copy()
    outside[2] = [100.0, 20.0, 10.0]
    with pytest.raises(
        PointsError, match=r"fixed point 3 of fixed points at LPS \(100.0, 20.0, 10.0\) mm lies outside"
    ):
        point_pairs(outside, fixed, image)
    with pytest.raises(PointsError, match="non-empty"):
        point_pairs(np.zeros((0, 3)), np.zeros((0, 3)), image)
    with pytest.raises(PointsError, match="points.xyz: unknown point file format"):
        (tmp_path / "points.xyz").write_text("1 2 3\n")
        point_pairs(tmp_path / "points.xyz", fixed, image)

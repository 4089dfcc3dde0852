"""Landmarks: reading point files (returned in LPS mm) and target registration error.

Supported files:
  ``.mrk.json`` / ``.json``: Slicer markups; ``coordinateSystem`` "LPS" or "RAS" (default "LPS",
      as Slicer writes), points from ``markups[].controlPoints[].position`` of every markup, in order.
  ``.fcsv``: Slicer fiducial CSV; header comment ``# CoordinateSystem = RAS|LPS|0|1`` (0 = RAS,
      1 = LPS as in old files; RAS when absent), columns from ``# columns =`` (default id,x,y,z,...).
  ``.csv`` / ``.txt``: plain comma-separated x,y[,z] per row in LPS mm, optional header row; with a
      header, columns named x, y, z are used and other columns ignored.
RAS -> LPS negates x and y.
"""

import csv
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .labels import displacement_transform

_RAS_TO_LPS = np.array([-1.0, -1.0, 1.0])


def _coordinate_system(value, path) -> str:
    text = str(value).strip().upper()
    mapping = {"RAS": "RAS", "0": "RAS", "LPS": "LPS", "1": "LPS"}
    if text not in mapping:
        raise ValueError(f"{path}: unsupported coordinate system {value!r} (expected RAS or LPS)")
    return mapping[text]


def _read_markups_json(path: Path) -> np.ndarray:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable markups JSON file ({exc})") from exc
    markups = document.get("markups") if isinstance(document, dict) else None
    if not isinstance(markups, list) or not markups:
        raise ValueError(f"{path}: no 'markups' list in the markups JSON file")
    points = []
    for markup in markups:
        system = _coordinate_system(markup.get("coordinateSystem", "LPS"), path)
        for k, point in enumerate(markup.get("controlPoints", [])):
            position = point.get("position")
            if position is None or point.get("positionStatus", "defined") != "defined":
                raise ValueError(f"{path}: control point {k} ({point.get('label', '')!r}) has "
                                 f"no defined position")
            xyz = np.asarray(position, dtype=np.float64)
            if xyz.shape != (3,):
                raise ValueError(f"{path}: control point {k} position {position} is not 3D")
            points.append(xyz * _RAS_TO_LPS if system == "RAS" else xyz)
    return np.array(points, dtype=np.float64).reshape(-1, 3)


def _read_fcsv(path: Path) -> np.ndarray:
    system, columns, rows = "RAS", None, []
    with open(path, newline="", encoding="utf-8") as handle:
        for line in handle:
            stripped = line.strip()
            if not stripped:
                continue
            if stripped.startswith("#"):
                key, _, value = stripped.lstrip("#").partition("=")
                key = key.strip().lower()
                if key == "coordinatesystem":
                    system = _coordinate_system(value, path)
                elif key == "columns":
                    columns = [c.strip().lower() for c in value.split(",")]
                continue
            rows.append(next(csv.reader([stripped])))
    try:
        ix = [columns.index(c) for c in ("x", "y", "z")] if columns else [1, 2, 3]
    except ValueError:
        raise ValueError(f"{path}: the '# columns =' header has no x, y, z columns") from None
    points = []
    for n, row in enumerate(rows):
        try:
            points.append([float(row[i]) for i in ix])
        except (IndexError, ValueError):
            raise ValueError(f"{path}: point row {n + 1} has no numeric x, y, z: {row}") from None
    points = np.array(points, dtype=np.float64).reshape(-1, 3)
    return points * _RAS_TO_LPS if system == "RAS" else points


def _read_plain_csv(path: Path) -> np.ndarray:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.reader(handle) if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{path}: no points in the CSV file")
    ix = None
    try:
        [float(c) for c in rows[0]]
    except ValueError:  # a header row
        header = [c.strip().lower() for c in rows.pop(0)]
        if "x" not in header or "y" not in header:
            raise ValueError(f"{path}: the CSV header {header} must name columns x, y[, z]") from None
        ix = [header.index(h) for h in ("x", "y", "z") if h in header]
    points = []
    for n, row in enumerate(rows):
        try:
            values = [float(row[i]) for i in ix] if ix else [float(c) for c in row]
        except (IndexError, ValueError):
            raise ValueError(f"{path}: row {n + 1} is not numeric x, y[, z]: {row}") from None
        points.append(values)
    widths = {len(p) for p in points}
    if len(widths) != 1 or widths.pop() not in (2, 3):
        raise ValueError(f"{path}: every row must hold 2 (x, y) or 3 (x, y, z) coordinates")
    return np.array(points, dtype=np.float64)


def read_landmarks(path, dimension=None) -> np.ndarray:
    """Points of a landmark file as an (N, dim) float64 array in LPS millimetres.

    The format follows the suffix (see the module docstring). ``dimension=2`` keeps x, y of 3D
    points whose z is the same for all (a 2D image placed in 3D); None keeps the file's columns.
    Raises ValueError naming the file when it is missing, unreadable or holds no points.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: landmark file not found")
    name = path.name.lower()
    if name.endswith(".json"):
        points = _read_markups_json(path)
    elif name.endswith(".fcsv"):
        points = _read_fcsv(path)
    elif name.endswith((".csv", ".txt")):
        points = _read_plain_csv(path)
    else:
        raise ValueError(f"{path}: unknown landmark format (expected .mrk.json, .fcsv or .csv)")
    if points.shape[0] == 0:
        raise ValueError(f"{path}: the file holds no points")
    if dimension is not None and int(dimension) != points.shape[1]:
        if int(dimension) == 2 and points.shape[1] == 3 and np.ptp(points[:, 2]) <= 1e-6:
            points = points[:, :2].copy()
        else:
            raise ValueError(f"{path}: dimension mismatch: the file holds {points.shape[1]}D "
                             f"points, {dimension}D requested")
    return points


def _as_points(points, name):
    if isinstance(points, (str, Path)):
        return read_landmarks(points), str(points)
    arr = np.array(points, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"{name} must be an (N, dim) array of points, got shape {arr.shape}")
    return arr, name


def target_registration_error(fixed_points, moving_points, transform_or_displacement) -> dict:
    """Target registration error (mm) of corresponding landmarks.

    Each fixed point p (LPS mm) is mapped to p + u(p) and compared with its moving point:
    TRE_i = |p_i + u(p_i) - q_i|. ``transform_or_displacement``: a displacement field on the
    fixed grid (SimpleITK vector image; linearly interpolated, zero outside its grid) or any
    SimpleITK transform mapping fixed to moving points. Points are (N, dim) arrays or landmark
    file paths. Returns ``tre_mean_mm``, ``tre_median_mm``, ``tre_max_mm``, ``tre_std_mm``,
    ``tre_before_mean_mm`` (|p_i - q_i|, no registration), ``tre_before_median_mm``,
    ``tre_before_max_mm``, ``n_points`` and ``tre_per_point_mm`` (list).
    """
    fixed, fixed_name = _as_points(fixed_points, "fixed_points")
    moving, moving_name = _as_points(moving_points, "moving_points")
    if fixed.shape != moving.shape:
        raise ValueError(f"landmark mismatch: {fixed_name} holds {fixed.shape[0]} points of "
                         f"dimension {fixed.shape[1]}, {moving_name} holds {moving.shape[0]} of "
                         f"dimension {moving.shape[1]}")
    if isinstance(transform_or_displacement, sitk.Image):
        transform = displacement_transform(transform_or_displacement)
    elif isinstance(transform_or_displacement, sitk.Transform):
        transform = transform_or_displacement
    else:
        raise TypeError("transform_or_displacement must be a SimpleITK displacement image or "
                        f"transform, got {type(transform_or_displacement).__name__}")
    dim = transform.GetDimension()
    if fixed.shape[1] != dim:
        raise ValueError(f"dimension mismatch: {fixed_name} holds {fixed.shape[1]}D points but "
                         f"the transform is {dim}D (read_landmarks(path, dimension=2) drops a "
                         f"constant z)")
    mapped = np.array([transform.TransformPoint(tuple(map(float, p))) for p in fixed])
    after = np.linalg.norm(mapped - moving, axis=1)
    before = np.linalg.norm(fixed - moving, axis=1)
    return {
        "tre_mean_mm": float(after.mean()),
        "tre_median_mm": float(np.median(after)),
        "tre_max_mm": float(after.max()),
        "tre_std_mm": float(after.std()),
        "tre_before_mean_mm": float(before.mean()),
        "tre_before_median_mm": float(np.median(before)),
        "tre_before_max_mm": float(before.max()),
        "n_points": int(fixed.shape[0]),
        "tre_per_point_mm": [float(v) for v in after],
    }

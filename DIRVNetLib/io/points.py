"""Point files and point pairs, in LPS millimetres.

Supported files:
  ``.mrk.json`` / ``.json``: Slicer markups (schema markups-schema-v1.0.x); ``coordinateSystem`` "LPS" or
      "RAS" (default "LPS", as Slicer writes), ``coordinateUnits`` "mm" (default) or "um"; points from
      ``markups[].controlPoints[].position`` of every markup, in order.
  ``.fcsv``: Slicer fiducial CSV; header comment ``# CoordinateSystem = RAS|LPS|0|1`` (0 = RAS,
      1 = LPS as in old files; RAS when absent), columns from ``# columns =`` (default id,x,y,z,...).
  ``.csv`` / ``.txt``: plain comma-separated x,y[,z] per row in LPS mm, optional header row; with a
      header, columns named x, y, z are used and other columns ignored.
RAS -> LPS negates x and y.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from DIRVNetLib.errors import PointsError

_RAS_TO_LPS = np.array([-1.0, -1.0, 1.0])
_UNITS_TO_MM = {"mm": 1.0, "um": 1e-3}


def _coordinate_system(value: object, path: Path) -> str:
    text = str(value).strip().upper()
    mapping = {"RAS": "RAS", "0": "RAS", "LPS": "LPS", "1": "LPS"}
    if text not in mapping:
        raise PointsError(f"{path}: unsupported coordinate system {value!r} (expected RAS or LPS)")
    return mapping[text]


def _read_markups_json(path: Path) -> np.ndarray:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PointsError(f"{path}: not a readable markups JSON file ({exc})") from exc
    markups = document.get("markups") if isinstance(document, dict) else None
    if not isinstance(markups, list) or not markups:
        raise PointsError(f"{path}: no 'markups' list in the markups JSON file")
    points = []
    for markup in markups:
        system = _coordinate_system(markup.get("coordinateSystem", "LPS"), path)
        units = markup.get("coordinateUnits", "mm")
        units = units[0] if isinstance(units, list) and units else units
        if units not in _UNITS_TO_MM:
            raise PointsError(f"{path}: unsupported coordinateUnits {units!r} (expected mm or um)")
        for k, point in enumerate(markup.get("controlPoints", [])):
            position = point.get("position")
            if position is None or point.get("positionStatus", "defined") != "defined":
                raise PointsError(f"{path}: control point {k} ({point.get('label', '')!r}) has no defined position")
            xyz = np.asarray(position, dtype=np.float64)
            if xyz.shape != (3,):
                raise PointsError(f"{path}: control point {k} position {position} is not 3D")
            xyz = xyz * _UNITS_TO_MM[units]
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
        raise PointsError(f"{path}: the '# columns =' header has no x, y, z columns") from None
    rows_read = []
    for n, row in enumerate(rows):
        try:
            rows_read.append([float(row[i]) for i in ix])
        except (IndexError, ValueError):
            raise PointsError(f"{path}: point row {n + 1} has no numeric x, y, z: {row}") from None
    points = np.array(rows_read, dtype=np.float64).reshape(-1, 3)
    return points * _RAS_TO_LPS if system == "RAS" else points


def _read_plain_csv(path: Path) -> np.ndarray:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.reader(handle) if r and any(c.strip() for c in r)]
    if not rows:
        raise PointsError(f"{path}: no points in the CSV file")
    ix = None
    try:
        [float(c) for c in rows[0]]
    except ValueError:  # a header row
        header = [c.strip().lower() for c in rows.pop(0)]
        if "x" not in header or "y" not in header:
            raise PointsError(f"{path}: the CSV header {header} must name columns x, y[, z]") from None
        ix = [header.index(h) for h in ("x", "y", "z") if h in header]
    points = []
    for n, row in enumerate(rows):
        try:
            values = [float(row[i]) for i in ix] if ix else [float(c) for c in row]
        except (IndexError, ValueError):
            raise PointsError(f"{path}: row {n + 1} is not numeric x, y[, z]: {row}") from None
        points.append(values)
    widths = {len(p) for p in points}
    if len(widths) != 1 or widths.pop() not in (2, 3):
        raise PointsError(f"{path}: every row must hold 2 (x, y) or 3 (x, y, z) coordinates")
    return np.array(points, dtype=np.float64)


def read_points(path: str | os.PathLike[str], dimension: int | None = None) -> np.ndarray:
    """Points of a landmark file as an (N, dim) float64 array in LPS millimetres.

    The format follows the suffix (see the module docstring). ``dimension=2`` keeps x, y of 3D
    points whose z is the same for all (a 2D image placed in 3D); None keeps the file's columns.
    Raises :class:`~DIRVNetLib.errors.PointsError` naming the file when it is missing, unreadable, of
    an unknown format or holds no points.
    """
    path = Path(path)
    if not path.is_file():
        raise PointsError(f"{path}: point file not found")
    name = path.name.lower()
    if name.endswith(".json"):
        points = _read_markups_json(path)
    elif name.endswith(".fcsv"):
        points = _read_fcsv(path)
    elif name.endswith((".csv", ".txt")):
        points = _read_plain_csv(path)
    else:
        raise PointsError(f"{path}: unknown point file format (expected .mrk.json, .fcsv or .csv)")
    if points.shape[0] == 0:
        raise PointsError(f"{path}: the file holds no points")
    if dimension is not None and int(dimension) != points.shape[1]:
        if int(dimension) == 2 and points.shape[1] == 3 and np.ptp(points[:, 2]) <= 1e-6:
            points = points[:, :2].copy()
        else:
            raise PointsError(
                f"{path}: dimension mismatch: the file holds {points.shape[1]}D points, {dimension}D requested"
            )
    return points


def as_points(points: str | Path | npt.ArrayLike, name: str, dimension: int | None = None) -> np.ndarray:
    """``points`` (a point file path or an (N, dimension) array-like, LPS mm) as a float64 array;
    ``name`` names them in errors."""
    if isinstance(points, (str, Path)):
        return read_points(points, dimension)
    array = np.array(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0 or not np.all(np.isfinite(array)):
        raise PointsError(
            f"{name} must be a non-empty (N, {dimension or 'dim'}) array of finite LPS mm "
            f"coordinates, got shape {array.shape}"
        )
    if dimension is not None and array.shape[1] != dimension:
        raise PointsError(f"{name} holds {array.shape[1]}D points but the images are {dimension}D")
    return array


def point_pairs(
    fixed_points: str | Path | npt.ArrayLike,
    moving_points: str | Path | npt.ArrayLike,
    fixed_image: sitk.Image,
) -> tuple[np.ndarray, np.ndarray]:
    """Checked corresponding points ``(fixed (N, dim), moving (N, dim))`` in LPS mm: paths or arrays.

    Every fixed point p_i pairs with moving point q_i (the registration should map p_i to q_i).
    Raises :class:`~DIRVNetLib.errors.PointsError` when the counts or dimensions differ from each
    other or from ``fixed_image``, or a fixed point lies outside the fixed image (first such point
    named)."""
    names = [
        str(p) if isinstance(p, (str, Path)) else role
        for p, role in ((fixed_points, "fixed points"), (moving_points, "moving points"))
    ]
    dimension = fixed_image.GetDimension()
    fixed = as_points(fixed_points, names[0], dimension)
    moving = as_points(moving_points, names[1], dimension)
    if fixed.shape[0] != moving.shape[0]:
        raise PointsError(
            f"unpaired points: {names[0]} holds {fixed.shape[0]} points but {names[1]} holds "
            f"{moving.shape[0]}; give one moving point per fixed point, in the same order"
        )
    size = np.array(fixed_image.GetSize())
    for i, p in enumerate(fixed):
        index = np.array(fixed_image.TransformPhysicalPointToContinuousIndex(p.tolist()))
        if np.any(index < -0.5) or np.any(index > size - 0.5):
            raise PointsError(
                f"fixed point {i + 1} of {names[0]} at LPS ({', '.join(f'{v:.1f}' for v in p)}) mm "
                f"lies outside the fixed image"
            )
    return fixed, moving

"""Slicer volume and transform nodes <-> SimpleITK images and numpy arrays.

Coordinate frames: Slicer keeps geometry in RAS (a volume node's IJK-to-RAS matrix, transforms
between RAS points); SimpleITK, ITK files and DIRVNetLib use LPS. A point or a vector (x, y, z) in
RAS is (-x, -y, z) in LPS and back: both conversions multiply by ``RAS_TO_LPS = diag(-1, -1, 1)``.

Array order: numpy arrays are [k, j, i] (= SimpleITK [z, y, x]) with i varying fastest, which is
also the memory order of a vtkImageData; vector arrays carry the components last.

Single-slice volumes whose slice lies in an axial plane (i and j axes in the x-y plane, k along z)
are handed to DIRVNetLib as 2D images, as a 2D weight set expects.

Grids: a volume's grid is a :class:`DIRVNetLib.grid.Grid` (3D, LPS, as SimpleITK holds it); the
functions below convert it to and from Slicer's IJK-to-RAS matrix.
"""

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from vtk.util import numpy_support

from DIRVNetLib.errors import InputImageError
from DIRVNetLib.grid import Grid

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
"""Multiplies a RAS point or vector into LPS, and an LPS one into RAS (the matrix is its own inverse)."""

_AXIAL_TOLERANCE = 1e-6


def grid_from_ijk_to_ras(ijk_to_ras: np.ndarray, size: Sequence[int]) -> Grid:
    """The :class:`~DIRVNetLib.grid.Grid` (LPS) of a voxel grid given in world RAS: ``ijk_to_ras`` (4x4,
    mm) and ``size`` (i, j, k) in voxels."""
    spacing = np.linalg.norm(ijk_to_ras[:3, :3], axis=0)
    direction = RAS_TO_LPS @ ijk_to_ras[:3, :3] / spacing
    origin = RAS_TO_LPS @ ijk_to_ras[:3, 3]
    return Grid(
        tuple(int(n) for n in size),
        tuple(spacing.tolist()),
        tuple(origin.tolist()),
        tuple(direction.ravel().tolist()),
    )


def ras_direction(grid: Grid) -> np.ndarray:
    """The grid's direction in RAS: 3x3, columns = the i, j, k axes."""
    return RAS_TO_LPS @ np.array(grid.direction).reshape(3, 3)


def ras_origin(grid: Grid) -> np.ndarray:
    """The grid's origin (the centre of voxel 0, 0, 0) in RAS mm."""
    return RAS_TO_LPS @ np.array(grid.origin)


def ijk_to_ras(grid: Grid) -> np.ndarray:
    """The grid's IJK-to-RAS matrix (4x4, mm), as a volume node holds it."""
    matrix = np.eye(4)
    matrix[:3, :3] = ras_direction(grid) * np.array(grid.spacing)
    matrix[:3, 3] = ras_origin(grid)
    return matrix


def is_axial_slice(grid: Grid) -> bool:
    """True for a single slice whose i and j axes lie in the x-y plane (k along z): a 2D image."""
    direction = np.array(grid.direction).reshape(3, 3)
    return (
        grid.size[2] == 1
        and np.allclose(direction[2, :2], 0.0, atol=_AXIAL_TOLERANCE)
        and np.allclose(direction[:2, 2], 0.0, atol=_AXIAL_TOLERANCE)
    )


def image_grid(grid: Grid) -> Grid:
    """The grid of the SimpleITK image DIRVNetLib gets for a volume on ``grid``: the 2D grid of its
    slice for an axial single slice (:func:`is_axial_slice`), else ``grid`` itself."""
    if not is_axial_slice(grid):
        return grid
    direction = grid.direction
    return Grid(
        grid.size[:2], grid.spacing[:2], grid.origin[:2], (direction[0], direction[1], direction[3], direction[4])
    )


def matrix_to_numpy(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    """A vtkMatrix4x4 as a 4x4 float64 array."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def numpy_to_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    """A 4x4 (or 3x3, embedded in identity) array as a vtkMatrix4x4."""
    matrix = vtk.vtkMatrix4x4()
    n = array.shape[0]
    for r in range(n):
        for c in range(n):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def volume_grid(volumeNode) -> Grid:
    """The node's own grid (its IJK-to-RAS matrix and dimensions), ignoring parent transforms."""
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return grid_from_ijk_to_ras(matrix_to_numpy(matrix), volumeNode.GetImageData().GetDimensions())


_OWN_PARENT = object()


def world_volume_copy(volumeNode, parent=_OWN_PARENT):
    """A new scalar volume node, outside any scene, with the node's voxels in world coordinates.

    The voxels are deep-copied and the node's parent transforms (or those of ``parent`` and above it,
    None = no transform) are hardened into the copy: a linear transform only changes the copy's
    IJK-to-RAS matrix; a non-linear one resamples the copy's voxels on the node's own grid. The input
    node is not modified.
    """
    copy = slicer.vtkMRMLScalarVolumeNode()
    copy.SetName(volumeNode.GetName())
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    copy.SetIJKToRASMatrix(matrix)
    voxels = vtk.vtkImageData()
    voxels.DeepCopy(volumeNode.GetImageData())
    copy.SetAndObserveImageData(voxels)
    if parent is _OWN_PARENT:
        parent = volumeNode.GetParentTransformNode()
    if parent is None:
        return copy
    if parent.IsTransformToWorldLinear():
        toWorld = vtk.vtkMatrix4x4()
        parent.GetMatrixTransformToWorld(toWorld)
        copy.SetIJKToRASMatrix(numpy_to_matrix(matrix_to_numpy(toWorld) @ matrix_to_numpy(matrix)))
    else:
        toWorld = vtk.vtkGeneralTransform()
        parent.GetTransformToWorld(toWorld)
        copy.ApplyTransform(toWorld)
    return copy


def volume_array(volumeNode) -> np.ndarray:
    """The node's voxels as a numpy array [k, j, i] (a copy; scalar volumes only)."""
    imageData = volumeNode.GetImageData()
    scalars = imageData.GetPointData().GetScalars()
    if scalars.GetNumberOfComponents() != 1:
        raise InputImageError(
            f"volume '{volumeNode.GetName()}' has {scalars.GetNumberOfComponents()} components per "
            f"voxel; DIRVNet registers scalar volumes only"
        )
    dims = imageData.GetDimensions()
    return numpy_support.vtk_to_numpy(scalars).reshape(dims[::-1]).copy()


def array_to_image(array: np.ndarray, grid: Grid) -> sitk.Image:
    """A scalar array [k, j, i] on ``grid`` as a SimpleITK image in LPS (2D for an axial slice)."""
    return image_grid(grid).place(sitk.GetImageFromArray(array[0] if is_axial_slice(grid) else array))


def volume_to_image(volumeNode, parent=_OWN_PARENT):
    """(image, grid): the node's voxels in world space as a SimpleITK image in LPS mm, and its grid.

    Parent transforms (or ``parent`` instead of the node's own) are applied as in :func:`world_volume_copy`;
    the node is not modified.
    """
    world = world_volume_copy(volumeNode, parent)
    grid = volume_grid(world)
    return array_to_image(volume_array(world), grid), grid


def image_array_on_grid(image: sitk.Image, grid: Grid, what: str) -> np.ndarray:
    """The voxels of a SimpleITK image on ``grid`` as an array [k, j, i, ...] (2D images get k = 1).

    Raises ValueError when the image does not have the grid's size.
    """
    expected = image_grid(grid).size
    if tuple(image.GetSize()) != expected:
        raise ValueError(f"{what} has size {image.GetSize()}, expected the fixed grid's {expected}")
    array = sitk.GetArrayFromImage(image)
    if is_axial_slice(grid):
        array = array[np.newaxis]
    return array


def set_volume_voxels(volumeNode, array: np.ndarray, grid: Grid) -> None:
    """Replace the node's voxels by ``array`` [k, j, i] and its geometry by ``grid``."""
    voxels = vtk.vtkImageData()
    voxels.SetDimensions(*grid.size)
    data = numpy_support.numpy_to_vtk(np.ascontiguousarray(array).ravel(), deep=True)
    data.SetName("ImageScalars")
    voxels.GetPointData().SetScalars(data)
    volumeNode.SetOrigin(*ras_origin(grid))
    volumeNode.SetSpacing(*grid.spacing)
    volumeNode.SetIJKToRASDirectionMatrix(numpy_to_matrix(ras_direction(grid)))
    volumeNode.SetAndObserveImageData(voxels)


def displacement_to_grid_transform(
    displacement: np.ndarray, grid: Grid, dtype=np.float64
) -> "slicer.vtkOrientedGridTransform":
    """A vtkOrientedGridTransform (RAS) of a displacement given in LPS mm on ``grid``.

    ``displacement``: [k, j, i, c] with c = 3 components (x, y, z) or 2 (x, y: a 2D field on an axial
    slice, z displacement 0), LPS mm, u defined on the fixed grid with warped(p) = moving(p + u(p)).
    The returned transform maps a RAS point p to p + u(p) (in RAS), which is what a Slicer transform
    node holds as its TransformFromParent. Linear interpolation, like ITK's displacement field.
    """
    components = displacement.shape[-1]
    if components == 2:
        displacement = np.concatenate([displacement, np.zeros_like(displacement[..., :1])], axis=-1)
    if displacement.shape[:3] != grid.shape:
        raise ValueError(f"displacement of shape {displacement.shape[:3]} is not on the grid {grid.shape}")
    ras = (displacement.reshape(-1, 3) @ RAS_TO_LPS).astype(dtype)
    vectors = numpy_support.numpy_to_vtk(ras, deep=True)
    vectors.SetName("Displacement")
    field = vtk.vtkImageData()
    field.SetDimensions(*grid.size)
    field.SetOrigin(*ras_origin(grid))
    field.SetSpacing(*grid.spacing)
    field.GetPointData().SetScalars(vectors)
    transform = slicer.vtkOrientedGridTransform()
    transform.SetDisplacementGridData(field)
    transform.SetGridDirectionMatrix(numpy_to_matrix(ras_direction(grid)))
    transform.SetInterpolationModeToLinear()
    return transform


def grid_transform_to_displacement(transformNode):
    """(displacement, grid): the grid transform node's TransformFromParent as a SimpleITK vector image in
    LPS mm on its own grid (2D, components x, y, for an axial single slice), and that grid (LPS).

    The inverse of :func:`displacement_to_grid_transform`; raises InputImageError when the node does not
    hold a displacement grid."""
    transform = transformNode.GetTransformFromParent() if transformNode is not None else None
    if transform is None or not transform.IsA("vtkOrientedGridTransform") or transform.GetDisplacementGrid() is None:
        name = "None" if transformNode is None else f"'{transformNode.GetName()}'"
        raise InputImageError(
            f"The transform {name} holds no displacement grid (TransformFromParent); choose a DIRVNet result."
        )
    field = transform.GetDisplacementGrid()
    size = field.GetDimensions()
    scale = transform.GetDisplacementScale()
    shift = transform.GetDisplacementShift()
    direction = matrix_to_numpy(transform.GetGridDirectionMatrix())[:3, :3]
    matrix = np.eye(4)
    matrix[:3, :3] = direction * np.array(field.GetSpacing())
    matrix[:3, 3] = field.GetOrigin()
    grid = grid_from_ijk_to_ras(matrix, size)
    ras = numpy_support.vtk_to_numpy(field.GetPointData().GetScalars()).astype(np.float64) * scale + shift
    lps = (ras.reshape(-1, 3) @ RAS_TO_LPS).reshape(tuple(size[::-1]) + (3,))
    vectors = lps[0, ..., :2] if is_axial_slice(grid) else lps
    return image_grid(grid).place(sitk.GetImageFromArray(vectors, isVector=True)), grid

"""Training data from the user's folders: real volumes (NRRD, NIfTI, MetaImage, PNG/TIFF, DICOM
series folders) and image pairs for unsupervised training or fine-tuning (no field needed).

Pair folders use one of two layouts::

    PAIRS/NAME_fixed.nii.gz  PAIRS/NAME_moving.nii.gz      (any image suffix; NAME_fixed/ may be a DICOM folder)
    PAIRS/fixed/NAME.nrrd    PAIRS/moving/NAME.nrrd        (same names in both subfolders)
"""

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from DIRVNetLib.data.images import augment_intensity
from DIRVNetLib.errors import InputImageError
from DIRVNetLib.io.images import read_image
from DIRVNetLib.io.resample import resample_isotropic, resample_like
from DIRVNetLib.preprocessing import normalise_intensity

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".png", ".tif", ".tiff", ".dcm")


def image_stem(path):
    """``path``'s name without its image suffix (``a.nii.gz`` -> ``a``); None if it is no image file."""
    name = Path(path).name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return None


def is_dicom_folder(path):
    """True where ``path`` is a folder holding at least one DICOM series."""
    path = Path(path)
    return path.is_dir() and bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path)))


def image_entries(folder):
    """``{stem: path}`` of the images directly in ``folder``: image files and DICOM series subfolders."""
    entries = {}
    for child in sorted(Path(folder).iterdir()):
        if child.name.startswith("."):
            continue
        stem = image_stem(child) if child.is_file() else (child.name if is_dicom_folder(child) else None)
        if stem is not None:
            entries[stem] = child
    return entries


def expand_volume_sources(sources):
    """Training-volume entries as single sources: a folder that is not itself a DICOM series becomes
    every image inside it. Other entries (files, DICOM folders, ``nilearn:...``) are kept."""
    expanded = []
    for source in sources:
        path = Path(str(source))
        if path.is_dir() and not is_dicom_folder(path):
            found = list(image_entries(path).values())
            if not found:
                raise InputImageError(
                    f"training volume folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)} or DICOM)"
                )
            expanded.extend(str(p) for p in found)
        else:
            expanded.append(str(source))
    return expanded


def find_pairs(folder):
    """``[(name, fixed_path, moving_path)]`` of the pair folder ``folder`` (layouts in the module doc).

    Raises InputImageError naming the folder when it is missing or empty, and the files left unpaired.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputImageError(f"pairs folder {folder} does not exist or is not a folder")
    if (folder / "fixed").is_dir() or (folder / "moving").is_dir():
        fixed = image_entries(folder / "fixed") if (folder / "fixed").is_dir() else {}
        moving = image_entries(folder / "moving") if (folder / "moving").is_dir() else {}
        where = ("fixed/", "moving/")
    else:
        fixed, moving, unknown = {}, {}, []
        for stem, path in image_entries(folder).items():
            for role, table in (("_fixed", fixed), ("_moving", moving)):
                if stem.lower().endswith(role):
                    table[stem[: -len(role)]] = path
                    break
            else:
                unknown.append(path.name)
        if unknown:
            raise InputImageError(
                f"pairs folder {folder}: {', '.join(unknown[:5])} named neither NAME_fixed.* nor NAME_moving.*"
            )
        where = ("NAME_fixed", "NAME_moving")
    if not fixed and not moving:
        raise InputImageError(
            f"pairs folder {folder} holds no image pairs: expected NAME_fixed.*/NAME_moving.* files or "
            "fixed/ and moving/ subfolders with the same names"
        )
    unpaired = [f"{where[0]} {n} has no {where[1]}" for n in sorted(set(fixed) - set(moving))]
    unpaired += [f"{where[1]} {n} has no {where[0]}" for n in sorted(set(moving) - set(fixed))]
    if unpaired:
        raise InputImageError(f"pairs folder {folder} has unpaired images: " + "; ".join(unpaired[:6]))
    return [(name, fixed[name], moving[name]) for name in sorted(fixed)]


def load_pair(fixed_path, moving_path, spacing=None):
    """Fixed and moving as normalised float32 arrays on one grid: the fixed image's, or an isotropic
    grid of ``spacing`` mm over it; the moving image is resampled there in physical space."""
    fixed = read_image(fixed_path, "fixed")
    moving = read_image(moving_path, "moving")
    if fixed.GetDimension() != moving.GetDimension():
        raise InputImageError(
            f"pair {fixed_path} / {moving_path}: fixed is {fixed.GetDimension()}D, moving {moving.GetDimension()}D"
        )
    if spacing:
        fixed = resample_isotropic(fixed, spacing)
    moving = resample_like(moving, fixed)
    return (normalise_intensity(sitk.GetArrayFromImage(fixed)), normalise_intensity(sitk.GetArrayFromImage(moving)))


def paired_patch(arrays, shape, rng):
    """The same random ``shape`` crop of every array in ``arrays`` (equal shapes; mirror-padded where
    smaller). For a 2D ``shape`` and 3D arrays, one random axial slice from the middle half is used."""
    arrays = list(arrays)
    if len(shape) == 2 and arrays[0].ndim == 3:
        depth = arrays[0].shape[0]
        index = int(rng.integers(depth // 4, max(depth // 4 + 1, 3 * depth // 4)))
        arrays = [a[index] for a in arrays]
    pad = [(0, max(0, n - v)) for n, v in zip(shape, arrays[0].shape)]
    arrays = [np.pad(a, pad, mode="symmetric") for a in arrays]
    start = [int(rng.integers(0, v - n + 1)) for n, v in zip(shape, arrays[0].shape)]
    box = tuple(slice(s, s + n) for s, n in zip(start, shape))
    return [a[box] for a in arrays]


class PairFolderSampler:
    """Draws ``(fixed, moving, zero field)`` patches of real image pairs for unsupervised training.

    pairs: a pair folder (see :func:`find_pairs`) or a list of ``(name, fixed, moving)``; shape: patch
    shape (2D patches of 3D pairs are axial slices); spacing: optional isotropic resampling (mm).
    The third element of a batch is zeros: these pairs carry no true field (``supervised`` is False).
    Every pair is loaded once into memory.
    """

    supervised = False

    def __init__(self, pairs, shape, spacing=None, seed=0, noise=0.01, gamma=0.1, bias=0.0, saturation=0.0):
        self.folder = str(pairs) if not isinstance(pairs, (list, tuple)) else None
        self.pairs = find_pairs(pairs) if self.folder else list(pairs)
        if not self.pairs:
            raise InputImageError("no image pairs to train on")
        self.shape = tuple(int(n) for n in shape)
        self.spacing = spacing
        self.images = []
        for name, fixed_path, moving_path in self.pairs:
            fixed, moving = load_pair(fixed_path, moving_path, spacing)
            if fixed.ndim < len(self.shape):
                raise InputImageError(
                    f"pair '{name}' ({fixed_path}) is {fixed.ndim}D but the patches are {len(self.shape)}D"
                )
            self.images.append((fixed, moving))
        self.augmentation = {
            "noise": float(noise),
            "gamma": float(gamma),
            "bias": float(bias),
            "saturation": float(saturation),
        }
        self.rng = np.random.default_rng(seed)

    @property
    def dimension(self):
        """Dimension of the loaded pairs (2 or 3)."""
        return self.images[0][0].ndim

    def sample(self):
        fixed, moving = self.images[int(self.rng.integers(len(self.images)))]
        fixed, moving = paired_patch((fixed, moving), self.shape, self.rng)
        fixed = augment_intensity(fixed, self.rng, **self.augmentation)
        moving = augment_intensity(moving, self.rng, **self.augmentation)
        return fixed, moving, np.zeros(self.shape + (len(self.shape),), np.float32)

    def batch(self, size):
        """Stacked ``[B, *S, 1]`` fixed and moving and ``[B, *S, N]`` zeros."""
        triples = [self.sample() for _ in range(size)]
        fixed, moving, field = (np.stack(parts) for parts in zip(*triples))
        return fixed[..., np.newaxis], moving[..., np.newaxis], field

    def batch_for_step(self, seed, step, size):
        self.rng = np.random.default_rng([int(seed), int(step)])
        return self.batch(size)

    def summary(self):
        folder = None if self.folder is None else str(Path(self.folder).resolve())
        return {
            "kind": "image pairs (unsupervised)",
            "folder": folder,
            "pairs": [p[0] for p in self.pairs],
            "shape": list(self.shape),
            "spacing_mm": self.spacing,
            "augmentation": self.augmentation,
            "image_shapes": [list(f.shape) for f, _ in self.images],
        }

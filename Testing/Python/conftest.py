"""Shared fixtures: the real MR test data in Testing/Data and deformed copies with known fields."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import SimpleITK as sitk  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "Data"


@pytest.fixture(scope="session")
def data_dir():
    return DATA


@pytest.fixture(scope="session")
def t1_volume():
    """Real 3D T1 head MR, 128x128x62 voxels of 2x2x3 mm."""
    return sitk.ReadImage(str(DATA / "KmeansTest_T1UCharRaw.nii.gz"), sitk.sitkFloat32)


@pytest.fixture(scope="session")
def brain_mask():
    return sitk.ReadImage(str(DATA / "KmeansTest_T1RawSkullStrip.nii.gz"))


@pytest.fixture(scope="session")
def t1_slice():
    """Real 2D T1 brain slice, 181x217 at 1 mm."""
    return sitk.ReadImage(str(DATA / "BrainT1Slice.png"), sitk.sitkFloat32)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """An untrained tiny 2D weight set (the plumbing is under test here, not accuracy)."""
    from DIRVNetLib.io.weights import save_weight_set
    from DIRVNetLib.model import DIRVNet, NetworkConfig

    config = NetworkConfig(
        ndim=2, levels=2, units=2, control_spacing=4, data_filters=4, data_kernel=5, reg_filters=4, reg_kernel=3
    )
    path = tmp_path_factory.mktemp("weights") / "tiny2d"
    save_weight_set(path, config, DIRVNet(config, seed=0).get_weights(), "untrained tiny test network", {"steps": 0})
    return path


def shifted(image, mm):
    """``image`` translated by ``mm`` along every physical axis (same grid)."""
    translation = sitk.TranslationTransform(image.GetDimension(), [mm] * image.GetDimension())
    return sitk.Resample(image, image, translation, sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def write_pairs(folder, image, names=("a", "b"), layout="suffix"):
    """A pair folder (for training/fine-tuning) of ``image`` and a copy shifted 1.5 mm per axis:
    ``NAME_fixed.nrrd``/``NAME_moving.nii.gz`` files, or ``fixed/`` and ``moving/`` subfolders."""
    folder.mkdir(parents=True, exist_ok=True)
    moving = shifted(image, 1.5)
    for name in names:
        if layout == "suffix":
            sitk.WriteImage(image, str(folder / f"{name}_fixed.nrrd"))
            sitk.WriteImage(moving, str(folder / f"{name}_moving.nii.gz"))
        else:
            for role, img in (("fixed", image), ("moving", moving)):
                (folder / role).mkdir(exist_ok=True)
                sitk.WriteImage(img, str(folder / role / f"{name}.nrrd"))
    return folder

"""Shared fixtures: the real MR test data in Testing/Data and deformed copies with known fields."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import SimpleITK as sitk  # noqa: E402

import DIRVNetLib  # noqa: E402, F401  (before any TensorFlow import: it chooses the CPU kernels users get)

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


TINY_NETWORK = {
    "ndim": 2,
    "levels": 2,
    "units": 2,
    "control_spacing": 4,
    "data_filters": 4,
    "data_kernel": 5,
    "reg_filters": 4,
    "reg_kernel": 3,
}
"""A tiny 2D network configuration: plumbing, training and file handling are under test, not accuracy."""
TINY_NETWORK_3D = {**TINY_NETWORK, "ndim": 3, "units": 1, "data_filters": 2, "data_kernel": 3, "reg_filters": 2}


def save_tiny_weight_set(path, network, description):
    """An untrained weight set of the ``network`` configuration (a dict) in the folder ``path``."""
    from DIRVNetLib.io.weights import save_weight_set
    from DIRVNetLib.model import DIRVNet, NetworkConfig

    config = NetworkConfig.from_dict(network)
    save_weight_set(path, config, DIRVNet(config, seed=0).get_weights(), description, {"steps": 0})
    return path


def tiny_run(sources, **settings):
    """A training run of the tiny 2D network on 32x32 synthetic patches of the given ``sources`` (at
    most 3 voxels of displacement) at learning rate 0.01; ``settings`` add or replace top-level keys."""
    data = {"patch_shape": [32, 32], "max_magnitude": 3.0, "sources": sources}
    return {"network": TINY_NETWORK, "data": data, "learning_rate": 0.01, **settings}


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """An untrained tiny 2D weight set (folder ``tiny2d``)."""
    return save_tiny_weight_set(
        tmp_path_factory.mktemp("weights") / "tiny2d", TINY_NETWORK, "untrained tiny test network"
    )


@pytest.fixture(scope="session")
def tiny3d_weights(tmp_path_factory):
    """An untrained tiny 3D weight set (folder ``tiny3d``)."""
    path = tmp_path_factory.mktemp("weights") / "tiny3d"
    return save_tiny_weight_set(path, TINY_NETWORK_3D, "untrained tiny 3D test network")


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

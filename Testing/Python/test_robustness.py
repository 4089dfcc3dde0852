"""Robustness: random geometries (property style, fixed seed), bad API arguments, label maps, non-finite
results, and a real `dirvnet register` interrupted at several stages (the folder keeps one whole set)."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import DIRVNetLib
from DIRVNetLib.errors import InputImageError, RegistrationFailedError
from DIRVNetLib.io.weights import save_weight_set
from DIRVNetLib.model import DIRVNet, NetworkConfig
from DIRVNetLib.registration.geometry import MIN_OVERLAP, WorkingGrid, overlap_fraction

from conftest import DATA

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- random geometries


def random_direction(rng, ndim):
    """A random rotation, made left-handed (one axis flipped) half of the time."""
    q, r = np.linalg.qr(rng.normal(size=(ndim, ndim)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    if rng.uniform() < 0.5:
        q[:, rng.integers(ndim)] *= -1
    return q


def random_grid(rng, ndim, max_voxels, extent=None):
    """Size (1-200 per axis, at most ``max_voxels``), spacing (0.1-10 mm, log-uniform) and direction;
    with ``extent`` (mm) the size is chosen so the grid spans 0.5-2 times it along each axis."""
    spacing = np.exp(rng.uniform(np.log(0.1), np.log(10.0), ndim))
    if extent is None:
        size = rng.integers(1, 201, ndim)
    else:
        size = np.clip(np.round(extent * rng.uniform(0.5, 2.0, ndim) / spacing), 2, 200).astype(int)
    while np.prod(size) > max_voxels:
        size[np.argmax(size)] //= 2
    return size, spacing, random_direction(rng, ndim)


def smooth_pattern(points, wavelength):
    """A smooth function of physical position (mm), the same object whichever grid samples it."""
    k = 2 * np.pi / wavelength
    return np.sin(k * points[..., 0] + 0.3) + np.cos(k * (points[..., 1] - 0.5 * points[..., -1]))


def centres(size, spacing, direction, origin):
    index = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), axis=-1).astype(float)
    return index @ (direction @ np.diag(spacing)).T + origin  # [x, y(, z), ndim], index order


def sample_image(size, spacing, direction, origin, wavelength):
    values = smooth_pattern(centres(size, spacing, direction, origin), wavelength)
    image = sitk.GetImageFromArray(np.ascontiguousarray(values.T).astype(np.float32))  # -> array order
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in direction.ravel()])
    image.SetOrigin([float(v) for v in origin])
    return image


def random_pair(rng, ndim, max_voxels):
    """Fixed and moving grids of the same smooth object, of comparable extents; the moving grid's centre
    is shifted from the fixed one's by up to 60% of the fixed extent along each axis (partial overlap)."""
    f_size, f_spacing, f_dir = random_grid(rng, ndim, max_voxels)
    m_size, m_spacing, m_dir = random_grid(rng, ndim, max_voxels, extent=np.mean(f_size * f_spacing))
    if rng.uniform() < 0.1:
        (f_size if rng.uniform() < 0.5 else m_size)[rng.integers(ndim)] = 1
    f_origin = rng.uniform(-100, 100, ndim)
    f_centre = f_origin + f_dir @ (f_spacing * (f_size - 1) / 2)
    shift = f_dir @ (rng.uniform(-0.6, 0.6, ndim) * f_spacing * f_size)
    m_origin = f_centre + shift - m_dir @ (m_spacing * (m_size - 1) / 2)
    wavelength = 12 * max(f_spacing.max(), m_spacing.max())
    fixed = sample_image(f_size, f_spacing, f_dir, f_origin, wavelength)
    moving = sample_image(m_size, m_spacing, m_dir, m_origin, wavelength)
    return fixed, moving, wavelength


def grid_of(image):
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


CASES = [(2, seed) for seed in range(3)] + [(3, 0)]  # each traces the network anew: a few, and many below


@pytest.mark.parametrize("ndim,seed", CASES, ids=[f"{n}d-{s}" for n, s in CASES])
def test_random_geometry(ndim, seed, tiny_weights, tiny3d_weights):
    """Either a one-line refusal naming the problem, or a finite field on exactly the fixed grid whose
    unregistered moving image matches the object sampled on the fixed grid (oblique, left-handed)."""
    rng = np.random.default_rng(1000 * ndim + seed)
    fixed, moving, wavelength = random_pair(rng, ndim, max_voxels=40_000 if ndim == 3 else 200 * 200)
    copies = sitk.Image(fixed), sitk.Image(moving)
    weights = tiny_weights if ndim == 2 else tiny3d_weights
    if min(fixed.GetSize()) < 2 or min(moving.GetSize()) < 2:
        with pytest.raises(InputImageError, match=r"has size .*: every axis needs at least 2 voxels"):
            DIRVNetLib.register(fixed, moving, weights=weights, isotropic=False)
        return
    if overlap_fraction(fixed, moving) < MIN_OVERLAP:
        with pytest.raises(InputImageError, match=r"the moving image (does not overlap|covers only)"):
            DIRVNetLib.register(fixed, moving, weights=weights, isotropic=False)
        return
    assert WorkingGrid.shape_for(fixed) == WorkingGrid.for_fixed(fixed).shape  # sized without allocating
    result = DIRVNetLib.register(fixed, moving, weights=weights, isotropic=False)
    for image in (result.displacement, result.warped, result.moving_resampled):
        assert grid_of(image) == grid_of(fixed)
    assert np.isfinite(sitk.GetArrayViewFromImage(result.displacement)).all()
    json.dumps(result.report, allow_nan=False)
    assert_is_the_object(result.moving_resampled, fixed, moving, wavelength)
    for before, after in zip(copies, (fixed, moving)):  # inputs untouched
        assert grid_of(before) == grid_of(after)
        assert np.array_equal(sitk.GetArrayViewFromImage(before), sitk.GetArrayViewFromImage(after))


def assert_is_the_object(resampled, fixed, moving, wavelength):
    """Where a fixed voxel centre lies inside the moving grid, the moving image resampled onto the fixed
    grid is the object there (linear interpolation of a pattern >= 12 voxels per period: error < 0.05)."""
    ndim = fixed.GetDimension()
    points = centres(
        np.array(fixed.GetSize()),
        np.array(fixed.GetSpacing()),
        np.array(fixed.GetDirection()).reshape(ndim, ndim),
        np.array(fixed.GetOrigin()),
    )
    m_matrix = np.array(moving.GetDirection()).reshape(ndim, ndim) @ np.diag(moving.GetSpacing())
    m_index = (points - moving.GetOrigin()) @ np.linalg.inv(m_matrix).T
    inside = np.all((m_index >= 0) & (m_index <= np.array(moving.GetSize()) - 1), axis=-1)
    values = sitk.GetArrayFromImage(resampled).T
    assert inside.any()
    assert np.abs(values[inside] - smooth_pattern(points, wavelength)[inside]).max() < 0.05


@pytest.mark.parametrize("seed", range(40))
def test_random_geometry_resampling(seed):
    """Many more random geometries through the checks and the resampling into the fixed frame (no network)."""
    from DIRVNetLib.io.images import check_image
    from DIRVNetLib.io.resample import resample_like
    from DIRVNetLib.registration.geometry import check_overlap

    ndim = 2 + seed % 2
    fixed, moving, wavelength = random_pair(np.random.default_rng(seed), ndim, max_voxels=40_000)
    try:
        check_image(fixed, "fixed image"), check_image(moving, "moving image")
        check_overlap(fixed, moving)
    except InputImageError as e:
        assert min(fixed.GetSize() + moving.GetSize()) < 2 or overlap_fraction(fixed, moving) < MIN_OVERLAP, e
        return
    assert_is_the_object(resample_like(moving, fixed), fixed, moving, wavelength)


@pytest.mark.parametrize("seed", range(20))
def test_working_grid_sized_without_allocating(seed):
    """For any geometry and working spacing, the size computed up front is the grid later made."""
    rng = np.random.default_rng(seed)
    ndim = 2 + seed % 2
    size, spacing, direction = random_grid(rng, ndim, 10_000)
    image = sitk.Image([int(max(n, 2)) for n in size], sitk.sitkFloat32)
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in direction.ravel()])
    working = None if seed % 3 == 0 else float(spacing.max() * rng.uniform(0.5, 2))
    assert WorkingGrid.shape_for(image, working) == WorkingGrid.for_fixed(image, working).shape


# ---------------------------------------------------------------- API arguments


@pytest.fixture(scope="module")
def pair():
    image = sitk.ReadImage(str(DATA / "BrainT1Slice.png"), sitk.sitkFloat32)
    return image, sitk.Resample(image, image, sitk.TranslationTransform(2, (2.0, 1.0)))


BAD_ARGUMENTS = [
    ({"refinement_rounds": 1.5}, ValueError, r"refinement_rounds must be a whole number >= 0, got 1.5"),
    ({"refinement_rounds": "2"}, ValueError, r"refinement_rounds must be a whole number >= 0, got '2'"),
    ({"refinement_rounds": -1}, ValueError, r"refinement_rounds must be a whole number >= 0"),
    ({"refinement_rounds": True}, ValueError, r"refinement_rounds must be a whole number"),
    ({"working_spacing": "1"}, ValueError, r"working_spacing must be a finite number of mm > 0 \(or None\), got '1'"),
    ({"working_spacing": math.nan}, ValueError, r"working_spacing must be a finite number of mm > 0"),
    ({"working_spacing": math.inf}, ValueError, r"working_spacing must be a finite number of mm > 0"),
    ({"working_spacing": 0}, ValueError, r"working_spacing must be a finite number of mm > 0"),
    (
        {"coarse_pass": 0.5},
        ValueError,
        r"coarse_pass must be a finite factor >= 1 \(1: none\) or None \(the mode's\), got 0.5",
    ),
    ({"coarse_pass": "2"}, ValueError, r"coarse_pass must be a finite factor >= 1"),
    ({"device": "tpu"}, ValueError, r"device must be one of \('auto', 'cpu', 'gpu'\), got 'tpu'"),
    ({"weights": 3}, TypeError, r"weights must be None, a bundled weight-set name or a folder path, got int"),
    ({"isotropic": "yes"}, TypeError, r"isotropic must be True or False, got 'yes'"),
    ({"unfold": None}, TypeError, r"unfold must be True or False"),
    ({"moving_labels": 1}, TypeError, r"moving_labels must be True or False, got 1"),
    ({"progress": 5}, TypeError, r"progress must be None or a callable, got int"),
    ({"cancel": "stop"}, TypeError, r"cancel must be None or a callable \(or have is_set\(\)\), got str"),
]


@pytest.mark.parametrize("arguments,error,message", BAD_ARGUMENTS, ids=[str(a) for a, _, _ in BAD_ARGUMENTS])
def test_bad_arguments_name_the_argument(pair, arguments, error, message):
    with pytest.raises(error, match=message):
        DIRVNetLib.register(*pair, **arguments)


@pytest.mark.parametrize(
    "image,message",
    [
        (
            np.zeros((10, 10), np.float32),
            r"fixed must be a SimpleITK image or a path \(str or pathlib.Path\), got ndarray "
            r"\(make one with SimpleITK.GetImageFromArray",
        ),
        (None, r"fixed must be a SimpleITK image or a path \(str or pathlib.Path\), got NoneType"),
    ],
)
def test_images_that_are_not_images(pair, image, message):
    with pytest.raises(InputImageError, match=message):
        DIRVNetLib.register(image, pair[1])


# ---------------------------------------------------------------- label maps and non-finite results


@pytest.fixture(scope="module")
def label_slice():
    """A real label map (k-means segmentation, uint8) and its T1 slice, 2D."""
    labels = sitk.ReadImage(str(DATA / "KmeansTest_T1KmeansPrelimSegmentation.nii.gz"))
    t1 = sitk.ReadImage(str(DATA / "KmeansTest_T1UCharRaw.nii.gz"), sitk.sitkFloat32)
    return t1[:, :, 31], labels[:, :, 31]


def test_label_map_is_detected_and_warped_with_nearest_neighbour(label_slice, tiny_weights):
    t1, labels = label_slice
    values = set(np.unique(sitk.GetArrayViewFromImage(labels)).tolist())
    shifted = sitk.Image(labels)
    shifted.SetOrigin(np.add(labels.GetOrigin(), (1.3, -0.7)))  # off the fixed grid by a fraction of a voxel
    result = DIRVNetLib.register(t1, shifted, weights=tiny_weights, mode="fast")
    warped = sitk.GetArrayViewFromImage(result.warped)
    assert result.warped.GetPixelID() == labels.GetPixelID()
    assert set(np.unique(warped).tolist()) <= values and result.report["moving_labels"] is True
    assert any("looks like a label map" in w for w in result.report["warnings"])
    linear = DIRVNetLib.register(t1, shifted, weights=tiny_weights, moving_labels=False, mode="fast")
    assert not linear.report["moving_labels"]
    assert not np.array_equal(
        sitk.GetArrayViewFromImage(linear.warped), np.round(sitk.GetArrayViewFromImage(linear.warped))
    )  # what nearest neighbour avoids: interpolated, non-integer labels


def test_explicit_label_flag_on_a_float_image(label_slice, tiny_weights):
    t1, labels = label_slice
    as_float = sitk.Cast(labels, sitk.sitkFloat32)
    as_float.SetOrigin(np.add(labels.GetOrigin(), (1.3, -0.7)))
    result = DIRVNetLib.register(t1, as_float, weights=tiny_weights, moving_labels=True)
    warped = sitk.GetArrayViewFromImage(result.warped)
    assert np.array_equal(warped, np.round(warped)) and result.report["warnings"] == []


def test_non_finite_field_is_an_error(pair, tmp_path):
    config = NetworkConfig(
        ndim=2, levels=1, units=1, control_spacing=4, data_filters=2, data_kernel=3, reg_filters=2, reg_kernel=3
    )
    weights = DIRVNet(config, seed=0).get_weights()
    name = min(weights)
    weights[name] = np.full_like(weights[name], np.nan)
    save_weight_set(tmp_path / "nan", config, weights, "weights holding NaN", {})
    with pytest.raises(RegistrationFailedError, match=r"the network's displacement field has \d+ non-finite values"):
        DIRVNetLib.register(*pair, weights=tmp_path / "nan")


# ---------------------------------------------------------------- signals during a real CLI run


class Run:
    """A real `dirvnet register` subprocess; its stderr (progress bar included) is read as it comes."""

    def __init__(self, fixed, moving, out, weights):
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "DIRVNetLib.cli.main",
                "register",
                "--fixed",
                str(fixed),
                "--moving",
                str(moving),
                "--output-dir",
                str(out),
                "--weights",
                str(weights),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            errors="replace",
        )
        self.err = ""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for chunk in iter(lambda: self.process.stderr.read(1), ""):
            self.err += chunk

    def finish(self):
        self.process.wait(timeout=120)
        self.reader.join(timeout=10)
        return self.process.returncode, self.err


def staging(out):
    return [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.dirvnet-")]


def wait_for(condition, process, timeout=300):
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.0005)
    return True


def assert_one_whole_set(out, old):
    """``out`` holds exactly the old set (byte for byte) or a whole new one that reads back."""
    names = sorted(p.name for p in out.iterdir())
    if {n: (out / n).read_bytes() for n in names} == old:
        return "old"
    assert names == ["displacement.nrrd", "qa.png", "report.json", "transform.h5", "warped.nrrd"]
    json.loads((out / "report.json").read_text(), parse_constant=lambda c: pytest.fail(f"bare {c} in report.json"))
    sitk.ReadTransform(str(out / "transform.h5"))
    sitk.ReadImage(str(out / "warped.nrrd"))
    return "new"


UNIT_DONE = re.compile(r"\| *[1-9]\d*/\d+ ")  # the progress bar after a variational unit


def test_a_signal_turned_into_another_error_is_still_an_interrupt():
    """A signal arriving inside a library that turns every exception into its own (TensorFlow's tracing
    raises TypeError) is reported as the interrupt; without a signal the error stays what it was."""
    from DIRVNetLib.cli.register_command import _signals_interrupt

    def library_call():
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler raises KeyboardInterrupt here
            time.sleep(5)
        except BaseException as e:
            raise TypeError("could not trace") from e

    with pytest.raises(KeyboardInterrupt, match="SIGTERM"), _signals_interrupt():
        library_call()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are restored
    with pytest.raises(TypeError, match="could not trace"), _signals_interrupt():
        raise TypeError("could not trace")


@pytest.mark.parametrize(
    "stage,signal_number",
    [
        ("starting", signal.SIGINT),
        ("network", signal.SIGTERM),
        ("writing", signal.SIGKILL),
    ],
)
def test_interrupted_run_leaves_one_whole_set(tmp_path, tiny_weights, pair, stage, signal_number):
    """A real `dirvnet register` is signalled as it starts (staging folder made), after a unit of the
    network ran, or while writing (first file staged); the folder keeps the old set, or (SIGKILL racing
    the commit) a whole new one, and what a kill leaves beside it is cleared by the next run."""
    fixed, moving = tmp_path / "fixed.nrrd", tmp_path / "moving.nrrd"
    sitk.WriteImage(pair[0], str(fixed))
    sitk.WriteImage(pair[1], str(moving))
    out = tmp_path / "out"
    out.mkdir()
    old = {name: f"old {name}".encode() for name in ("transform.h5", "report.json", "warped.nrrd")}
    for name, data in old.items():
        (out / name).write_bytes(data)
    run = Run(fixed, moving, out, tiny_weights)
    reached = {
        "starting": lambda: staging(out),
        "network": lambda: UNIT_DONE.search(run.err),
        "writing": lambda: any(any(p.iterdir()) for p in staging(out) if p.is_dir()),
    }[stage]
    assert wait_for(reached, run.process), run.finish()
    run.process.send_signal(signal_number)
    code, err = run.finish()
    if signal_number == signal.SIGKILL:
        assert code == -signal.SIGKILL
        assert assert_one_whole_set(out, old) in ("old", "new")
        from DIRVNetLib.io.outputset import recover

        recover(out)
    else:
        assert code == 130 and "interrupted" in err, err
        assert assert_one_whole_set(out, old) == "old"
    assert staging(out) == []
    if stage == "network":  # TensorFlow started and ran: its CPU start-up noise was dropped
        assert "cuInit" not in err and "cuda drivers" not in err, err

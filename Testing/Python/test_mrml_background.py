"""The registration worker process end to end: DIRVNetLib.mrml.background driving
``python -m DIRVNetLib.registration.worker`` (a real subprocess on ``sys.executable``) on the demo pair
read into a real MRML scene, against DIRVNetLib.register in this process.

The demo pair (Testing/Data/make_sample_pair.py) is registered with the bundled 3D weight set on a 4 mm
working grid (3 levels x 5 units = 15 progress lines), which keeps the worker's runs short.
"""

import os
import signal
import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="needs Slicer's MRML (pip install slicer-core)")

from test_mrml_convert import DATA, assert_unchanged, load_volume, node_state, scene_node_ids  # noqa: E402

import DIRVNetLib  # noqa: E402
from DIRVNetLib import mrml  # noqa: E402
from DIRVNetLib.errors import InputImageError, RegistrationCancelled, WeightSetError  # noqa: E402
from DIRVNetLib.mrml.background import (  # noqa: E402
    DependencyError,
    RegistrationProcessError,
    RegistrationWorker,
    python_executable,
    worker_command,
)
from DIRVNetLib.mrml.convert import RAS_TO_LPS  # noqa: E402

OPTIONS = {"working_spacing": 4.0}
UNITS = 15  # levels x units of the bundled 3D weight set


@pytest.fixture
def demo_scene():
    scene = slicer.vtkMRMLScene()
    fixed = load_volume(scene, DATA / "sample_fixed.nii.gz")
    moving = load_volume(scene, DATA / "KmeansTest_T1UCharRaw.nii.gz")
    return scene, fixed, moving


@pytest.fixture(scope="module")
def worker():
    """One worker for the module: the tests after the first find it warm."""
    worker = RegistrationWorker(python=sys.executable)
    yield worker
    worker.close()


@pytest.fixture(scope="module")
def expected():
    """DIRVNetLib.register in this process on the images the module would send (read like MRML reads them)."""
    scene = slicer.vtkMRMLScene()
    job = mrml.prepare(
        load_volume(scene, DATA / "sample_fixed.nii.gz"),
        load_volume(scene, DATA / "KmeansTest_T1UCharRaw.nii.gz"),
        **OPTIONS,
    )
    return DIRVNetLib.register(job.fixed, job.moving, **OPTIONS)


def wait_for_progress(worker, run, timeout_s=600):
    """Poll until the run has reported its first unit."""
    deadline = time.monotonic() + timeout_s
    while not run.updates and not run.finished:
        assert time.monotonic() < deadline, "the worker reported no progress"
        worker.poll()
        time.sleep(0.02)
    assert not run.finished, f"the run ended before its first unit: {run.state} {run.error}"


def node_field_lps(transformNode):
    """The grid transform node's displacement [k, j, i, 3] in LPS mm."""
    from vtk.util import numpy_support

    grid = transformNode.GetTransformFromParent().GetDisplacementGrid()
    dims = grid.GetDimensions()
    ras = numpy_support.vtk_to_numpy(grid.GetPointData().GetScalars()).reshape(*dims[::-1], 3)
    return ras @ RAS_TO_LPS


def test_worker_registers_the_demo_pair_like_register_and_the_result_loads_into_the_scene(worker, expected, demo_scene):
    scene, fixed, moving = demo_scene
    fixed_state = node_state(fixed)
    job = mrml.prepare(fixed, moving, placeMovingUnderTransform=True, **OPTIONS)
    seen = []

    run = worker.submit(job)
    result = worker.wait(progress=seen.append)

    assert run.state == "done" and worker.alive
    assert len(run.updates) >= UNITS and seen == run.updates
    assert [p.done for p in run.updates] == list(range(1, len(run.updates) + 1))
    assert run.updates[-1].done == run.updates[-1].total
    difference = sitk.GetArrayFromImage(result.displacement) - sitk.GetArrayFromImage(expected.displacement)
    assert np.abs(difference).max() < 0.01
    assert result.report["ncc_after"] > result.report["ncc_before"]
    assert not run.folder.exists()

    transform = job.apply(result)
    assert transform.GetScene() is scene and transform.IsA("vtkMRMLGridTransformNode")
    assert moving.GetParentTransformNode() is transform
    assert transform.GetNodeReference(mrml.FIXED_VOLUME_ROLE) is fixed
    np.testing.assert_allclose(node_field_lps(transform), sitk.GetArrayFromImage(expected.displacement), atol=0.01)
    assert_unchanged(fixed, fixed_state)


def test_second_registration_runs_in_the_warm_worker(worker, demo_scene):
    scene, fixed, moving = demo_scene
    if not worker.alive:
        worker.start()
    pid = worker.pid
    jacobian = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "jacobian")
    job = mrml.prepare(fixed, moving, jacobianVolumeNode=jacobian, keepIntermediate=True, **OPTIONS)

    worker.submit(job)
    result = worker.wait()
    transform = job.apply(result)

    assert worker.pid == pid and worker.alive
    assert len(result.intermediate) == UNITS
    sequence = transform.GetNodeReference(mrml.INTERMEDIATE_SEQUENCE_ROLE)
    assert sequence.GetNumberOfDataNodes() == UNITS
    assert slicer.util.arrayFromVolume(jacobian).min() > 0


def test_worker_errors_arrive_as_named_errors_with_one_sentence(worker, demo_scene, tmp_path):
    scene, fixed, moving = demo_scene
    corrupt = tmp_path / "corrupt3d"
    corrupt.mkdir()
    for name in ("config.json", "metadata.json"):
        (corrupt / name).write_bytes((DATA.parents[1] / "model_weights" / "mr3d" / name).read_bytes())
    (corrupt / "weights.npz").write_bytes(b"not a weight file")
    before = scene_node_ids(scene)

    worker.submit(mrml.prepare(fixed, moving, weights=str(corrupt), **OPTIONS))
    with pytest.raises(WeightSetError, match="corrupt") as error:
        worker.wait()

    assert "\n" not in str(error.value) and "Traceback" not in str(error.value)
    assert "Traceback" in worker.current.details  # the worker's log keeps the details
    assert worker.alive  # a failed registration does not end the worker
    assert scene_node_ids(scene) == before


def test_scene_cleared_during_a_run_adds_nothing(worker, demo_scene):
    scene, fixed, moving = demo_scene
    job = mrml.prepare(fixed, moving, **OPTIONS)
    run = worker.submit(job)
    wait_for_progress(worker, run)
    scene.Clear(0)

    result = worker.wait()
    with pytest.raises(InputImageError, match="removed from the scene"):
        job.apply(result)
    assert scene.GetNumberOfNodesByClass("vtkMRMLTransformNode") == 0


def test_background_register_is_the_console_entry_point(worker, demo_scene):
    from DIRVNetLib.mrml.background import register

    scene, fixed, moving = demo_scene
    progress = []
    transform = register(
        fixed, moving, worker=worker, placeMovingUnderTransform=True, progress=progress.append, **OPTIONS
    )
    assert moving.GetParentTransformNode() is transform and len(progress) >= UNITS


def test_cancel_ends_the_worker_within_a_second_and_leaves_the_scene_unchanged(worker, demo_scene):
    scene, fixed, moving = demo_scene
    before, moving_state = scene_node_ids(scene), node_state(moving)
    run = worker.submit(mrml.prepare(fixed, moving, placeMovingUnderTransform=True, **OPTIONS))
    wait_for_progress(worker, run)
    process = worker._process

    started = time.monotonic()
    worker.cancel()
    ended = time.monotonic() - started

    assert process.poll() is not None and ended < 1.0
    assert run.state == "cancelled" and not worker.alive
    with pytest.raises(RegistrationCancelled):
        run.outcome()
    assert scene_node_ids(scene) == before
    assert_unchanged(moving, moving_state)
    assert not run.folder.exists()


def test_a_worker_killed_from_outside_gives_a_clean_error(demo_scene):
    scene, fixed, moving = demo_scene
    before = scene_node_ids(scene)
    worker = RegistrationWorker(python=sys.executable)
    try:
        run = worker.submit(mrml.prepare(fixed, moving, **OPTIONS))
        wait_for_progress(worker, run)
        os.kill(worker.pid, signal.SIGKILL)
        with pytest.raises(RegistrationProcessError, match="ended unexpectedly") as error:
            worker.wait()
    finally:
        worker.close()
    assert "\n" not in str(error.value)
    assert scene_node_ids(scene) == before


def test_an_idle_worker_ends_by_itself_and_the_next_registration_starts_a_new_one(demo_scene):
    scene, fixed, moving = demo_scene
    worker = RegistrationWorker(python=sys.executable, idle_timeout=1.0)
    try:
        worker.start()
        deadline = time.monotonic() + 600
        while worker.info is None:  # TensorFlow loaded: the idle clock starts
            assert worker.alive and time.monotonic() < deadline
            worker.poll()
            time.sleep(0.05)
        first = worker.pid
        worker._process.wait(timeout=30)
        assert worker._process.returncode == 0 and not worker.alive

        worker.submit(mrml.prepare(fixed, moving, **OPTIONS))
        assert worker.alive and worker.pid != first
    finally:
        worker.close()


def test_worker_without_tensorflow_says_so(tmp_path, monkeypatch, demo_scene):
    """The worker's Python lacks TensorFlow (a sitecustomize blocks it): a DependencyError, not a traceback."""
    scene, fixed, moving = demo_scene
    (tmp_path / "sitecustomize.py").write_text(
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('tensorflow', 'keras'):\n"
        "            raise ModuleNotFoundError(f\"No module named '{name}'\", name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    worker = RegistrationWorker(python=sys.executable)
    try:
        worker.submit(mrml.prepare(fixed, moving, **OPTIONS))
        with pytest.raises(DependencyError, match="tensorflow"):
            worker.wait()
    finally:
        worker.close()


def test_worker_command_runs_the_worker_module_on_this_python_outside_slicer():
    assert python_executable() == sys.executable  # PythonSlicer inside the Slicer application
    command = worker_command(idle_timeout=60)
    assert command[:3] == [sys.executable, "-m", "DIRVNetLib.registration.worker"]
    assert command[-2:] == ["--idle-timeout", "60"]


@pytest.mark.parametrize(
    "error, name, words",
    [
        (WeightSetError("weight file x is corrupt"), "WeightSetError", "corrupt"),
        (MemoryError(), "InsufficientMemoryError", "ran out of memory"),
        (
            type("ResourceExhaustedError", (Exception,), {})("OOM when allocating tensor"),
            "InsufficientMemoryError",
            "coarser working spacing",
        ),
        (ValueError("device 'gpu' was asked for but TensorFlow sees no GPU\nmore"), "RegistrationError", "sees no GPU"),
        (KeyError("x"), "RegistrationError", "KeyError"),
    ],
)
def test_worker_names_each_error_with_one_sentence(error, name, words):
    from DIRVNetLib.registration.worker import describe_error

    reported, message = describe_error(error)
    assert reported == name and words in message and "\n" not in message

"""The Slicer module's process never needs TensorFlow: opening the module, building the panel, the
installation plan, the self-test's "not installed" path and a whole registration (in the worker process)
work in a Python where ``import tensorflow`` and ``import keras`` fail.

A fresh interpreter installs an import hook (a meta path finder raising ModuleNotFoundError, as in a
Slicer without TensorFlow) and then runs what DIRVNet.py runs. DIRVNet.py itself imports qt/ctk and only
imports inside Slicer, so every ``DIRVNetLib`` import statement in it is executed here as written.
"""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk

pytest.importorskip("slicer", reason="needs Slicer's MRML (pip install slicer-core)")

ROOT = Path(__file__).resolve().parents[2]
MODULE_PY = ROOT / "DIRVNet" / "DIRVNet.py"
DATA = ROOT / "Testing" / "Data"

BLOCK_TENSORFLOW = """
import importlib.abc, sys

class BlockTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras"):
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)

sys.meta_path.insert(0, BlockTensorFlow())
"""


def dirvnetlib_imports():
    """Every import statement of DIRVNet.py that names DIRVNetLib, as source text."""
    statements = []
    for node in ast.walk(ast.parse(MODULE_PY.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("DIRVNetLib"):
            statements.append(ast.unparse(node))
        elif isinstance(node, ast.Import) and any(a.name.startswith("DIRVNetLib") for a in node.names):
            statements.append(ast.unparse(node))
    return statements


def run_without_tensorflow(body, tmp_path):
    """Run ``body`` in a fresh interpreter with TensorFlow blocked; returns the JSON it prints last."""
    script = tmp_path / "script.py"
    script.write_text(BLOCK_TENSORFLOW + body)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_dirvnet_py_imports_dirvnetlib_in_many_places():
    statements = dirvnetlib_imports()
    assert len(statements) >= 5
    assert not any("registration.api" in statement for statement in statements)


def test_module_panel_and_install_plan_work_without_tensorflow(tmp_path):
    statements = "\n".join(f"    {statement}" for statement in dirvnetlib_imports())
    body = f"""
import json
from pathlib import Path

def module_imports():
{statements}

module_imports()
from DIRVNetLib.mrml import dependencies, weightsets

infos = weightsets.bundled()
plan = dependencies.plan(dependencies.read_requirements(Path("DIRVNet/Resources/requirements.txt")))
print(json.dumps({{
    "weight_sets": [[info.name, info.dimension, bool(info.description)] for info in infos],
    "needed": plan.needed,
    "requirements": plan.requirements,
    "download_mb": plan.download_mb,
    "panel": plan.panel_text(),
    "missing": plan.missing_message(),
    "summary": plan.summary(),
    "device": dependencies.device_description(),
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")),
}}))
"""
    result = run_without_tensorflow(body, tmp_path)

    assert result["loaded"] == []
    assert ["mr2d", 2, True] in result["weight_sets"] and ["mr3d", 3, True] in result["weight_sets"]
    assert result["needed"]
    assert any(r.startswith("tensorflow") for r in result["requirements"]) and result["download_mb"] > 100
    assert "tensorflow" in result["panel"] and "download" in result["panel"]
    # the self-test's skip reason and the console's error when TensorFlow is missing
    assert "tensorflow" in result["missing"] and "installDependencies()" in result["missing"]
    assert "tensorflow" in result["summary"]
    assert "GPU" in result["device"]


def test_a_registration_runs_in_the_worker_from_a_process_without_tensorflow(tmp_path):
    """The Apply path: prepare on a real scene, the worker (which has TensorFlow) registers, apply."""
    from test_mrml_register import tiny_weight_set

    weights = tiny_weight_set(tmp_path / "tiny2d", 2)
    for name, file in (("fixed", "BrainT1Slice.png"), ("moving", "BrainProtonDensitySlice.png")):
        sitk.WriteImage(sitk.ReadImage(str(DATA / file), sitk.sitkFloat32), str(tmp_path / f"{name}.nrrd"))
    body = f"""
import json, sys
sys.path.insert(0, {str(ROOT / "Testing" / "Python")!r})
import slicer
from DIRVNetLib import mrml
from DIRVNetLib.mrml.background import RegistrationWorker
from test_mrml_convert import load_volume

scene = slicer.vtkMRMLScene()
fixed = load_volume(scene, {str(tmp_path / "fixed.nrrd")!r})
moving = load_volume(scene, {str(tmp_path / "moving.nrrd")!r})
worker = RegistrationWorker(python=sys.executable)
job = mrml.prepare(fixed, moving, weights={weights!r}, placeMovingUnderTransform=True, mode="fast")  # units only
worker.submit(job)
transform = job.apply(worker.wait())
worker.close()
print(json.dumps({{
    "parent": moving.GetParentTransformNode().GetID(), "transform": transform.GetID(),
    "units": len(worker.current.updates),
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")),
}}))
"""
    result = run_without_tensorflow(body, tmp_path)

    assert result["loaded"] == []
    assert result["parent"] == result["transform"]
    assert result["units"] == 4  # the tiny network: 2 levels x 2 units

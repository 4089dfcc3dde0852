"""The supported Slicer versions (5.10 and later, Python 3.12): enforced by the module, and the install
plan resolvable with Slicer's own packages pinned.

``python3 dev.py test`` runs these (with the other Slicer-side tests) in .venv-slicer, an environment
built like Slicer 5.10's Python (Testing/slicer-python.txt); there DIRVNET_SLICER_ENVIRONMENT is set.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from DIRVNetLib.mrml.dependencies import plan, read_requirements

ROOT = Path(__file__).resolve().parents[2]
MODULE_PY = ROOT / "DIRVNet" / "DIRVNet.py"
SLICER_PINS = dict(
    line.split("==")
    for line in (ROOT / "Testing" / "slicer-python.txt").read_text().splitlines()
    if "==" in line and not line.startswith("#")
)


def test_the_module_refuses_an_older_slicer_with_a_clear_message_and_passes_on_a_supported_one():
    code = compile(MODULE_PY.read_text(), str(MODULE_PY), "exec")
    with pytest.raises(ImportError) as error:
        exec(code, {"__name__": "DIRVNet", "__file__": str(MODULE_PY)})
    if sys.version_info < (3, 12):
        assert "needs 3D Slicer 5.10 or later" in str(error.value)
    else:  # past the version check, stopped by the first Slicer-only import
        assert error.value.name == "qt"


@pytest.mark.skipif(not os.environ.get("DIRVNET_SLICER_ENVIRONMENT"), reason="not in .venv-slicer (dev.py test)")
def test_this_environment_is_slicer_510s_python():
    import numpy
    import SimpleITK

    assert sys.version_info[:2] == (3, 12)
    assert numpy.__version__ == SLICER_PINS["numpy"]
    assert SimpleITK.Version.VersionString().startswith(SLICER_PINS["SimpleITK"])


def test_the_install_plan_resolves_with_slicers_packages_pinned(tmp_path):
    """pip resolves what a Slicer without TensorFlow would install (a dry run, nothing installed), with this
    environment's numpy, SimpleITK and VTK as the constraints the module passes to pip."""
    planned = plan(read_requirements(ROOT / "DIRVNet" / "Resources" / "requirements.txt"), gpus=[], missing_only=False)
    constraints = planned.write_constraints(tmp_path / "constraints.txt")
    report = tmp_path / "report.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(report),
            "-c",
            str(constraints),
            *planned.requirements,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    installs = {
        item["metadata"]["name"].lower(): item["metadata"]["version"]
        for item in json.loads(report.read_text(encoding="utf-8"))["install"]
    }
    assert "tensorflow" in installs
    for constraint in planned.constraints:
        name, version = constraint.split("==")
        if name.lower() in installs:
            assert installs[name.lower()] == version, f"pip would change Slicer's {name}"
    assert any(c.startswith("numpy==") for c in planned.constraints)

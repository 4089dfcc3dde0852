#!/usr/bin/env python3
"""Set-up commands of the repository (python3 only; the Makefile calls this).

    python3 dev.py demo          # create/reuse .venv, install, register the bundled sample pair, print figures
    python3 dev.py test          # the test suite in .venv, then the Slicer-side tests in .venv-slicer
    python3 dev.py slicer-test   # only the Slicer-side tests, on the Python of the oldest supported Slicer
    python3 dev.py lint          # ruff (format check and lint, pyproject.toml's settings) and mypy (typed modules)

.venv-slicer is Slicer 5.10's Python (3.12) with Slicer's numpy and SimpleITK pins and what the module's
first Apply installs (Testing/slicer-python.txt, DIRVNet/Resources/requirements.txt); its interpreter is
$DIRVNET_SLICER_PYTHON, python3.12 on the PATH, or pyenv's newest 3.12. A virtual environment is
reinstalled only when the files it is built from change.
"""

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
DEMO_OUT = ROOT / "demo-output"
DATA = ROOT / "Testing" / "Data"
SLICER_PYTHON_VERSION = "3.12"
SLICER_VENV = ROOT / ".venv-slicer"
SLICER_FILES = (ROOT / "Testing" / "slicer-python.txt", ROOT / "DIRVNet" / "Resources" / "requirements.txt")
SLICER_TESTS = ("test_mrml_*.py", "test_slicer_*.py", "test_extension_files.py")
"""Tests of what runs inside Slicer (the module's library layer, the worker, the package)."""


def run(*command, **kwargs):
    print("+", " ".join(str(c) for c in command), flush=True)
    subprocess.run([str(c) for c in command], check=True, cwd=ROOT, **kwargs)


def ensure_environment():
    """Create .venv and install the project with its test extras unless pyproject.toml is unchanged."""
    if not PYTHON.exists():
        try:
            venv.create(VENV, with_pip=True)
        except (OSError, subprocess.CalledProcessError) as e:
            sys.exit(f"could not create {VENV} ({e}); on Debian/Ubuntu install python3-venv first")
    stamp = VENV / ".installed"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        run(PYTHON, "-m", "pip", "install", "--quiet", "-e", ".[test]")
        stamp.write_text(digest)


def slicer_python():
    """An interpreter of Slicer's Python version, or exit with how to provide one."""
    candidates = [os.environ.get("DIRVNET_SLICER_PYTHON")]
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip()
        found = glob.glob(os.path.join(root, "versions", f"{SLICER_PYTHON_VERSION}.*", "bin", "python3"))
        candidates += sorted(found, key=lambda p: [int(x) for x in Path(p).parents[1].name.split(".")], reverse=True)
    candidates.append(shutil.which(f"python{SLICER_PYTHON_VERSION}"))
    for candidate in filter(None, candidates):
        version = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True
        )
        if version.returncode == 0 and version.stdout.strip() == SLICER_PYTHON_VERSION:
            return candidate
    sys.exit(
        f"the Slicer-side tests need Python {SLICER_PYTHON_VERSION} (Slicer 5.10's): install it (pyenv install "
        f"{SLICER_PYTHON_VERSION}) or set DIRVNET_SLICER_PYTHON to its interpreter"
    )


def ensure_slicer_environment():
    """Create .venv-slicer from Testing/slicer-python.txt and the module's requirements unless they are unchanged."""
    python = SLICER_VENV / ("Scripts" if os.name == "nt" else "bin") / "python"
    if not python.exists():
        run(slicer_python(), "-m", "venv", SLICER_VENV)
    stamp = SLICER_VENV / ".installed"
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in SLICER_FILES)).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        run(python, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        run(python, "-m", "pip", "install", "--quiet", *[arg for path in SLICER_FILES for arg in ("-r", path)])
        stamp.write_text(digest)
    return python


def slicer_test():
    python = ensure_slicer_environment()
    env = dict(os.environ, PYTHONPATH=str(ROOT), DIRVNET_SLICER_ENVIRONMENT="1")
    run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *slicer_tests(), *sys.argv[2:], env=env)


def demo():
    ensure_environment()
    fixed, moving = DATA / "sample_fixed.nii.gz", DATA / "KmeansTest_T1UCharRaw.nii.gz"
    run(PYTHON, DATA / "make_sample_pair.py", "--true-field", DEMO_OUT / "true_displacement.nrrd")
    run(BIN / "dirvnet", "register", "--fixed", fixed, "--moving", moving, "--output-dir", DEMO_OUT)
    run(
        BIN / "dirvnet",
        "evaluate",
        "--fixed",
        fixed,
        "--moving",
        moving,
        "--transform",
        DEMO_OUT / "transform.h5",
        "--true-field",
        DEMO_OUT / "true_displacement.nrrd",
        "--mask",
        DATA / "KmeansTest_T1RawSkullStrip.nii.gz",
        "--output-json",
        DEMO_OUT / "evaluation.json",
    )
    print(
        f"\nDemo outputs in {DEMO_OUT}: transform.h5 (ITK, LPS), displacement.nrrd, warped.nrrd, qa.png, "
        "report.json, evaluation.json"
    )


def slicer_tests():
    return sorted({path for pattern in SLICER_TESTS for path in glob.glob(str(ROOT / "Testing" / "Python" / pattern))})


def test():
    ensure_environment()
    ignored = [f"--ignore={path}" for path in slicer_tests()]
    run(PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", *ignored, *sys.argv[2:])
    slicer_test()


def lint():
    ensure_environment()
    run(PYTHON, "-m", "ruff", "format", "--check", ".")
    run(PYTHON, "-m", "ruff", "check", ".")
    run(PYTHON, "-m", "mypy")


if __name__ == "__main__":
    commands = {"demo": demo, "test": test, "slicer-test": slicer_test, "lint": lint}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: python3 dev.py {{{'|'.join(commands)}}} [pytest arguments for test]")
    try:
        commands[sys.argv[1]]()
    except subprocess.CalledProcessError as e:
        sys.exit(e.returncode)

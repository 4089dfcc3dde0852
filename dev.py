#!/usr/bin/env python3
"""Set-up commands of the repository (python3 only; the Makefile calls this).

    python3 dev.py demo   # create/reuse .venv, install, register the bundled sample pair, print figures
    python3 dev.py test   # create/reuse .venv, install with test extras, run the whole test suite
    python3 dev.py lint   # ruff (format check and lint, pyproject.toml's settings) and mypy (typed modules)

The virtual environment is reinstalled only when pyproject.toml changes.
"""

import hashlib
import os
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


def test():
    ensure_environment()
    run(PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", *sys.argv[2:])


def lint():
    ensure_environment()
    run(PYTHON, "-m", "ruff", "format", "--check", ".")
    run(PYTHON, "-m", "ruff", "check", ".")
    run(PYTHON, "-m", "mypy")


if __name__ == "__main__":
    commands = {"demo": demo, "test": test, "lint": lint}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: python3 dev.py {{{'|'.join(commands)}}} [pytest arguments for test]")
    try:
        commands[sys.argv[1]]()
    except subprocess.CalledProcessError as e:
        sys.exit(e.returncode)

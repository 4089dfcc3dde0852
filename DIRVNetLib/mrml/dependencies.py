"""The Python packages DIRVNet needs inside Slicer, and a plan to install the missing ones.

Slicer ships numpy, SimpleITK and VTK (and DIRVNetLib relies on exactly those builds); TensorFlow it
does not. A plan lists the requirements still missing, picks TensorFlow's CUDA build on Linux with
an NVIDIA GPU, and pins the Slicer-shipped packages at their installed versions (a pip constraints
file) so installing never upgrades, downgrades or reinstalls them: pip fails instead, with a message.

Pure Python: nothing here imports Qt or TensorFlow, so the panel can ask before anything heavy loads.
"""

import importlib.metadata
import importlib.util
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

PROTECTED_PACKAGES = ("numpy", "SimpleITK", "vtk")
"""Distributions Slicer ships: never installed, upgraded or downgraded by DIRVNet."""

# Approximate download sizes in MB of the wheels pip fetches (TensorFlow 2.16-2.20 with its own
# dependencies such as keras, h5py, grpcio, ml_dtypes), by platform.system(); for the user's decision only.
_TENSORFLOW_DOWNLOAD_MB = {"Linux": 650, "Windows": 450, "Darwin": 300}
_CUDA_DOWNLOAD_MB = 2800  # the NVIDIA CUDA/cuDNN wheels of tensorflow[and-cuda]
_OTHER_DOWNLOAD_MB = 20


def _requirement_class():
    try:
        from packaging.requirements import Requirement
    except ImportError:  # older Slicer without the 'packaging' distribution; pip always vendors it
        from pip._vendor.packaging.requirements import Requirement
    return Requirement


def read_requirements(path) -> list:
    """Requirement strings of a requirements.txt (comments and blank lines dropped)."""
    lines = (line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines())
    return [line for line in lines if line]


def is_importable(module: str) -> bool:
    """True when ``module`` can be found by the import system (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def is_satisfied(requirement: str) -> bool:
    """True when the installed distribution matches ``requirement`` (name, version, environment marker)
    and its module (the distribution's name, as written or in lower case, ``-`` as ``_``) can be imported."""
    parsed = _requirement_class()(requirement)
    if parsed.marker is not None and not parsed.marker.evaluate():
        return True
    try:
        installed = importlib.metadata.version(parsed.name)
    except importlib.metadata.PackageNotFoundError:
        return False
    module = parsed.name.replace("-", "_")
    return parsed.specifier.contains(installed, prereleases=True) and (
        is_importable(module) or is_importable(module.lower())
    )


def nvidia_gpus() -> list:
    """Names of the NVIDIA GPUs the driver reports (``nvidia-smi -L``); empty when there is none."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return []
    try:
        listing = subprocess.run([executable, "-L"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split(":", 1)[1].split("(UUID")[0].strip() for line in listing.splitlines() if line.startswith("GPU ")]


@dataclass
class InstallPlan:
    """What to install: pip requirement strings, constraints pinning Slicer's packages, approximate size."""

    requirements: list
    constraints: list
    download_mb: int
    gpu_build: bool = False
    notes: list = field(default_factory=list)

    @property
    def needed(self) -> bool:
        return bool(self.requirements)

    def summary(self) -> str:
        """A short text for the confirmation dialog: exact packages, approximate download, notes."""
        lines = ["DIRVNet needs these Python packages, which are not installed yet:", ""]
        lines += [f"  {requirement}" for requirement in self.requirements]
        lines += [
            "",
            f"Download: about {self.download_mb / 1000:.1f} GB (approximate)."
            if self.download_mb >= 1000
            else f"Download: about {self.download_mb} MB (approximate).",
        ]
        lines += self.notes
        if self.constraints:
            lines += [
                "",
                "Kept as Slicer ships them (never reinstalled or changed): "
                + ", ".join(c.replace("==", " ") for c in self.constraints)
                + ".",
            ]
        return "\n".join(lines)

    def panel_text(self) -> str:
        """One line for the panel: what the first Apply installs and its size, or that nothing is needed."""
        if not self.needed:
            return "Python packages: installed."
        size = f"{self.download_mb / 1000:.1f} GB" if self.download_mb >= 1000 else f"{self.download_mb} MB"
        return f"Apply first installs {', '.join(self.requirements)} (about {size} download, after asking)."

    def missing_message(self) -> str:
        """A sentence for a registration asked for before the packages are installed ("" when none is missing)."""
        if not self.needed:
            return ""
        return (
            f"DIRVNet needs {', '.join(self.requirements)}, which is not installed: press Apply in the DIRVNet "
            f"module, or run DIRVNet.DIRVNetLogic().installDependencies() in the Python console."
        )

    def write_constraints(self, path) -> Path:
        """Write the pip constraints file (one ``name==version`` per line) and return its path."""
        path = Path(path)
        path.write_text("".join(f"{line}\n" for line in self.constraints))
        return path


def plan(requirements, system=None, machine=None, gpus=None, missing_only=True) -> InstallPlan:
    """The installation plan for ``requirements`` on this machine (or the given system/machine/GPUs).

    ``system``/``machine``: as ``platform.system()``/``platform.machine()``; ``gpus``: NVIDIA GPU
    names (default: :func:`nvidia_gpus`). TensorFlow becomes ``tensorflow[and-cuda]`` on 64-bit Linux
    with an NVIDIA GPU. Requirements on protected packages are never installed. ``missing_only=False``
    plans the installed requirements too (what a Slicer without them would install).
    """
    system = system or platform.system()
    machine = (machine or platform.machine()).lower()
    protected = {name.lower() for name in PROTECTED_PACKAGES}
    Requirement = _requirement_class()
    missing = [
        r
        for r in requirements
        if Requirement(r).name.lower() not in protected and not (missing_only and is_satisfied(r))
    ]
    notes = []
    gpu_build = False
    to_install = []
    download_mb = 0
    for requirement in missing:
        parsed = Requirement(requirement)
        if parsed.name.lower() == "tensorflow":
            download_mb += _TENSORFLOW_DOWNLOAD_MB.get(system, 650)
            if gpus is None:
                gpus = nvidia_gpus() if system == "Linux" else []
            if system == "Linux" and machine in ("x86_64", "amd64") and gpus:
                gpu_build = True
                parsed.extras = set(parsed.extras) | {"and-cuda"}
                download_mb += _CUDA_DOWNLOAD_MB
                notes.append(f"GPU build (CUDA libraries included) for: {', '.join(gpus)}.")
            elif system == "Windows":
                notes.append("TensorFlow runs on the CPU on Windows (its GPU builds need WSL2).")
            to_install.append(str(parsed))
        else:
            download_mb += _OTHER_DOWNLOAD_MB
            to_install.append(requirement)
    constraints = []
    for name in PROTECTED_PACKAGES:
        try:
            constraints.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue  # Slicer's own VTK build is not a pip distribution: nothing can replace it by name
    return InstallPlan(
        requirements=to_install, constraints=constraints, download_mb=download_mb, gpu_build=gpu_build, notes=notes
    )


def device_description() -> str:
    """One line for the panel: the GPUs TensorFlow sees once it is loaded in this process, otherwise the
    NVIDIA GPUs the driver reports (TensorFlow itself is never imported here)."""
    tensorflow = sys.modules.get("tensorflow")
    if tensorflow is not None and hasattr(tensorflow, "config"):
        gpus = tensorflow.config.list_physical_devices("GPU")
        return f"TensorFlow sees {len(gpus)} GPU(s)." if gpus else "TensorFlow sees no GPU: the CPU is used."
    gpus = nvidia_gpus()
    return f"NVIDIA GPU detected: {', '.join(gpus)}." if gpus else "No NVIDIA GPU detected: the CPU is used."

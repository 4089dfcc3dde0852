"""DIRVNetLib.mrml.dependencies: what the Slicer module asks to install, and what it never touches."""

import importlib.metadata

import pytest

from DIRVNetLib.mrml.dependencies import PROTECTED_PACKAGES, is_satisfied, plan, read_requirements


def test_linux_with_nvidia_gpu_gets_the_cuda_build():
    result = plan(["tensorflow>=99"], system="Linux", machine="x86_64", gpus=["NVIDIA H100 80GB HBM3"])
    assert result.needed and result.gpu_build
    assert result.requirements == ["tensorflow[and-cuda]>=99"]
    assert result.download_mb > 3000
    assert "NVIDIA H100" in result.summary()


@pytest.mark.parametrize(
    "system, machine, gpus",
    [
        ("Linux", "x86_64", []),
        ("Linux", "aarch64", ["NVIDIA GH200"]),
        ("Windows", "AMD64", ["NVIDIA RTX 4090"]),
        ("Darwin", "arm64", []),
    ],
)
def test_cpu_build_elsewhere(system, machine, gpus):
    result = plan(["tensorflow>=99"], system=system, machine=machine, gpus=gpus)
    assert result.requirements == ["tensorflow>=99"] and not result.gpu_build
    assert 100 < result.download_mb < 1000


def test_slicer_packages_are_pinned_and_never_installed():
    result = plan(
        ["numpy>=999", "SimpleITK>=999", "vtk>=999", "tensorflow>=99"], system="Linux", machine="x86_64", gpus=[]
    )
    assert result.requirements == ["tensorflow>=99"]
    for name in ("numpy", "SimpleITK"):
        assert f"{name}=={importlib.metadata.version(name)}" in result.constraints
    assert all(c.split("==")[0] in PROTECTED_PACKAGES for c in result.constraints)
    assert "never reinstalled" in result.summary()


def test_satisfied_requirements_need_nothing():
    result = plan(["pytest>=1", "tensorflow>=2.0 ; python_version < '3'"], system="Linux", machine="x86_64", gpus=[])
    assert not result.needed and result.requirements == [] and result.download_mb == 0
    assert is_satisfied("pytest>=1") and not is_satisfied("pytest>=9999")
    assert is_satisfied("SimpleITK>=1")  # module name as the distribution writes it
    assert not is_satisfied("a-distribution-that-is-not-installed")


def test_constraints_file_and_requirements_file(tmp_path):
    result = plan(["tensorflow>=99"], system="Linux", machine="x86_64", gpus=[])
    path = result.write_constraints(tmp_path / "constraints.txt")
    assert path.read_text().splitlines() == result.constraints
    (tmp_path / "requirements.txt").write_text("# comment\n\ntensorflow>=2.16  # the network\nscipy\n")
    assert read_requirements(tmp_path / "requirements.txt") == ["tensorflow>=2.16", "scipy"]

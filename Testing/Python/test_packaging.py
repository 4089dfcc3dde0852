"""The pip package lists every DIRVNetLib subpackage, ships the bundled weight sets, and declares the
third-party packages it imports (core or the extra of the layer that imports them), nothing more."""

import ast
import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

# import name -> distribution name, for the third-party packages DIRVNetLib imports
DISTRIBUTIONS = {
    "tensorflow": "tensorflow",
    "keras": "keras",
    "numpy": "numpy",
    "SimpleITK": "SimpleITK",
    "matplotlib": "matplotlib",
    "tqdm": "tqdm",
    "vtk": "vtk",
    "slicer": "slicer-core",
    "packaging": "packaging",
    "yaml": "pyyaml",
    "torch": "torch",
    "voxelmorph": "voxelmorph",
    "itk": "itk-elastix",
    "ants": "antspyx",
    "picsl_greedy": "picsl_greedy",
    "nilearn": "nilearn",
}


def _name(requirement):
    return re.split(r"[<>=!;\[ ]", requirement, maxsplit=1)[0].lower()


def _imports(path):
    """Top-level names of the modules ``path`` imports (anywhere in it), with their first-party ones."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    # pip: the installer itself (mrml's fallback for its vendored packaging inside Slicer)
    return names - set(sys.stdlib_module_names) - {"DIRVNetLib", "__future__", "pip"}


def test_every_subpackage_is_listed_in_pyproject():
    setuptools = PROJECT["tool"]["setuptools"]
    on_disk = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "DIRVNetLib").rglob("__init__.py")}
    listed = set(setuptools["packages"])
    assert on_disk - listed == set(), f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"
    assert setuptools["package-dir"]["DIRVNetLib.model_weights"] == "model_weights"
    assert listed - on_disk == {"DIRVNetLib.model_weights"}


def test_dependencies_are_declared_exactly_as_imported():
    core = {_name(r) for r in PROJECT["project"]["dependencies"]}
    extras = {name: {_name(r) for r in values} for name, values in PROJECT["project"]["optional-dependencies"].items()}
    imported = {}
    for path in (ROOT / "DIRVNetLib").rglob("*.py"):
        for name in _imports(path):
            imported.setdefault(name, set()).add(path.relative_to(ROOT / "DIRVNetLib").parts[0])
    unknown = set(imported) - set(DISTRIBUTIONS)
    assert not unknown, f"imported but not declared (add to pyproject.toml and DISTRIBUTIONS): {sorted(unknown)}"
    declared = core | set().union(*extras.values())
    missing = {DISTRIBUTIONS[n].lower() for n in imported} - declared
    assert not missing, f"imported but not declared: {sorted(missing)}"
    library = {DISTRIBUTIONS[n].lower() for n, layers in imported.items() if layers - {"mrml", "comparison"}}
    assert core <= library and library - core == {"nilearn"}  # nilearn (train extra): on demand, named if missing
    assert "nilearn" in extras["train"]
    # the MRML layer's packages are the slicer extra's, and no other layer imports them
    assert {n for n, layers in imported.items() if layers == {"mrml"}} == {"vtk", "slicer", "packaging"}
    assert {"vtk", "slicer-core", "packaging"} <= extras["slicer"] and not {"vtk", "slicer-core"} & core
    # an exact pin or an unbounded TensorFlow would break installs
    requirements = PROJECT["project"]["dependencies"] + [
        r for v in PROJECT["project"]["optional-dependencies"].values() for r in v
    ]
    assert not [r for r in requirements if "==" in r]
    assert any(r.startswith("tensorflow>=") and "<" in r for r in PROJECT["project"]["dependencies"])

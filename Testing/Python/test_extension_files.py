"""The Slicer extension's files: package contents derived from the imports, catalog entry valid, panel (.ui)
consistent with DIRVNet.py.

No Slicer build here: these checks read the files. The catalog rules are those of Slicer's
ExtensionsIndex (scripts/check_description_files.py and the catalog-entry JSON schema v1.0.1).
"""

import ast
import json
import os
import re
import struct
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOP_CMAKE = ROOT / "CMakeLists.txt"
MODULE_DIR = ROOT / "DIRVNet"
MODULE_CMAKE = MODULE_DIR / "CMakeLists.txt"
MODULE_PY = MODULE_DIR / "DIRVNet.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "DIRVNet.ui"
CATALOG_ENTRY = ROOT / "DIRVNet.json"

# Properties allowed by slicer-extension-catalog-entry-schema-v1.0.1.json ("additionalProperties": false).
CATALOG_PROPERTIES = {
    "$schema",
    "category",
    "scm_url",
    "scm_revision",
    "scm_type",
    "build_dependencies",
    "build_subdirectory",
    "enabled",
    "tier",
}
CATALOG_REQUIRED = {"$schema", "category", "scm_url"}
SLICER_SHIPPED = {"numpy", "SimpleITK", "vtk", "slicer", "qt", "ctk", "SampleData", "pip"}
"""Modules every Slicer 5.10+ has (its Python, VTK, Qt bindings, SimpleITK, numpy, pip, the SampleData module)."""
EXTENSION_VARIABLES = (
    "EXTENSION_HOMEPAGE",
    "EXTENSION_CATEGORY",
    "EXTENSION_CONTRIBUTORS",
    "EXTENSION_DESCRIPTION",
    "EXTENSION_ICONURL",
    "EXTENSION_SCREENSHOTURLS",
    "EXTENSION_DEPENDS",
)


def cmake_list(text, variable):
    """The items of ``set(VARIABLE item item ...)`` in a CMake file (comments removed)."""
    text = re.sub(r"#[^\n]*", "", text)
    match = re.search(rf"set\(\s*{variable}\s+(.*?)\)", text, re.DOTALL)
    assert match, f"set({variable} ...) not found"
    return match.group(1).split()


def cmake_string(text, variable):
    match = re.search(rf'set\(\s*{variable}\s+"([^"]*)"', text)
    return match.group(1) if match else None


def files_under(folder, suffixes=None):
    """Repository-relative paths of the files under ``folder`` (bytecode caches excluded)."""
    return sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / folder).rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and p.suffix != ".pyc"
        and (suffixes is None or p.suffix in suffixes)
    )


def package_lists():
    """The lists tools/package_files.py writes for CMake: {variable: [repository-relative path, ...]}."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import package_files
    finally:
        sys.path.pop(0)
    text = package_files.cmake_text()
    return {
        name: cmake_list(text, name)
        for name in ("DIRVNETLIB_PYTHON_SCRIPTS", "DIRVNETLIB_RESOURCES", "DIRVNET_SAMPLE_DATA")
    }


# --- What the extension package installs ----------------------------------------------------------


def test_package_lists_are_generated_at_configure_time():
    text = MODULE_CMAKE.read_text()
    assert "tools/package_files.py --cmake ${DIRVNET_PACKAGE_LISTS}" in text
    assert "include(${DIRVNET_PACKAGE_LISTS})" in text
    assert "CMAKE_CONFIGURE_DEPENDS" in text
    assert not re.search(r"^\s+(DIRVNetLib|model_weights|Testing)/", text, re.MULTILINE), "a file list kept by hand"
    for variable in ("DIRVNETLIB_PYTHON_SCRIPTS", "DIRVNETLIB_RESOURCES", "DIRVNET_SAMPLE_DATA"):
        assert f"${{{variable}}}" in text


def test_generated_lists_name_existing_files_and_every_bundled_weight_set():
    lists = package_lists()
    for variable, paths in lists.items():
        assert paths, f"{variable} is empty"
        gone = [path for path in paths if not (ROOT / path).is_file()]
        assert not gone, f"{variable} names files that do not exist: {gone}"
    weight_sets = {p.parent.name for p in (ROOT / "model_weights").glob("*/metadata.json")}
    assert {"mr2d", "mr3d"} <= weight_sets
    files = ("config.json", "metadata.json", "weights.npz")
    assert sorted(lists["DIRVNETLIB_RESOURCES"]) == sorted(
        f"model_weights/{name}/{file}" for name in weight_sets for file in files
    )


def test_package_holds_the_inference_core_and_not_training_cli_or_benchmarks():
    scripts = package_lists()["DIRVNETLIB_PYTHON_SCRIPTS"]
    for needed in (
        "DIRVNetLib/registration/worker.py",
        "DIRVNetLib/registration/api.py",
        "DIRVNetLib/mrml/background.py",
        "DIRVNetLib/ops/bspline.py",
        "DIRVNetLib/model/network.py",
        "DIRVNetLib/io/weights.py",
    ):
        assert needed in scripts
    for folder in ("training", "cli", "comparison"):
        assert not [path for path in scripts if path.startswith(f"DIRVNetLib/{folder}/")]


def guarded_imports(tree):
    """ids of the nodes inside a ``try`` whose handler catches ImportError (optional imports)."""
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers
        ):
            guarded.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return guarded


def third_party_imports(path):
    """Top-level names of the non-standard-library modules ``path`` imports unconditionally."""
    tree = ast.parse(path.read_text())
    guarded = guarded_imports(tree)
    names = set()
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"DIRVNetLib"}


def test_every_import_of_the_package_is_shipped_by_slicer_or_installed_by_the_plan():
    from DIRVNetLib.mrml.dependencies import read_requirements

    planned = {
        re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower()
        for r in read_requirements(MODULE_DIR / "Resources" / "requirements.txt")
    }
    files = [MODULE_PY] + [ROOT / p for p in package_lists()["DIRVNETLIB_PYTHON_SCRIPTS"]]
    imported = {}
    for path in files:
        for name in third_party_imports(path):
            imported.setdefault(name, []).append(path.relative_to(ROOT).as_posix())
    unplanned = {
        name: where for name, where in imported.items() if name not in SLICER_SHIPPED and name.lower() not in planned
    }
    assert not unplanned, f"imported by the package, but neither in Slicer nor in the install plan: {unplanned}"
    assert "tensorflow" in imported


def test_what_the_module_and_a_registration_load_is_in_the_package(tmp_path):
    """A fresh interpreter runs DIRVNet.py's DIRVNetLib imports and a registration as the worker runs it
    (a tiny 2D network): every DIRVNetLib module it loads must be in the package."""
    from test_mrml_register import tiny_weight_set
    from test_slicer_without_tensorflow import dirvnetlib_imports

    weights = tiny_weight_set(tmp_path / "tiny2d", 2)
    statements = "\n".join(f"    {statement}" for statement in dirvnetlib_imports())
    script = tmp_path / "run.py"
    script.write_text(f"""
import json, sys
import SimpleITK as sitk

def module_imports():
{statements}

module_imports()
import DIRVNetLib, DIRVNetLib.registration.worker
image = sitk.ReadImage({str(ROOT / "Testing" / "Data" / "BrainT1Slice.png")!r}, sitk.sitkFloat32)
DIRVNetLib.register(image, image, weights={weights!r}, keep_intermediate=True)
print(json.dumps(sorted(m.__file__ for name, m in sys.modules.items() if name.split(".")[0] == "DIRVNetLib")))
""")
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = {Path(f).resolve().relative_to(ROOT).as_posix() for f in json.loads(done.stdout.splitlines()[-1])}
    packaged = set(package_lists()["DIRVNETLIB_PYTHON_SCRIPTS"])
    assert loaded - packaged == set()
    assert {"DIRVNetLib/ops/bspline.py", "DIRVNetLib/registration/api.py"} <= loaded


def test_module_resources_are_listed_and_exist():
    text = MODULE_CMAKE.read_text().replace("${MODULE_NAME}", "DIRVNet")
    listed = cmake_list(text, "MODULE_PYTHON_RESOURCES")
    on_disk = [Path(p).relative_to("DIRVNet").as_posix() for p in files_under("DIRVNet/Resources")]
    assert sorted(listed) == sorted(on_disk)
    assert cmake_list(text, "MODULE_PYTHON_SCRIPTS") == ["DIRVNet.py"]
    assert "slicerMacroBuildScriptedModule(" in text
    assert "slicer_add_python_unittest(SCRIPT DIRVNet.py)" in text


def test_sample_pair_is_installed_and_known_to_the_module():
    listed = package_lists()["DIRVNET_SAMPLE_DATA"]
    module = ast.parse(MODULE_PY.read_text())
    sample_files = next(
        ast.literal_eval(node.value)
        for node in module.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "SAMPLE_FILES"
    )
    assert [Path(path).name for path in listed] == list(sample_files)
    assert "DESTINATION ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/DIRVNetSampleData" in MODULE_CMAKE.read_text()


def test_requirements_name_only_what_slicer_lacks():
    from DIRVNetLib.mrml.dependencies import PROTECTED_PACKAGES, read_requirements

    requirements = read_requirements(MODULE_DIR / "Resources" / "requirements.txt")
    names = [re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower() for r in requirements]
    assert "tensorflow" in names
    assert not set(names) & {p.lower() for p in PROTECTED_PACKAGES}


# --- Extension metadata and the catalog entry ------------------------------------------------------


def test_top_level_cmake_follows_the_extension_template():
    text = TOP_CMAKE.read_text()
    assert re.search(r"^project\(DIRVNet\)", text, re.MULTILINE)
    for variable in EXTENSION_VARIABLES:
        assert cmake_string(text, variable), f"{variable} is not set"
    assert cmake_string(text, "EXTENSION_CATEGORY") == "Registration"
    for line in (
        "find_package(Slicer REQUIRED)",
        "include(${Slicer_USE_FILE})",
        "add_subdirectory(DIRVNet)",
        "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
        "include(${Slicer_EXTENSION_CPACK})",
    ):
        assert line in text


def raw_github_file(url):
    """The repository file a raw.githubusercontent.com URL points to (owner/repo/branch/path)."""
    parts = urlsplit(url)
    assert parts.scheme == "https" and parts.netloc == "raw.githubusercontent.com", url
    return ROOT / Path(*parts.path.split("/")[4:])


def png_size(path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def test_icon_and_screenshot_urls_point_to_files_in_the_repository():
    text = TOP_CMAKE.read_text()
    # The catalog check reads both with these patterns (single-line, quoted, starting with http).
    icon = re.findall(r'set\s*\(EXTENSION_ICONURL\s*"([^"]+)"[ ]*\)', text)
    screenshots = re.findall(r'set\s*\(EXTENSION_SCREENSHOTURLS\s*"([^"]+)"\)', text)
    assert len(icon) == 1 and screenshots
    assert png_size(raw_github_file(icon[0])) == (128, 128)
    for url in screenshots[0].split():
        assert raw_github_file(url).is_file(), url
    assert png_size(MODULE_DIR / "Resources" / "Icons" / "DIRVNet.png") == (128, 128)


def test_catalog_entry_matches_schema_and_checks():
    entry = json.loads(CATALOG_ENTRY.read_text())
    assert CATALOG_REQUIRED <= set(entry) <= CATALOG_PROPERTIES
    assert "slicer-extension-catalog-entry-schema-v1.0.1.json" in entry["$schema"]
    assert entry["category"] == cmake_string(TOP_CMAKE.read_text(), "EXTENSION_CATEGORY")
    url = urlsplit(entry["scm_url"])
    assert url.scheme == "https"
    assert "slicer" in Path(url.path).stem.lower(), "the catalog asks for a repository name containing 'Slicer'"
    assert isinstance(entry.get("tier", 1), int) and 1 <= entry.get("tier", 1) <= 5
    assert entry.get("build_subdirectory", ".") == "."
    assert CATALOG_ENTRY.stem == re.search(r"^project\((\w+)\)", TOP_CMAKE.read_text(), re.MULTILINE).group(1)


def test_license_and_readme_files_exist():
    """The catalog check requires a license file in the repository root; CMake packages both files."""
    text = TOP_CMAKE.read_text()
    for variable in ("EXTENSION_LICENSE_FILE", "EXTENSION_README_FILE"):
        path = re.search(rf"set\({variable}\s+\$\{{CMAKE_CURRENT_SOURCE_DIR\}}/(\S+)\)", text).group(1)
        assert (ROOT / path).is_file(), f"{variable}: {path} is missing from the repository root"


# --- The panel ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ui_widgets():
    tree = ElementTree.parse(UI_FILE)
    return {widget.get("name"): widget for widget in tree.iter("widget")}, tree


def parameter_fields():
    """Field names of the @parameterNodeWrapper class in DIRVNet.py."""
    module = ast.parse(MODULE_PY.read_text())
    cls = next(node for node in module.body if isinstance(node, ast.ClassDef) and node.name == "DIRVNetParameterNode")
    return [node.target.id for node in cls.body if isinstance(node, ast.AnnAssign)]


def test_every_widget_dirvnet_py_uses_exists_in_the_ui(ui_widgets):
    widgets, _ = ui_widgets
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_PY.read_text()))
    used |= set(re.findall(r'"(\w+CollapsibleButton)"', MODULE_PY.read_text()))
    missing = sorted(name for name in used if name not in widgets)
    assert not missing, f"DIRVNet.py uses widgets that DIRVNet.ui lacks: {missing}"


def test_ui_parameter_names_match_the_parameter_node(ui_widgets):
    widgets, _ = ui_widgets
    bound = {}
    for name, widget in widgets.items():
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.find("string").text] = name
    fields = parameter_fields()
    assert set(bound) <= set(fields), f"unknown parameters in the .ui: {set(bound) - set(fields)}"
    # weightSet is bound by hand (its combo box is filled with the bundled weight sets at run time).
    assert set(fields) - set(bound) == {"weightSet"}
    assert "_parameterNode.weightSet =" in MODULE_PY.read_text()


def test_ui_node_selectors_receive_the_scene(ui_widgets):
    widgets, tree = ui_widgets
    combos = {name for name, widget in widgets.items() if widget.get("class") == "qMRMLNodeComboBox"}
    connected = {
        c.findtext("receiver")
        for c in tree.iter("connection")
        if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
    }
    assert combos and combos == connected
    assert widgets["DIRVNet"].get("class") == "qMRMLWidget"

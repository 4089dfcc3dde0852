"""The pip package lists every DIRVNetLib subpackage and ships the bundled weight sets."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_subpackage_is_listed_in_pyproject():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "DIRVNetLib").rglob("__init__.py")
    }
    listed = set(setuptools["packages"])
    assert on_disk - listed == set(), f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"
    assert setuptools["package-dir"]["DIRVNetLib.model_weights"] == "model_weights"
    assert listed - on_disk == {"DIRVNetLib.model_weights"}

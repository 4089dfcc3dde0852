"""Bundled weight sets described from their metadata.json alone (no TensorFlow import, no checksum).

The panel lists them before TensorFlow is installed; :mod:`DIRVNetLib.io.weights` loads and verifies
them when a registration runs. The folders searched are the same as there: ``$DIRVNET_WEIGHTS_DIR``,
then ``model_weights/`` inside the DIRVNetLib package, then next to it (source checkout, Slicer module).
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

import DIRVNetLib
from DIRVNetLib.errors import WeightSetError


@dataclass(frozen=True)
class WeightSetInfo:
    """A weight set's name (folder name), image dimension (2 or 3), description and folder."""

    name: str
    dimension: int
    description: str
    path: Path


def _search_directories():
    package = Path(DIRVNetLib.__file__).resolve().parent
    candidates = [package / "model_weights", package.parent / "model_weights"]
    if os.environ.get("DIRVNET_WEIGHTS_DIR"):
        candidates.insert(0, Path(os.environ["DIRVNET_WEIGHTS_DIR"]))
    return [c for c in candidates if c.is_dir()]


def read_info(folder) -> WeightSetInfo:
    """Describe the weight set in ``folder`` from its metadata.json (raises WeightSetError)."""
    folder = Path(folder)
    metadata = folder / "metadata.json"
    try:
        content = json.loads(metadata.read_text())
        return WeightSetInfo(folder.name, int(content["dimension"]), str(content.get("description", "")), folder)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise WeightSetError(f"Cannot read weight set {folder}: {metadata} is missing or has no 'dimension' "
                             f"({e})") from e


def bundled() -> list:
    """The bundled weight sets (first folder wins for a name), sorted by name."""
    found = {}
    for directory in _search_directories():
        for child in sorted(directory.iterdir()):
            if child.name not in found and (child / "metadata.json").is_file():
                found[child.name] = read_info(child)
    return [found[name] for name in sorted(found)]


def describe(weights) -> WeightSetInfo:
    """Info of a weight set given as a folder path or a bundled name (raises WeightSetError)."""
    if Path(weights).is_dir():
        return read_info(weights)
    for info in bundled():
        if info.name == str(weights):
            return info
    names = ", ".join(info.name for info in bundled()) or "none"
    raise WeightSetError(f"Weight set '{weights}' is neither a folder nor a bundled weight set (bundled: {names}).")

"""Weight sets: a folder with ``config.json`` (network), ``weights.npz`` and ``metadata.json``.

metadata.json holds ``dimension``, ``description``, ``training`` (data, command, figures),
``library_version``, ``weights_sha256`` (of weights.npz) and ``config_sha256`` (of config.json's values:
:func:`config_sha256`); both are checked on every load, so every file that changes the result is covered.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import DIRVNetLib
from DIRVNetLib.errors import WeightSetError
from DIRVNetLib.io.atomic import atomic_path
from DIRVNetLib.model import NetworkConfig

WEIGHTS_FILE = "weights.npz"
DEFAULT_FOR_DIMENSION = {2: "mr2d", 3: "mr3d"}


@dataclasses.dataclass
class WeightSet:
    """A loaded weight set: network config, ``{name: array}`` weights, metadata, and where it came from."""

    config: NetworkConfig
    weights: dict[str, np.ndarray]
    metadata: dict[str, Any]
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def dimension(self) -> int:
        return self.config.ndim

    @property
    def description(self) -> str:
        return str(self.metadata.get("description", ""))

    @property
    def checksum(self) -> str:
        """sha256 of the network config and the weights together (what determines the result)."""
        both = f"{self.metadata.get('config_sha256')}:{self.metadata['weights_sha256']}"
        return hashlib.sha256(both.encode()).hexdigest()


def bundled_directories() -> list[Path]:
    """Folders searched for bundled weight sets: ``$DIRVNET_WEIGHTS_DIR``, then ``model_weights/``
    inside the installed package, then next to it (source checkout and Slicer module layout)."""
    package = Path(DIRVNetLib.__file__).resolve().parent
    candidates = [package / "model_weights", package.parent / "model_weights"]
    if os.environ.get("DIRVNET_WEIGHTS_DIR"):
        candidates.insert(0, Path(os.environ["DIRVNET_WEIGHTS_DIR"]))
    return [c for c in candidates if c.is_dir()]


@dataclasses.dataclass(frozen=True)
class WeightSetInfo:
    """A weight set described from its metadata.json alone (no checksum, no TensorFlow)."""

    name: str
    dimension: int
    description: str
    path: Path


def read_info(folder: str | os.PathLike[str]) -> WeightSetInfo:
    """Describe the weight set in ``folder`` (raises :class:`WeightSetError`)."""
    folder = Path(folder)
    metadata = _read_json(folder / "metadata.json", "metadata")
    try:
        return WeightSetInfo(folder.name, int(metadata["dimension"]), str(metadata.get("description", "")), folder)
    except (KeyError, TypeError, ValueError) as e:
        raise WeightSetError(f"weight set metadata {folder / 'metadata.json'} has no valid 'dimension'") from e


def bundled_infos() -> list[WeightSetInfo]:
    """The bundled weight sets (the first folder holding a name wins), sorted by name."""
    found: dict[str, WeightSetInfo] = {}
    for directory in bundled_directories():
        for child in sorted(directory.iterdir()):
            if child.name not in found and (child / "metadata.json").is_file():
                found[child.name] = read_info(child)
    return [found[name] for name in sorted(found)]


def resolve(weights: str | os.PathLike[str] | None, dimension: int | None) -> Path:
    """Path of a weight set given ``None`` (bundled default for ``dimension``), a bundled name, or a folder."""
    if weights is None:
        if dimension is None:
            raise WeightSetError("no weight set given and no image dimension to choose the bundled default for")
        weights = DEFAULT_FOR_DIMENSION[dimension]
    path = Path(weights)
    if path.is_dir():
        return path
    for info in bundled_infos():
        if info.name == str(weights):
            return info.path
    names = ", ".join(info.name for info in bundled_infos()) or "none"
    raise WeightSetError(f"weight set '{weights}' not found: neither a folder nor a bundled name (bundled: {names})")


def describe(weights: str | os.PathLike[str]) -> WeightSetInfo:
    """:class:`WeightSetInfo` of a weight-set folder or a bundled name."""
    return read_info(resolve(weights, dimension=None))


def sha256_of(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def config_sha256(config_dict: Mapping[str, Any]) -> str:
    """sha256 of a network config's values: its JSON with sorted keys and no spaces, so that reformatting
    or line endings do not change it, but any value does."""
    return hashlib.sha256(json.dumps(config_dict, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _read_json(path: str | os.PathLike[str], what: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as e:
        raise WeightSetError(f"weight set incomplete: {path} is missing ({what})") from e
    except (OSError, ValueError) as e:
        raise WeightSetError(f"weight set {what} {path} is unreadable: {e}") from e


def load_weight_set(path: str | os.PathLike[str]) -> WeightSet:
    """Load and verify the weight set in folder ``path`` (raises :class:`WeightSetError`)."""
    path = Path(path)
    if not path.is_dir():
        raise WeightSetError(f"weight set folder {path} does not exist")
    config_dict = _read_json(path / "config.json", "config")
    try:
        config = NetworkConfig.from_dict(config_dict)
    except (TypeError, ValueError) as e:
        if isinstance(e, WeightSetError):
            raise
        raise WeightSetError(f"weight set config {path / 'config.json'} is invalid: {e}") from e
    metadata = _read_json(path / "metadata.json", "metadata")
    weights_path = path / WEIGHTS_FILE
    if not weights_path.is_file():
        raise WeightSetError(f"weight set incomplete: {weights_path} is missing")
    expected = metadata.get("weights_sha256")
    actual = sha256_of(weights_path)
    if expected != actual:
        raise WeightSetError(
            f"weight file {weights_path} is corrupt or was changed: sha256 {actual[:12]}... does not match "
            f"metadata.json ({str(expected)[:12]}...)"
        )
    _check_config(path, metadata, config_dict)
    if metadata.get("dimension") != config.ndim:
        raise WeightSetError(
            f"weight set {path}: metadata dimension {metadata.get('dimension')} != config ndim {config.ndim}"
        )
    return WeightSet(config=config, weights=_arrays(weights_path, actual), metadata=metadata, path=path)


def _check_config(path: Path, metadata: Mapping[str, Any], config_dict: Mapping[str, Any]) -> None:
    """Compare config.json's values with metadata's ``config_sha256`` (sets saved before it existed
    carry none: they load with a logged warning)."""
    expected = metadata.get("config_sha256")
    if expected is None:
        logging.getLogger(__name__).warning("weight set %s has no config_sha256: its config.json is not verified", path)
        return
    actual = config_sha256(config_dict)
    if expected != actual:
        raise WeightSetError(
            f"weight set config {path / 'config.json'} was changed: sha256 {actual[:12]}... of its values does "
            f"not match metadata.json ({str(expected)[:12]}...)"
        )


_ARRAYS: dict[
    str, dict[str, np.ndarray]
] = {}  # sha256 of a weight file -> its arrays (read-only): a verified file is unpacked once


def _arrays(weights_path: Path, sha256: str) -> dict[str, np.ndarray]:
    """``{name: read-only array}`` of the weight file whose content has hash ``sha256`` (just checked)."""
    if sha256 not in _ARRAYS:
        try:
            with np.load(weights_path) as archive:
                arrays = {name: archive[name] for name in archive.files}
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise WeightSetError(f"weight file {weights_path} is unreadable: {e}") from e
        for array in arrays.values():
            array.flags.writeable = False
        _ARRAYS[sha256] = arrays
    return dict(_ARRAYS[sha256])


def save_weight_set(
    path: str | os.PathLike[str],
    config: NetworkConfig,
    weights: Mapping[str, npt.ArrayLike],
    description: str,
    training: Mapping[str, Any],
) -> dict[str, Any]:
    """Write a weight set folder (each file whole); ``training`` is a JSON-able dict (data, command,
    figures). Returns the metadata written."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with atomic_path(path / WEIGHTS_FILE) as tmp:
        with open(tmp, "wb") as handle:
            arrays = {name: np.asarray(value, np.float32) for name, value in weights.items()}
            np.savez(handle, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as savez's options
        digest = sha256_of(tmp)
    metadata = {
        "dimension": config.ndim,
        "description": description,
        "training": training,
        "library_version": DIRVNetLib.__version__,
        "weights_sha256": digest,
        "config_sha256": config_sha256(config.to_dict()),
    }
    for name, text in (("config.json", config.to_json()), ("metadata.json", json.dumps(metadata, indent=2))):
        with atomic_path(path / name) as tmp:
            tmp.write_text(text + "\n")
    return metadata

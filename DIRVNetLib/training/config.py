"""The training run configuration: typed sections behind one strict loader.

A run is a JSON object (examples: ``model_weights/*/train*.json``); every key but ``network`` and
``data`` is optional, and ``network`` may be left out with ``init`` (it is then the weight set's)::

    {"network": {...NetworkConfig...}, "description": "...",
     "data": {...DataConfig...},        # synthetic deformations, or {"pairs": FOLDER, ...}
     "steps": 1000, "batch_size": 1, "learning_rate": 0.001, "seed": 0, "checkpoint_every": 100,
     "loss": "supervised",              # a preset name ("ncc", "mse", "hybrid") or {...LossConfig..., "preset": ...}
     "schedule": "constant",            # a kind name or {...ScheduleConfig...}
     "validation": {...ValidationConfig...},
     "tensorboard": true,               # or {...TensorBoardConfig...}
     "strategy": "default",             # one of STRATEGIES
     "init": null}                      # a weight set (folder or bundled name) to start from

:func:`load_run` turns such an object into a :class:`RunConfig`; every section is read by
:func:`from_mapping`, which refuses unknown keys by name. The command line parses a file at the door
(:func:`read_run`) and passes the typed configuration down.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from DIRVNetLib.data.deformations import DeformationFamily
from DIRVNetLib.model.config import NetworkConfig, from_mapping
from DIRVNetLib.training.losses import LossConfig

STRATEGIES = ("default", "mirrored", "multiworker")
"""tf.distribute strategies by name (see :mod:`DIRVNetLib.training.strategy`)."""

SOURCES = ("chessboard", "shapes", "volumes")
"""Synthetic training image sources (see :class:`DIRVNetLib.data.pairs.PairSampler`)."""

SCHEDULE_KINDS = ("constant", "cosine", "step", "exponential")


def _floats(values: Any, where: str) -> tuple[float, ...]:
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"{where} must be a list of numbers, got {values!r}")
    return tuple(float(v) for v in values)


def _ints(values: Any, where: str) -> tuple[int, ...]:
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{where} must be a list of integers, got {values!r}")
    return tuple(values)


def _check_int(value: Any, name: str, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _set(instance: Any, name: str, value: Any) -> None:
    object.__setattr__(instance, name, value)  # normalising a frozen dataclass in __post_init__


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Intensity augmentation of every training image (see ``augment_intensity``); None: the sampler's
    default (synthetic pairs: noise 0.02, gamma 0.3; pair folders: noise 0.01, gamma 0.1; bias and
    saturation off)."""

    noise: float | None = None
    gamma: float | None = None
    bias: float | None = None
    saturation: float | None = None

    def given(self) -> dict[str, float]:
        """The values set, as keyword arguments of the samplers."""
        return {k: float(v) for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What the network trains on: synthetic deformations (swap trick) of ``sources`` images, or the
    image pairs of the folder ``pairs`` (unsupervised).

    patch_shape: training patch, array order (default: 128^2 in 2D, 64^3 in 3D, padded to the network's
    size rule). max_magnitude: largest synthetic displacement (voxels; default with ``init``: twice the
    control spacing). sources: from :data:`SOURCES` (default chessboard and shapes). volumes: real
    images for "volumes" (files, folders, DICOM series folders, ``nilearn:NAME``). volume_spacing:
    isotropic resampling of volumes and pairs (mm). affine_scale: affine part of the synthetic fields.
    shape_blur: ``(low, high)`` edge blur of "shapes" images (voxels). control_points: ``(low, high)``
    control points per axis of the synthetic fields. slice_thickness: simulated slice thickness up to
    this many voxels (synthetic data only; None or 1: off). deformation: the family of synthetic fields
    (:class:`DeformationFamily`, e.g. ``{"family": "mixed"}``; default: smooth fields only).
    """

    patch_shape: tuple[int, ...] | None = None
    max_magnitude: float | None = None
    sources: tuple[str, ...] | None = None
    volumes: tuple[str, ...] | None = None
    volume_spacing: float | None = None
    affine_scale: float = 0.1
    augmentation: Augmentation = Augmentation()
    pairs: str | None = None
    shape_blur: tuple[float, ...] = (0.7, 0.7)
    control_points: tuple[int, ...] = (5, 5)
    slice_thickness: float | None = None
    deformation: DeformationFamily = DeformationFamily()

    def __post_init__(self) -> None:
        if isinstance(self.deformation, dict):
            _set(self, "deformation", from_mapping(DeformationFamily, self.deformation, "'data.deformation'"))
        elif self.deformation is None:
            _set(self, "deformation", DeformationFamily())
        if isinstance(self.augmentation, dict):
            _set(self, "augmentation", from_mapping(Augmentation, self.augmentation, "'data.augmentation'"))
        elif self.augmentation is None:
            _set(self, "augmentation", Augmentation())
        if self.patch_shape is not None:
            _set(self, "patch_shape", _ints(self.patch_shape, "data.patch_shape"))
        for name in ("sources", "volumes"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, str) or not isinstance(value, (list, tuple)):
                    raise ValueError(f"data.{name} must be a list, got {value!r}")
                _set(self, name, tuple(str(v) for v in value))
        _set(self, "shape_blur", _floats(self.shape_blur, "data.shape_blur"))
        _set(self, "control_points", _ints(self.control_points, "data.control_points"))
        if self.pairs is not None:
            _set(self, "pairs", str(self.pairs))
        unknown = sorted(set(self.sources or ()) - set(SOURCES))
        if unknown:
            raise ValueError(f"unknown training sources {unknown}; choose from {SOURCES}")
        if self.pairs:
            if self.sources is not None or self.volumes is not None:
                raise ValueError("data: give either 'pairs' (a folder of image pairs) or 'sources'/'volumes', not both")
            if self.slice_thickness is not None:
                raise ValueError("data: 'slice_thickness' applies to synthetic deformations, not to a 'pairs' folder")
            if self.deformation != DeformationFamily():
                raise ValueError("data: 'deformation' applies to synthetic deformations, not to a 'pairs' folder")

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["augmentation"] = self.augmentation.given()
        if self.deformation == DeformationFamily():
            del values["deformation"]  # the default: runs recorded before the option keep their identity
        else:
            values["deformation"] = self.deformation.to_dict()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule over the run's steps (see :mod:`DIRVNetLib.training.schedule`).

    kind: one of :data:`SCHEDULE_KINDS`. warmup_steps: linear ramp up to the peak over the first steps.
    final_fraction: cosine: the rate at the last step, as a fraction of the peak. milestones, factor:
    step: multiply by ``factor`` at each milestone step. decay_steps, decay_rate: exponential:
    ``rate * decay_rate ** (steps after the warm-up / decay_steps)``.
    """

    kind: str = "constant"
    warmup_steps: int = 0
    final_fraction: float = 0.05
    milestones: tuple[int, ...] = ()
    factor: float = 0.3
    decay_steps: int = 1000
    decay_rate: float = 0.5

    def __post_init__(self) -> None:
        _set(self, "milestones", _ints(self.milestones, "schedule.milestones"))
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"unknown schedule kind '{self.kind}'; choose from {', '.join(SCHEDULE_KINDS)}")
        if self.warmup_steps < 0 or self.decay_steps <= 0:
            raise ValueError("schedule warmup_steps must be >= 0 and decay_steps > 0")

    @classmethod
    def from_value(cls, value: Any) -> ScheduleConfig:
        """From a kind name, an object of fields, or None (constant)."""
        if isinstance(value, str):
            value = {"kind": value}
        return from_mapping(cls, {} if value is None else value, "'schedule'")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "milestones": list(self.milestones)}


@dataclasses.dataclass(frozen=True)
class ValidationConfig:
    """Held-out pairs measured during training. pairs: how many (0: none); every: every this many steps
    (default: the checkpoint interval); seed: of their random streams (never used by training);
    folder: a pair folder to validate on instead of held-out draws of the training data."""

    pairs: int = 8
    every: int | None = None
    seed: int = 1
    folder: str | None = None

    def __post_init__(self) -> None:
        _check_int(self.pairs, "validation.pairs", 0)
        if self.every is not None:
            _check_int(self.every, "validation.every", 1)


@dataclasses.dataclass(frozen=True)
class TensorBoardConfig:
    """TensorBoard summaries in ``RUN/tensorboard``: scalars every ``scalars_every`` steps, images and
    activation plots every ``images_every`` steps (default: with every validation)."""

    enabled: bool = True
    scalars_every: int = 1
    images_every: int | None = None

    def __post_init__(self) -> None:
        _check_int(self.scalars_every, "tensorboard.scalars_every", 1)
        if self.images_every is not None:
            _check_int(self.images_every, "tensorboard.images_every", 1)

    @classmethod
    def from_value(cls, value: Any) -> TensorBoardConfig:
        """From an object of fields, true/false (``{"enabled": ...}``) or None (the defaults)."""
        if isinstance(value, bool):
            value = {"enabled": value}
        return from_mapping(cls, {} if value is None else value, "'tensorboard'")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One training run (see the module docstring for the JSON form and :func:`load_run`)."""

    network: NetworkConfig | None = None
    data: DataConfig | None = None
    description: str = ""
    steps: int = 1000
    batch_size: int = 1
    learning_rate: float = 1e-3
    seed: int = 0
    checkpoint_every: int = 100
    loss: LossConfig = LossConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    validation: ValidationConfig = ValidationConfig()
    tensorboard: TensorBoardConfig = TensorBoardConfig()
    strategy: str = "default"
    init: str | None = None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy '{self.strategy}'; choose from {', '.join(STRATEGIES)}")
        _check_int(self.steps, "steps", 0)
        _check_int(self.batch_size, "batch_size", 1)
        _check_int(self.checkpoint_every, "checkpoint_every", 1)
        _check_int(self.seed, "seed", 0)
        if not isinstance(self.learning_rate, (int, float)) or not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be a number > 0, got {self.learning_rate!r}")
        if self.init is not None:
            _set(self, "init", str(self.init))

    @property
    def validation_every(self) -> int:
        """Steps between validations (default: the checkpoint interval)."""
        return self.validation.every or self.checkpoint_every

    @property
    def images_every(self) -> int:
        """Steps between TensorBoard images (default: with every validation)."""
        return self.tensorboard.images_every or self.validation_every

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The complete configuration as JSON values; :func:`load_run` reads it back unchanged."""
        values: dict[str, Any] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in ("network", "data", "loss", "schedule"):
            values[name] = None if values[name] is None else values[name].to_dict()
        values["validation"] = dataclasses.asdict(self.validation)
        values["tensorboard"] = dataclasses.asdict(self.tensorboard)
        if values["network"] is None:
            del values["network"]
        return values


def load_run(values: Any, need_network: bool = True, need_data: bool = True) -> RunConfig:
    """The :class:`RunConfig` of a run object (see the module docstring); ValueError names the problem.

    need_network, need_data: whether those sections must be present (not when ``init`` or a pairs
    folder given on the command line provide them)."""
    if not isinstance(values, dict):
        raise ValueError(f"the run configuration must be a JSON object, got {type(values).__name__}")
    need_network = need_network and not values.get("init")
    for key, needed in (("network", need_network), ("data", need_data)):
        if needed and key not in values:
            raise ValueError(f"the run configuration has no '{key}' section")
    sections = dict(values)
    if sections.get("network") is not None:
        sections["network"] = from_mapping(NetworkConfig, sections["network"], "'network'")
    if sections.get("data") is not None:
        sections["data"] = from_mapping(DataConfig, sections["data"], "'data'")
    sections["loss"] = LossConfig.from_value(sections.get("loss"))
    sections["schedule"] = ScheduleConfig.from_value(sections.get("schedule"))
    sections["validation"] = from_mapping(ValidationConfig, sections.get("validation") or {}, "'validation'")
    sections["tensorboard"] = TensorBoardConfig.from_value(sections.get("tensorboard"))
    for key in ("description", "init", "strategy"):
        if key in sections and sections[key] is None:
            del sections[key]
    return from_mapping(RunConfig, sections, "the run configuration")


def read_run(path: str | Path, need_network: bool = True, need_data: bool = True) -> RunConfig:
    """:func:`load_run` of a JSON file; the error names the file."""
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"training configuration {path} is unreadable: {e}") from e
    try:
        return load_run(values, need_network, need_data)
    except (TypeError, ValueError) as e:
        raise ValueError(f"training configuration {path}: {e}") from e


FINETUNE_DEFAULTS = {"steps": 500, "learning_rate": 1e-4}
"""Steps and learning rate of ``dirvnet train --init W`` without a configuration file."""


def finetune_run(
    run: RunConfig | None,
    init: str | Path | None = None,
    pairs: str | Path | None = None,
    patch_shape: list[int] | None = None,
    **overrides: Any,
) -> RunConfig:
    """``run`` (or a fine-tuning default) with what the command line gives.

    init: weight set to start from; pairs: folder of image pairs (unsupervised; a supervised loss
    becomes "ncc" unless ``loss`` is given); patch_shape: patch shape; overrides: run fields (None
    values ignored; ``loss`` may be a preset name). Without data, fine-tuning uses synthetic
    chessboard and shapes images.
    """
    run = run if run is not None else RunConfig(**FINETUNE_DEFAULTS)  # type: ignore[arg-type]
    changes = {k: v for k, v in overrides.items() if v is not None}
    if "loss" in changes:
        changes["loss"] = LossConfig.from_value(changes["loss"])
    if init is not None:
        changes["init"] = str(init)
    data = run.data
    if pairs is not None:
        data = dataclasses.replace(data or DataConfig(), sources=None, volumes=None, pairs=str(pairs))
        if "loss" not in changes and run.loss.supervised:
            changes["loss"] = LossConfig.from_value("ncc")  # pairs carry no true field
    if patch_shape is not None:
        data = dataclasses.replace(data or DataConfig(), patch_shape=tuple(int(n) for n in patch_shape))
    if data is None:
        data = DataConfig(sources=("chessboard", "shapes"))  # synthetic fine-tuning
    return dataclasses.replace(run, data=data, **changes)

"""Network configuration: a dataclass with a strict JSON round-trip. Defaults follow the method."""

import dataclasses
import json

from DIRVNetLib.ops import GRADIENT_SCHEMES

ACTIVATIONS = ("linear", "rbf")


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Architecture of a DIRV-Net.

    ndim: image dimension (2 or 3). levels: pyramid levels (factor 2). units: variational units per
    level. control_spacing: B-spline control-point spacing in voxels of every level.
    data_/reg_filters, data_/reg_kernel: number and size of the data-term and regulariser filters.
    activation: "linear" (piecewise-linear with ``knots`` values) or "rbf" (Gaussian radial basis).
    data_range, reg_range: activations are defined on [-range, range] of the filter responses and
    constant outside (data responses are in normalised intensity, regulariser responses in voxels).
    centred_activations: use ``phi(x) - phi(0)``, so that the learned penalties are stationary at 0: a
    zero residual gives no data force and a zero displacement no regulariser force (an image registered
    to itself stays put). Off for weight sets trained before it existed.
    image_gradient: finite differences for the warped image's gradient in the data term: "central"
    (centred on the voxel, like the residual it multiplies) or "forward" (the method's; centred half a
    voxel ahead, which biases the force; the default for weight sets trained before the option).
    """

    ndim: int = 3
    levels: int = 3
    units: int = 5
    control_spacing: int = 4
    data_filters: int = 16
    data_kernel: int = 7
    reg_filters: int = 16
    reg_kernel: int = 5
    activation: str = "linear"
    knots: int = 24
    data_range: float = 1.0
    reg_range: float = 1.0
    centred_activations: bool = False
    image_gradient: str = "forward"

    def __post_init__(self):
        checks = {
            "ndim must be 2 or 3": self.ndim in (2, 3),
            "levels must be >= 1": self.levels >= 1,
            "units must be >= 1": self.units >= 1,
            "control_spacing must be >= 1": self.control_spacing >= 1,
            "filters must be >= 1": min(self.data_filters, self.reg_filters) >= 1,
            "kernel sizes must be odd and >= 1": all(k >= 1 and k % 2 for k in (self.data_kernel, self.reg_kernel)),
            f"activation must be one of {ACTIVATIONS}": self.activation in ACTIVATIONS,
            "knots must be >= 2": self.knots >= 2,
            "ranges must be > 0": min(self.data_range, self.reg_range) > 0,
            f"image_gradient must be one of {GRADIENT_SCHEMES}": self.image_gradient in GRADIENT_SCHEMES,
        }
        failed = [message for message, ok in checks.items() if not ok]
        if failed:
            raise ValueError("invalid network configuration: " + "; ".join(failed))

    @property
    def size_multiple(self):
        """Every padded axis is a multiple of this (control spacing at the coarsest level)."""
        return self.control_spacing * 2 ** (self.levels - 1)

    @property
    def min_size(self):
        """Smallest padded axis: the coarsest level holds at least two control cells."""
        return 2 * self.size_multiple

    def padded_shape(self, spatial_shape):
        """The shape the network pads ``spatial_shape`` (array order) to."""
        m = self.size_multiple
        return [max(self.min_size, -(-n // m) * m) for n in spatial_shape]

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values):
        return from_mapping(cls, values, "the network configuration")

    @classmethod
    def from_json(cls, text):
        return cls.from_dict(json.loads(text))


def from_mapping(cls, values, where):
    """``cls(**values)`` for the dataclass ``cls``: the one strict reader of every configuration section.

    Raises ValueError naming ``where`` when ``values`` is not a dict, names every unknown key (with the
    known ones), or a value has the wrong type."""
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be an object, got {values!r}")
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown keys in {where}: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    try:
        return cls(**values)
    except TypeError as e:
        raise ValueError(f"{where}: a value has the wrong type ({e})") from e

"""Benchmark cases from a data-driven list (JSON, or YAML when PyYAML is installed).

A case list is ``{"description": "...", "cases": [CASE, ...]}``; paths are relative to the list's folder,
or ``nilearn:NAME`` for the ICBM 2009a images shipped inside nilearn (``mni152_t1``, ``mni152_gm``,
``mni152_wm``). Two types of case:

``synthetic``: a real image ``image`` deformed by a random field with known ground truth: ``generator``
    ``smooth`` (the training generator, the default) or one of the validation-only families of
    :mod:`DIRVNetLib.comparison.fields` (``local_bumps``, ``sliding``, ``multi_scale``; ``options``: its
    keyword arguments; bump centres and the sliding plane lie inside ``mask``, or the image's foreground).
    ``fixed = image o (p + u)`` and ``moving = moving_image`` (default: ``image`` itself; another
    modality on the same grid gives a multi-modal case), so the true displacement is ``u`` (pull
    convention). Keys: ``max_mm`` (longest vector), ``seed``, ``control_points`` (5), ``spacing``
    (resample the image to this isotropic spacing first), ``labels`` and ``mask`` on the image (warped
    onto the fixed image with the true field), ``noise`` (0: independent Gaussian noise of standard
    deviation ``noise`` times the image's 99th-percentile intensity is then added to the fixed and to the
    moving image, as two acquisitions never share their noise; drawn from ``seed``).
``pair``: two real images ``fixed`` and ``moving`` (e.g. two subjects) with ``fixed_labels`` and
    ``moving_labels`` and/or ``fixed_landmarks`` and ``moving_landmarks``. ``fixed_spacing`` resamples the
    fixed image; ``moving_mask`` (a label spec) zeroes the moving image outside it (skull stripping);
    ``prealign: "affine"`` first aligns the moving image (and its labels) with a
    SimpleITK affine registration, so that every method then does deformable-only registration of the
    same pre-aligned pair (as Learn2Reg hands out pairs).

Labels: a path, ``{"file": PATH, "map": {"5": 1, "6": 2}}`` (unlisted values become 0), or
``{"probability_maps": {"1": PATH, "2": PATH}, "threshold": 0.5}`` (each voxel takes the label of its
largest map when that exceeds ``threshold`` times the map's maximum). Mask: the same forms, or
``"foreground"`` (Otsu threshold with holes filled). Every case may say ``seen_in_training: true``
(the image was used to train the bundled weights) and ``note``.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from DIRVNetLib.comparison import fields
from DIRVNetLib.data.deformations import deform_image
from DIRVNetLib.io.images import NILEARN_FILES, nilearn_file, read_image
from DIRVNetLib.io.points import read_points
from DIRVNetLib.io.resample import resample_isotropic, resample_like
from DIRVNetLib.metrics import warp_labels

CASE_TYPES = ("synthetic", "pair")
FILES = ("fixed", "moving", "true_field", "mask", "fixed_labels", "moving_labels")


@dataclasses.dataclass
class Case:
    """A prepared case: images in memory (SimpleITK), ground truth where known."""

    name: str
    type: str
    fixed: sitk.Image
    moving: sitk.Image
    true_field: sitk.Image = None
    mask: sitk.Image = None
    fixed_labels: sitk.Image = None
    moving_labels: sitk.Image = None
    fixed_points: np.ndarray = None
    moving_points: np.ndarray = None
    seen_in_training: bool = False
    note: str = ""
    details: dict = dataclasses.field(default_factory=dict)

    @property
    def dimension(self):
        return self.fixed.GetDimension()

    def describe(self):
        size = "x".join(str(n) for n in self.fixed.GetSize())
        spacing = "x".join(f"{s:g}" for s in self.fixed.GetSpacing())
        return f"{self.dimension}D {size} at {spacing} mm"

    def save(self, folder):
        """Write the case to ``folder`` (NIfTI/NRRD files + case.json); :func:`load_prepared` reads it."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            image = getattr(self, name)
            if image is not None:
                sitk.WriteImage(image, str(folder / f"{name}.nrrd"), True)
        meta = {
            "name": self.name,
            "type": self.type,
            "seen_in_training": self.seen_in_training,
            "note": self.note,
            "details": self.details,
            "describe": self.describe(),
        }
        if self.fixed_points is not None:
            meta["fixed_points"] = self.fixed_points.tolist()
            meta["moving_points"] = self.moving_points.tolist()
        (folder / "case.json").write_text(json.dumps(meta, indent=2) + "\n")


def load_prepared(folder):
    """A :class:`Case` written by :meth:`Case.save`."""
    folder = Path(folder)
    meta = json.loads((folder / "case.json").read_text())
    images = {
        name: sitk.ReadImage(str(folder / f"{name}.nrrd")) for name in FILES if (folder / f"{name}.nrrd").exists()
    }
    points = {k: np.array(meta[k]) for k in ("fixed_points", "moving_points") if k in meta}
    return Case(
        name=meta["name"],
        type=meta["type"],
        seen_in_training=meta["seen_in_training"],
        note=meta["note"],
        details=meta["details"],
        **images,
        **points,
    )


def read_case_list(path):
    """``(description, [case dicts])`` from a JSON or YAML case list; each dict gains ``_base`` (its folder).
    Raises ValueError naming the file and the case for malformed entries."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"case list {path} not found")
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as e:
            raise ValueError(f"case list {path} is YAML: install PyYAML or write it as JSON") from e
        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ValueError(f"case list {path} is not valid JSON: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list) or not data["cases"]:
        raise ValueError(f"case list {path} needs a non-empty 'cases' list")
    names = set()
    for n, case in enumerate(data["cases"]):
        where = f"case list {path}, case {n + 1}"
        if not isinstance(case, dict) or "name" not in case:
            raise ValueError(f"{where}: every case needs a 'name'")
        if case["name"] in names:
            raise ValueError(f"{where}: duplicate name '{case['name']}'")
        names.add(case["name"])
        if case.get("type") not in CASE_TYPES:
            raise ValueError(f"{where} ('{case['name']}'): 'type' must be one of {CASE_TYPES}")
        if case["type"] == "synthetic" and case.get("generator", "smooth") not in fields.GENERATORS:
            raise ValueError(f"{where} ('{case['name']}'): 'generator' must be one of {fields.GENERATORS}")
        required = ("image", "max_mm", "seed") if case["type"] == "synthetic" else ("fixed", "moving")
        missing = [k for k in required if k not in case]
        if missing:
            raise ValueError(f"{where} ('{case['name']}'): missing {', '.join(missing)}")
        case["_base"] = str(path.resolve().parent)
    return data.get("description", ""), data["cases"]


def select(specs, names):
    """The cases of ``specs`` called ``names`` (in list order); all of them when ``names`` is empty.
    Raises ValueError naming unknown cases and the list's names."""
    known = [spec["name"] for spec in specs]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"no case called {', '.join(unknown)}; the list has {', '.join(known)}")
    return [spec for spec in specs if not names or spec["name"] in names]


def _path(value, base):
    value = str(value)
    if value.startswith("nilearn:"):
        name = value.split(":", 1)[1]
        if name not in NILEARN_FILES:
            raise ValueError(f"unknown image '{value}'; known: {', '.join('nilearn:' + n for n in NILEARN_FILES)}")
        return nilearn_file(name)
    path = Path(value)
    return path if path.is_absolute() else Path(base) / path


def _read_raw(value, base):
    path = _path(value, base)
    if not Path(path).is_file():
        raise ValueError(f"{path} not found")
    return sitk.ReadImage(str(path))


def _labels(spec, base, reference=None):
    """A label image from a label spec (see the module docstring), optionally on ``reference``'s grid."""
    if spec is None:
        return None
    if isinstance(spec, str):
        spec = {"file": spec}
    if "probability_maps" in spec:
        maps = {
            int(label): sitk.Cast(_read_raw(p, base), sitk.sitkFloat32) for label, p in spec["probability_maps"].items()
        }
        first = next(iter(maps.values()))
        arrays = np.stack(
            [sitk.GetArrayFromImage(m) / max(float(sitk.GetArrayViewFromImage(m).max()), 1e-12) for m in maps.values()]
        )
        winner = np.array(list(maps))[np.argmax(arrays, axis=0)]
        labels = np.where(arrays.max(axis=0) > float(spec.get("threshold", 0.5)), winner, 0).astype(np.uint8)
        image = sitk.GetImageFromArray(labels)
        image.CopyInformation(first)
    else:
        image = _read_raw(spec["file"], base)
        if "map" in spec:
            array = sitk.GetArrayFromImage(image)
            out = np.zeros(array.shape, np.uint8)
            for source, target in spec["map"].items():
                out[array == int(source)] = int(target)
            mapped = sitk.GetImageFromArray(out)
            mapped.CopyInformation(image)
            image = mapped
    image = sitk.Cast(image, sitk.sitkUInt8) if image.GetPixelID() != sitk.sitkUInt8 else image
    if reference is not None:
        image = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return image


def foreground(image):
    """Otsu foreground of ``image`` with holes filled (uint8, 1 = inside)."""
    mask = sitk.OtsuThreshold(image, 0, 1)
    return sitk.Cast(sitk.BinaryFillhole(mask), sitk.sitkUInt8)


def _mask(spec, base, image):
    if spec is None:
        return None
    if spec == "foreground":
        return foreground(image)
    labels = _labels(spec, base, reference=image)
    return sitk.Cast(labels != 0, sitk.sitkUInt8)


def _with_noise(image, fraction, rng):
    """``image`` (as float32) plus Gaussian noise of std ``fraction`` times its 99th-percentile intensity."""
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    std = fraction * float(np.percentile(array, 99))
    noisy = sitk.GetImageFromArray(array + rng.normal(0.0, std, array.shape).astype(np.float32))
    noisy.CopyInformation(image)
    return noisy


def _image(value, base, role):
    return read_image(_path(value, base), role)


def prealign_affine(fixed, moving):
    """A SimpleITK affine transform (fixed -> moving points) aligning ``moving`` to ``fixed``: centred
    moments initialisation, Mattes MI, gradient descent on a 3-level pyramid, fixed sampling seed."""
    dimension = fixed.GetDimension()
    initial = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.AffineTransform(dimension), sitk.CenteredTransformInitializerFilter.MOMENTS
    )
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.1, seed=7)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsGradientDescent(
        learningRate=1.0, numberOfIterations=200, convergenceMinimumValue=1e-6, convergenceWindowSize=10
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([4, 2, 1])
    method.SetSmoothingSigmasPerLevel([2, 1, 0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(initial, inPlace=False)
    return method.Execute(fixed, moving)


def prepare(spec):
    """A :class:`Case` from one case dict of :func:`read_case_list` (deterministic: seeds are fixed)."""
    base = spec["_base"]
    common = {
        "name": spec["name"],
        "type": spec["type"],
        "seen_in_training": bool(spec.get("seen_in_training", False)),
        "note": spec.get("note", ""),
    }
    if spec["type"] == "synthetic":
        image = _image(spec["image"], base, f"case '{spec['name']}' image")
        if spec.get("spacing"):
            image = resample_isotropic(image, float(spec["spacing"]))
        moving = image
        if spec.get("moving_image"):
            moving = resample_like(_image(spec["moving_image"], base, f"case '{spec['name']}' moving_image"), image)
        source_mask = _mask(spec.get("mask"), base, image)
        generator = spec.get("generator", "smooth")
        if generator == "smooth":
            fixed, true = deform_image(
                image, float(spec["max_mm"]), int(spec["seed"]), int(spec.get("control_points", 5))
            )
        else:
            region = source_mask if source_mask is not None else foreground(image)
            try:
                field = fields.draw(
                    generator, image, float(spec["max_mm"]), int(spec["seed"]), region, **spec.get("options", {})
                )
            except (TypeError, ValueError) as e:
                raise ValueError(f"case '{spec['name']}': {e}") from e
            fixed, true = fields.deform_with(image, field)
        noise = spec.get("noise", 0.0)
        if not isinstance(noise, (int, float)) or not noise >= 0:
            raise ValueError(f"case '{spec['name']}': noise must be a number >= 0, got {noise!r}")
        if noise > 0:
            rng = np.random.default_rng([int(spec["seed"]), 1])
            fixed, moving = _with_noise(fixed, noise, rng), _with_noise(moving, noise, rng)
        moving_labels = _labels(spec.get("labels"), base, reference=image)
        fixed_labels = warp_labels(moving_labels, true) if moving_labels is not None else None
        mask = warp_labels(source_mask, true) if source_mask is not None else None
        details = {
            "max_mm": float(spec["max_mm"]),
            "seed": int(spec["seed"]),
            "noise": float(noise),
            "generator": generator,
            "image": str(spec["image"]),
            "moving_image": str(spec.get("moving_image", spec["image"])),
        }
        return Case(
            fixed=fixed,
            moving=moving,
            true_field=true,
            mask=mask,
            fixed_labels=fixed_labels,
            moving_labels=moving_labels,
            details=details,
            **common,
        )
    fixed = _image(spec["fixed"], base, f"case '{spec['name']}' fixed")
    if spec.get("fixed_spacing"):
        fixed = resample_isotropic(fixed, float(spec["fixed_spacing"]))
    moving = _image(spec["moving"], base, f"case '{spec['name']}' moving")
    if spec.get("moving_mask"):
        brain = _labels(spec["moving_mask"], base, reference=moving)
        moving = sitk.Mask(moving, sitk.Cast(brain != 0, sitk.sitkUInt8))
    fixed_labels = _labels(spec.get("fixed_labels"), base, reference=fixed)
    moving_labels = _labels(spec.get("moving_labels"), base)
    details = {"fixed": str(spec["fixed"]), "moving": str(spec["moving"])}
    fixed_points = moving_points = None
    if spec.get("fixed_landmarks"):
        fixed_points = read_points(_path(spec["fixed_landmarks"], base), fixed.GetDimension())
        moving_points = read_points(_path(spec["moving_landmarks"], base), fixed.GetDimension())
    if spec.get("prealign") == "affine":
        affine = prealign_affine(fixed, moving)
        moving = sitk.Resample(moving, fixed, affine, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        if moving_labels is not None:
            moving_labels = sitk.Resample(moving_labels, fixed, affine, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        if moving_points is not None:
            inverse = affine.GetInverse()
            moving_points = np.array([inverse.TransformPoint(tuple(map(float, p))) for p in moving_points])
        details["prealign"] = "affine (SimpleITK, Mattes MI, moments init)"
    elif spec.get("prealign"):
        raise ValueError(f"case '{spec['name']}': prealign must be 'affine' or absent, got {spec['prealign']!r}")
    mask = _mask(spec.get("mask"), base, fixed)
    return Case(
        fixed=fixed,
        moving=moving,
        mask=mask,
        fixed_labels=fixed_labels,
        moving_labels=moving_labels,
        fixed_points=fixed_points,
        moving_points=moving_points,
        details=details,
        **common,
    )
